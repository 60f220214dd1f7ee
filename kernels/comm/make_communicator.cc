// make_communicator (which backend serves which device) and the *_on helpers of communicator.h.
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/comm/communicator.h"
#include "kernels/comm/mpi_plugin.h"
#include "kernels/comm/sim_communicator.h"
#include "kernels/comm/single_communicator.h"
#if EBB_HAVE_NCCL
#include "kernels/cuda/nccl_communicator.h"
#endif

namespace ebb {
namespace {

Result<std::unique_ptr<Communicator>> make_nccl(Device& device, const CommOptions& options,
                                                const RankEnv& env) {
#if EBB_HAVE_NCCL
  std::unique_ptr<Communicator> bootstrap;
  if (env.size > 1) {
    // The unique id travels over MPI; the mpi communicator's own options are the same.
    EBB_ASSIGN_OR_RETURN(bootstrap, load_mpi_communicator(options));
  }
  return make_nccl_communicator(device, options, env, std::move(bootstrap));
#else
  (void)device;
  (void)options;
  (void)env;
  return unavailable("nccl backend: ebb was built without it (no CUDA backend, or no nccl.h)");
#endif
}

// Launches `collective` (a call of one Communicator method with the closure's context) on
// `stream`. A failure is thrown from the closure, which the stream records (on cpu, its
// synchronize returns it); on cuda the closure runs within launch(), and the failure is
// returned from here with its own code.
template <typename Collective>
Status launch_collective(Stream& stream, Collective collective) {
  auto failure = std::make_shared<Status>();
  try {
    return stream.launch([collective, failure](const LaunchContext& ctx) {
      Status status = collective(ctx);
      if (status.ok()) return;
      *failure = status;
      throw std::runtime_error(status.to_string());
    });
  } catch (const std::runtime_error&) {
    // The closure threw on this thread (cuda), so *failure is this thread's to read.
    if (!failure->ok()) return *failure;
    throw;
  }
}

}  // namespace

Result<std::unique_ptr<Communicator>> make_communicator(Device& device,
                                                        const CommOptions& options) {
  const RankEnv env = rank_env_from_environment();
  const bool cuda = device.kind() == DeviceKind::kCuda;
  const CommBackend backend = options.backend.value_or(
      cuda ? CommBackend::kNccl : (env.under_launcher ? CommBackend::kMpi : CommBackend::kSingle));
  const std::string where =
      std::string(comm_backend_name(backend)) + " backend on " + device.name();
  switch (backend) {
    case CommBackend::kSingle:
      // One rank of one whatever the launcher says. This layer cannot copy device memory
      // without CUDA, so on a cuda device one NCCL rank serves.
      if (cuda) return make_nccl(device, options, RankEnv{});
      return make_single_communicator();
    case CommBackend::kMpi:
      if (cuda) {
        return invalid_argument(where + ": mpi moves host memory; a cuda device uses nccl");
      }
      if (!env.under_launcher) {
        return unavailable(where +
                           ": not under an MPI launcher (neither OMPI_COMM_WORLD_RANK "
                           "nor PMI_RANK is set); start the program with mpirun");
      }
      return load_mpi_communicator(options);
    case CommBackend::kNccl:
      if (!cuda) return invalid_argument(where + ": nccl needs a cuda device");
      return make_nccl(device, options, env);
    case CommBackend::kSim:
      if (device.kind() != DeviceKind::kSim) {
        return invalid_argument(where + ": the sim backend moves no data; it needs a sim device");
      }
      if (options.sim_ranks < 1) {
        return invalid_argument(where + ": sim_ranks " + std::to_string(options.sim_ranks) +
                                " is not at least 1");
      }
      return make_sim_communicator(options.sim_ranks);
  }
  return invalid_argument("make_communicator: unknown backend");
}

Status all_reduce_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t count, CommDType t) {
  return launch_collective(stream, [&comm, send, recv, count, t](const LaunchContext& ctx) {
    return comm.all_reduce(ctx, send, recv, count, t);
  });
}

Status reduce_scatter_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                         std::size_t recv_count, CommDType t) {
  return launch_collective(stream, [&comm, send, recv, recv_count, t](const LaunchContext& ctx) {
    return comm.reduce_scatter(ctx, send, recv, recv_count, t);
  });
}

Status all_gather_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t send_count, CommDType t) {
  return launch_collective(stream, [&comm, send, recv, send_count, t](const LaunchContext& ctx) {
    return comm.all_gather(ctx, send, recv, send_count, t);
  });
}

Status all_to_all_on(Stream& stream, Communicator& comm, const void* send, void* recv,
                     std::size_t count, CommDType t) {
  return launch_collective(stream, [&comm, send, recv, count, t](const LaunchContext& ctx) {
    return comm.all_to_all(ctx, send, recv, count, t);
  });
}

Status broadcast_on(Stream& stream, Communicator& comm, void* buffer, std::size_t count,
                    CommDType t, int root) {
  return launch_collective(stream, [&comm, buffer, count, t, root](const LaunchContext& ctx) {
    return comm.broadcast(ctx, buffer, count, t, root);
  });
}

Status barrier_on(Stream& stream, Communicator& comm) {
  return launch_collective(stream, [&comm](const LaunchContext& ctx) { return comm.barrier(ctx); });
}

}  // namespace ebb
