#include "kernels/comm/sim_communicator.h"

#include <cstring>
#include <memory>
#include <string>

#include "kernels/comm/comm_backend.h"

namespace ebb {
namespace {

class SimCommunicator final : public Communicator {
 public:
  explicit SimCommunicator(int ranks) : ranks_(ranks) {}

  CommBackend backend() const override { return CommBackend::kSim; }
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  int local_rank() const override { return 0; }

  Status all_reduce(const LaunchContext& ctx, const void* send, void* recv, std::size_t count,
                    CommDType t) override {
    return account(CommOp::kAllReduce, ctx, send, recv, count, t, 0);
  }
  Status reduce_scatter(const LaunchContext& ctx, const void* send, void* recv,
                        std::size_t recv_count, CommDType t) override {
    return account(CommOp::kReduceScatter, ctx, send, recv, recv_count, t, 0);
  }
  Status all_gather(const LaunchContext& ctx, const void* send, void* recv, std::size_t send_count,
                    CommDType t) override {
    return account(CommOp::kAllGather, ctx, send, recv, send_count, t, 0);
  }
  Status all_to_all(const LaunchContext& ctx, const void* send, void* recv, std::size_t count,
                    CommDType t) override {
    return account(CommOp::kAllToAll, ctx, send, recv, count, t, 0);
  }
  Status broadcast(const LaunchContext& ctx, void* buffer, std::size_t n, CommDType t,
                   int root) override {
    return account(CommOp::kBroadcast, ctx, nullptr, buffer, n, t, root);
  }
  Status barrier(const LaunchContext& ctx) override {
    return account(CommOp::kBarrier, ctx, nullptr, nullptr, 0, CommDType::kByte, 0);
  }

  // Every rank's bytes are this rank's: the ranks are symmetric.
  Status host_all_gather(const void* send, void* recv, std::size_t bytes) override {
    if (bytes == 0) return ok_status();
    if (send == nullptr || recv == nullptr) {
      return invalid_argument("host_all_gather of " + std::to_string(bytes) +
                              " bytes on rank 0 of " + std::to_string(ranks_) +
                              " (sim): null buffer");
    }
    auto* out = static_cast<std::byte*>(recv);
    if (out != send) std::memmove(out, send, bytes);
    for (int r = 1; r < ranks_; ++r) {
      std::memcpy(out + static_cast<std::size_t>(r) * bytes, out, bytes);
    }
    return ok_status();
  }

  // No peer waits on a simulated rank.
  void abort(std::string_view /*reason*/) override {}

 private:
  Status account(CommOp op, const LaunchContext& ctx, const void* send, const void* recv,
                 std::size_t n, CommDType t, int root) {
    if (ctx.kind != DeviceKind::kSim) {
      return failed_precondition(collective_words(op, CommBackend::kSim, 0, ranks_) +
                                 ": the sim backend moves no data; it serves the sim device only");
    }
    EBB_RETURN_IF_ERROR(check_collective(op, CommBackend::kSim, 0, ranks_, send, recv, n, t, root));
    count(op, textbook_bytes_sent(op, n, t, ranks_, /*is_root=*/root == 0));
    return ok_status();
  }

  const int ranks_;
};

}  // namespace

std::unique_ptr<Communicator> make_sim_communicator(int ranks) {
  return std::make_unique<SimCommunicator>(ranks);
}

}  // namespace ebb
