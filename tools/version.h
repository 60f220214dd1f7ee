// What `ebb --version` prints: the release, the commit the binary was built from and the
// backends compiled into it, so that a bug report or a benchmark says which ebb produced it.
//
// Thread safety: a pure function.
#pragma once

#include <string>

namespace ebb::cli {

// Three lines, each "name value...":
//   ebb 0.2.0
//   commit 2d75734abcde          ("-dirty" appended when tracked files differed; "unknown"
//                                  when built outside a git checkout)
//   backends cpu sim cuda nccl mpi io_uring
// The backends: devices (cpu, sim, cuda), communicators (nccl; mpi when its plugin,
// libebb_comm_mpi.so, was built: it is loaded at run time) and the NVMe tier's I/O (io_uring).
std::string version_text();

}  // namespace ebb::cli
