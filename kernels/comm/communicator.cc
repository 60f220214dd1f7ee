// The backend-independent half of communicator.h (names, stats, the launcher's environment)
// and comm_backend.h. make_communicator and the *_on helpers are in make_communicator.cc: this
// file is also compiled into the mpi plugin, which must not pull the backends in.
#include "kernels/comm/communicator.h"

#include <charconv>
#include <cstdlib>
#include <limits>
#include <string>
#include <system_error>
#include <thread>

#include "kernels/comm/comm_backend.h"

namespace ebb {
namespace {

// The value of an integer environment variable; nullopt when unset or not a whole integer.
std::optional<int> env_int(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  const std::string_view view(text);
  int value = 0;
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (error != std::errc() || end != view.data() + view.size()) return std::nullopt;
  return value;
}

bool ranges_overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  if (a_bytes == 0 || b_bytes == 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a);
  const auto b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace

std::string_view comm_backend_name(CommBackend backend) {
  switch (backend) {
    case CommBackend::kSingle:
      return "single";
    case CommBackend::kMpi:
      return "mpi";
    case CommBackend::kNccl:
      return "nccl";
    case CommBackend::kSim:
      return "sim";
  }
  return "unknown";
}

std::optional<CommBackend> comm_backend_from_name(std::string_view name) {
  for (CommBackend b :
       {CommBackend::kSingle, CommBackend::kMpi, CommBackend::kNccl, CommBackend::kSim}) {
    if (comm_backend_name(b) == name) return b;
  }
  return std::nullopt;
}

std::size_t comm_dtype_bytes(CommDType t) {
  switch (t) {
    case CommDType::kF32:
      return 4;
    case CommDType::kBF16:
    case CommDType::kF16:
      return 2;
    case CommDType::kByte:
      return 1;
  }
  return 1;
}

std::string_view comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::kAllReduce:
      return "all_reduce";
    case CommOp::kReduceScatter:
      return "reduce_scatter";
    case CommOp::kAllGather:
      return "all_gather";
    case CommOp::kAllToAll:
      return "all_to_all";
    case CommOp::kBroadcast:
      return "broadcast";
    case CommOp::kBarrier:
      return "barrier";
  }
  return "unknown";
}

std::int64_t CommStats::total_bytes_sent() const {
  std::int64_t total = 0;
  for (std::int64_t b : bytes_sent) total += b;
  return total;
}

CommStats Communicator::stats() const {
  CommStats s;
  for (std::size_t i = 0; i < kCommOpCount; i++) {
    s.bytes_sent[i] = bytes_[i].load(std::memory_order_relaxed);
    s.calls[i] = calls_[i].load(std::memory_order_relaxed);
  }
  return s;
}

void Communicator::count(CommOp op, std::int64_t bytes_sent) {
  const auto i = static_cast<std::size_t>(op);
  bytes_[i].fetch_add(bytes_sent, std::memory_order_relaxed);
  calls_[i].fetch_add(1, std::memory_order_relaxed);
  if ((link_.bytes_per_second > 0 || link_.latency.count() > 0) &&
      backend() != CommBackend::kNccl && backend() != CommBackend::kSim) {
    std::this_thread::sleep_for(link_.transfer_time(static_cast<double>(bytes_sent)));
  }
}

RankEnv rank_env_from_environment() {
  RankEnv env;
  // Open MPI's names first; PMI's are what MPICH, Intel MPI and Slurm's srun set.
  const char* const launchers[2][3] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
  };
  for (const auto& names : launchers) {
    const std::optional<int> rank = env_int(names[0]);
    const std::optional<int> size = env_int(names[1]);
    if (!rank && !size) continue;
    env.under_launcher = true;
    // A launcher that sets a rank outside [0, size) is not believed: one rank of one.
    if (rank && size && *size >= 1 && *rank >= 0 && *rank < *size) {
      env.rank = *rank;
      env.size = *size;
      const std::optional<int> local = env_int(names[2]);
      env.local_rank = local && *local >= 0 ? *local : 0;
    }
    break;
  }
  return env;
}

CollectiveExtent collective_extent(CommOp op, std::size_t count, int size) {
  const auto n = static_cast<std::size_t>(size);
  switch (op) {
    case CommOp::kAllReduce:
      return {count, count};
    case CommOp::kReduceScatter:
      return {n * count, count};
    case CommOp::kAllGather:
      return {count, n * count};
    case CommOp::kAllToAll:
      return {n * count, n * count};
    case CommOp::kBroadcast:
      return {0, count};
    case CommOp::kBarrier:
      return {0, 0};
  }
  return {0, 0};
}

std::string collective_words(CommOp op, CommBackend backend, int rank, int size) {
  return std::string(comm_op_name(op)) + " on rank " + std::to_string(rank) + " of " +
         std::to_string(size) + " (" + std::string(comm_backend_name(backend)) + ")";
}

Status check_collective(CommOp op, CommBackend backend, int rank, int size, const void* send,
                        const void* recv, std::size_t count, CommDType t, int root) {
  const auto fail = [&](const std::string& why) {
    return invalid_argument(collective_words(op, backend, rank, size) + ": " + why);
  };
  if (op == CommOp::kBroadcast && (root < 0 || root >= size)) {
    return fail("root " + std::to_string(root) + " is not a rank in [0, " + std::to_string(size) +
                ")");
  }
  if (count == 0 || op == CommOp::kBarrier) return ok_status();
  const std::size_t elem = comm_dtype_bytes(t);
  const std::size_t ranks = op == CommOp::kAllReduce ? 1 : static_cast<std::size_t>(size);
  if (count > std::numeric_limits<std::size_t>::max() / elem / ranks) {
    return fail(std::to_string(count) + " elements per rank overflow a byte count");
  }
  const CollectiveExtent extent = collective_extent(op, count, size);
  const std::size_t send_bytes = extent.send_elements * elem;
  const std::size_t recv_bytes = extent.recv_elements * elem;
  if (send_bytes > 0 && send == nullptr) {
    return fail("null send buffer for " + std::to_string(send_bytes) + " bytes");
  }
  if (recv == nullptr) {
    return fail("null " + std::string(op == CommOp::kBroadcast ? "buffer" : "recv buffer") +
                " for " + std::to_string(recv_bytes) + " bytes");
  }
  if (op == CommOp::kAllReduce && send == recv) return ok_status();
  if (ranges_overlap(send, send_bytes, recv, recv_bytes)) {
    return fail("send and recv overlap");
  }
  return ok_status();
}

std::int64_t textbook_bytes_sent(CommOp op, std::size_t count, CommDType t, int size,
                                 bool is_root) {
  const auto bytes = static_cast<std::int64_t>(count * comm_dtype_bytes(t));
  const std::int64_t others = size - 1;
  switch (op) {
    case CommOp::kAllReduce:
      return 2 * others * bytes / size;  // a reduce-scatter then an all-gather of the buffer
    case CommOp::kReduceScatter:
    case CommOp::kAllGather:
    case CommOp::kAllToAll:
      return others * bytes;  // (N-1)/N of the full buffer of N chunks of `count`
    case CommOp::kBroadcast:
      return is_root ? others * bytes : 0;
    case CommOp::kBarrier:
      return 0;
  }
  return 0;
}

}  // namespace ebb
