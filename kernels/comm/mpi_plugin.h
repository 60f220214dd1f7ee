// The mpi backend's plugin, libebb_comm_mpi.so (kernels/comm/mpi_communicator.cc), and how
// make_communicator finds it.
//
// No ebb library or binary links libmpi: a binary that did would not start where MPI is not
// installed. The plugin links it, and is loaded with dlopen (RTLD_NOW | RTLD_GLOBAL: Open MPI
// dlopens components of its own that look for libmpi's symbols in the global scope) only when a
// process asks for the mpi backend. It exports one C symbol, kMpiPluginFactory, of type
// MpiPluginFactory; the ABI version guards against a plugin left over from another build.
//
// Where it is looked for, in order (the first file that exists is loaded):
//   1. $EBB_COMM_MPI_PLUGIN, a path to the .so; when set, nowhere else;
//   2. the build tree's lib/ (EBB_COMM_MPI_PLUGIN_BUILD_PATH, set by CMake);
//   3. beside the executable (/proc/self/exe), and in ../lib from it;
//   4. the dynamic loader's own search (LD_LIBRARY_PATH, the system's library directories).
//
// Thread safety: load_mpi_communicator is thread-safe.
#pragma once

#include <memory>

#include "kernels/comm/communicator.h"

namespace ebb {

inline constexpr int kMpiPluginAbi = 1;
inline constexpr const char* kMpiPluginFile = "libebb_comm_mpi.so";
inline constexpr const char* kMpiPluginFactory = "ebb_make_mpi_communicator";

// Makes an mpi communicator (initializing MPI in the process on first use) over a duplicate of
// MPI_COMM_WORLD. Returns an object the caller owns and deletes, or nullptr with *error set.
// REQUIRES: abi == kMpiPluginAbi, else nullptr and kUnavailable.
using MpiPluginFactory = Communicator* (*)(int abi, const CommOptions* options, Status* error);

// Loads the plugin (once per process) and calls its factory. kUnavailable naming every place
// looked and why each failed when there is no usable plugin.
// REQUIRES: every rank calls it at the same point (the duplicate of MPI_COMM_WORLD is collective).
Result<std::unique_ptr<Communicator>> load_mpi_communicator(const CommOptions& options);

}  // namespace ebb
