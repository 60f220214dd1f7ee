#include "kernels/comm/single_communicator.h"

#include <cstring>
#include <memory>
#include <string>

#include "kernels/comm/comm_backend.h"

namespace ebb {
namespace {

class SingleCommunicator final : public Communicator {
 public:
  CommBackend backend() const override { return CommBackend::kSingle; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }

  // With one rank every collective's result is its input: recv = send (reduce_scatter's chunk 0,
  // all_gather's and all_to_all's one chunk), and broadcast and barrier move nothing.
  Status all_reduce(const LaunchContext& ctx, const void* send, void* recv, std::size_t count,
                    CommDType t) override {
    return copy(CommOp::kAllReduce, ctx, send, recv, count, t);
  }
  Status reduce_scatter(const LaunchContext& ctx, const void* send, void* recv,
                        std::size_t recv_count, CommDType t) override {
    return copy(CommOp::kReduceScatter, ctx, send, recv, recv_count, t);
  }
  Status all_gather(const LaunchContext& ctx, const void* send, void* recv, std::size_t send_count,
                    CommDType t) override {
    return copy(CommOp::kAllGather, ctx, send, recv, send_count, t);
  }
  Status all_to_all(const LaunchContext& ctx, const void* send, void* recv, std::size_t count,
                    CommDType t) override {
    return copy(CommOp::kAllToAll, ctx, send, recv, count, t);
  }
  Status broadcast(const LaunchContext& ctx, void* buffer, std::size_t n, CommDType t,
                   int root) override {
    EBB_RETURN_IF_ERROR(check(CommOp::kBroadcast, ctx, nullptr, buffer, n, t, root));
    count(CommOp::kBroadcast, 0);
    return ok_status();
  }
  Status barrier(const LaunchContext& ctx) override {
    EBB_RETURN_IF_ERROR(check(CommOp::kBarrier, ctx, nullptr, nullptr, 0, CommDType::kByte, 0));
    count(CommOp::kBarrier, 0);
    return ok_status();
  }

  Status host_all_gather(const void* send, void* recv, std::size_t bytes) override {
    if (bytes == 0) return ok_status();
    if (send == nullptr || recv == nullptr) {
      return invalid_argument("host_all_gather of " + std::to_string(bytes) +
                              " bytes on rank 0 of 1 (single): null buffer");
    }
    if (send != recv) std::memmove(recv, send, bytes);
    return ok_status();
  }

  // Nothing to end: no peer waits on this rank.
  void abort(std::string_view /*reason*/) override {}

 private:
  Status check(CommOp op, const LaunchContext& ctx, const void* send, const void* recv,
               std::size_t n, CommDType t, int root) const {
    if (ctx.kind == DeviceKind::kCuda) {
      return invalid_argument(collective_words(op, CommBackend::kSingle, 0, 1) +
                              ": a cuda stream; the single backend copies host memory only (a "
                              "cuda device is served by nccl)");
    }
    return check_collective(op, CommBackend::kSingle, 0, 1, send, recv, n, t, root);
  }

  Status copy(CommOp op, const LaunchContext& ctx, const void* send, void* recv, std::size_t n,
              CommDType t) {
    EBB_RETURN_IF_ERROR(check(op, ctx, send, recv, n, t, 0));
    if (ctx.kind == DeviceKind::kCpu && n > 0 && send != recv) {
      std::memcpy(recv, send, n * comm_dtype_bytes(t));
    }
    count(op, 0);
    return ok_status();
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace ebb
