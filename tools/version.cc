#include "tools/version.h"

#include "tools/ebb_git_commit.h"  // generated at build time (cmake/git_commit.cmake)

namespace ebb::cli {

std::string version_text() {
  std::string backends = "cpu sim";
#if EBB_HAVE_CUDA
  backends += " cuda";
#endif
#if EBB_HAVE_NCCL
  backends += " nccl";
#endif
#if EBB_HAVE_MPI_PLUGIN
  backends += " mpi";
#endif
  // liburing is a required dependency: every build has the io_uring NVMe tier.
  backends += " io_uring";
  return "ebb " EBB_VERSION "\ncommit " EBB_GIT_COMMIT "\nbackends " + backends;
}

}  // namespace ebb::cli
