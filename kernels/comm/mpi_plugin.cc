#include "kernels/comm/mpi_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ebb {
namespace {

// The places of mpi_plugin.h, in its order; a bare file name goes to the dynamic loader.
std::vector<std::string> plugin_candidates() {
  const char* override_path = std::getenv("EBB_COMM_MPI_PLUGIN");
  if (override_path != nullptr && *override_path != '\0') return {override_path};
  std::vector<std::string> candidates;
#ifdef EBB_COMM_MPI_PLUGIN_BUILD_PATH
  candidates.emplace_back(EBB_COMM_MPI_PLUGIN_BUILD_PATH);
#endif
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back((exe.parent_path() / kMpiPluginFile).string());
    candidates.push_back((exe.parent_path().parent_path() / "lib" / kMpiPluginFile).string());
  }
  candidates.emplace_back(kMpiPluginFile);
  return candidates;
}

struct LoadedPlugin {
  MpiPluginFactory factory = nullptr;
  std::string path;
};

// Tries each candidate; on failure, says what happened at each.
Result<LoadedPlugin> load_plugin() {
  std::string tried;
  for (const std::string& path : plugin_candidates()) {
    const bool bare = path.find('/') == std::string::npos;
    if (!bare && access(path.c_str(), F_OK) != 0) {
      tried += "\n  " + path + ": no such file";
      continue;
    }
    // Never dlclose'd: MPI cannot be initialized twice in a process, and its atexit handler
    // (MPI_Finalize) lives in the plugin.
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (library == nullptr) {
      const char* why = dlerror();
      tried += "\n  " + path + ": " + (why != nullptr ? why : "dlopen failed");
      continue;
    }
    void* symbol = dlsym(library, kMpiPluginFactory);
    if (symbol == nullptr) {
      tried += "\n  " + path + ": no symbol " + kMpiPluginFactory;
      continue;
    }
    return LoadedPlugin{reinterpret_cast<MpiPluginFactory>(symbol), path};
  }
  return unavailable(
      std::string("mpi backend: no usable ") + kMpiPluginFile +
      " (built when CMake finds MPI; set EBB_COMM_MPI_PLUGIN to its path). Tried:" + tried);
}

}  // namespace

Result<std::unique_ptr<Communicator>> load_mpi_communicator(const CommOptions& options) {
  // A loaded plugin is kept; a failed load is not, so that a later call may find one
  // (EBB_COMM_MPI_PLUGIN set since, say).
  static std::mutex mu;
  static LoadedPlugin loaded;
  MpiPluginFactory factory = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (loaded.factory == nullptr) {
      EBB_ASSIGN_OR_RETURN(loaded, load_plugin());
    }
    factory = loaded.factory;
  }
  Status error;
  Communicator* comm = factory(kMpiPluginAbi, &options, &error);
  if (comm == nullptr) {
    return error.ok() ? unavailable("mpi backend: the plugin made no communicator and said nothing")
                      : error;
  }
  return std::unique_ptr<Communicator>(comm);
}

}  // namespace ebb
