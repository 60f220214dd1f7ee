// The nccl backend of the Communicator (kernels/cuda/nccl_communicator.h) on a GPU, with one rank
// (or under mpirun, one rank per GPU): every collective against its definition
// (tests/kernels/comm_reference.h), which with one rank is the single backend's copy; the byte
// counters; the asynchronous-error abort path through EBB_NCCL_INJECT_ERROR. Skips without a GPU
// or without libnccl.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "kernels/comm/communicator.h"
#include "kernels/device.h"
#include "tests/kernels/comm_reference.h"

namespace ebb {
namespace {

namespace ref = comm_reference;
using ref::Bytes;

constexpr CommDType kTypes[] = {CommDType::kF32, CommDType::kBF16, CommDType::kF16,
                                CommDType::kByte};

class CommNccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << "no GPU";
    const RankEnv env = rank_env_from_environment();
    DeviceOptions options;
    options.kind = DeviceKind::kCuda;
    options.ordinal = env.local_rank;
    options.capacity_bytes = 0;
    Result<std::unique_ptr<Device>> device = create_device(options);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    device_ = std::move(device).value();
    Result<std::unique_ptr<Communicator>> comm = make_communicator(*device_);
    if (!comm.ok() && comm.status().message().find("could not load libnccl") != std::string::npos) {
      GTEST_SKIP() << comm.status().message();
    }
    ASSERT_TRUE(comm.ok()) << comm.status().to_string();
    comm_ = std::move(comm).value();
    ASSERT_EQ(comm_->backend(), CommBackend::kNccl);
    me_ = comm_->rank();
    n_ = comm_->size();
  }

  // A communicator, or nullptr after a failed expectation.
  std::unique_ptr<Communicator> make(const CommOptions& options) {
    Result<std::unique_ptr<Communicator>> comm = make_communicator(*device_, options);
    EXPECT_TRUE(comm.ok()) << comm.status().to_string();
    if (!comm.ok()) return nullptr;
    EXPECT_EQ((*comm)->backend(), CommBackend::kNccl);
    return std::move(comm).value();
  }

  void* upload(const Bytes& bytes) {
    void* p = device_->allocate(bytes.size()).value();
    EXPECT_TRUE(device_->default_stream()
                    .copy_async(p, bytes.data(), bytes.size(), CopyKind::kHostToDevice)
                    .ok());
    return p;
  }

  Bytes download(const void* p, std::size_t bytes) {
    Bytes out(bytes);
    EXPECT_TRUE(
        device_->default_stream().copy_async(out.data(), p, bytes, CopyKind::kDeviceToHost).ok());
    EXPECT_TRUE(device_->default_stream().synchronize().ok());
    return out;
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Communicator> comm_;
  int me_ = 0;
  int n_ = 1;
};

TEST_F(CommNccl, EveryCollectiveIsItsDefinition) {
  if (comm_ == nullptr) return;
  Stream& stream = device_->default_stream();
  constexpr std::size_t kCount = 1000;
  for (CommDType t : kTypes) {
    SCOPED_TRACE(static_cast<int>(t));
    const std::size_t elem = comm_dtype_bytes(t);
    void* send = upload(ref::input(me_, kCount * n_, t));
    void* recv = device_->allocate(kCount * n_ * elem).value();

    ASSERT_TRUE(all_reduce_on(stream, *comm_, send, recv, kCount, t).ok());
    EXPECT_EQ(download(recv, kCount * elem), ref::all_reduce(n_, kCount, t));
    ASSERT_TRUE(reduce_scatter_on(stream, *comm_, send, recv, kCount, t).ok());
    EXPECT_EQ(download(recv, kCount * elem), ref::reduce_scatter(me_, n_, kCount, t));
    ASSERT_TRUE(all_gather_on(stream, *comm_, send, recv, kCount, t).ok());
    EXPECT_EQ(download(recv, kCount * n_ * elem), ref::all_gather(n_, kCount, t));
    ASSERT_TRUE(all_to_all_on(stream, *comm_, send, recv, kCount, t).ok());
    EXPECT_EQ(download(recv, kCount * n_ * elem), ref::all_to_all(me_, n_, kCount, t));
    void* buffer = upload(ref::input(me_, kCount, t));
    ASSERT_TRUE(broadcast_on(stream, *comm_, buffer, kCount, t, n_ - 1).ok());
    EXPECT_EQ(download(buffer, kCount * elem), ref::broadcast(n_ - 1, kCount, t));
    ASSERT_TRUE(barrier_on(stream, *comm_).ok());
    ASSERT_TRUE(stream.synchronize().ok());

    ASSERT_TRUE(device_->free(send).ok());
    ASSERT_TRUE(device_->free(recv).ok());
    ASSERT_TRUE(device_->free(buffer).ok());
  }
  const CommStats s = comm_->stats();
  for (std::size_t op = 0; op < kCommOpCount; op++) EXPECT_EQ(s.calls[op], 4) << op;
  // nccl reduces 16-bit types natively: every byte counted is the caller's dtype's.
  std::int64_t all_reduce_bytes = 0;
  for (CommDType t : kTypes) {
    all_reduce_bytes += 2 * (n_ - 1) * static_cast<std::int64_t>(kCount * comm_dtype_bytes(t)) / n_;
  }
  EXPECT_EQ(s.bytes_sent[static_cast<std::size_t>(CommOp::kAllReduce)], all_reduce_bytes);
  EXPECT_EQ(s.bytes_sent[static_cast<std::size_t>(CommOp::kBarrier)], 0);
}

TEST_F(CommNccl, HostAllGather) {
  if (comm_ == nullptr) return;
  const int mine = 100 + me_;
  std::vector<int> all(n_);
  ASSERT_TRUE(comm_->host_all_gather(&mine, all.data(), sizeof(int)).ok());
  for (int r = 0; r < n_; r++) EXPECT_EQ(all[r], 100 + r);
}

TEST_F(CommNccl, InjectedAsyncErrorAbortsAndFailsEveryLaterCall) {
  if (comm_ == nullptr) return;
  if (n_ != 1) GTEST_SKIP() << "one rank: an injected error on one rank would hang its peers";
  comm_.reset();
  setenv("EBB_NCCL_INJECT_ERROR", "1", 1);
  std::unique_ptr<Communicator> comm = make(CommOptions{});
  unsetenv("EBB_NCCL_INJECT_ERROR");
  if (comm == nullptr) return;
  Stream& stream = device_->default_stream();
  void* data = upload(ref::input(0, 64, CommDType::kF32));
  ASSERT_TRUE(all_reduce_on(stream, *comm, data, data, 64, CommDType::kF32).ok());
  const Status failed = all_reduce_on(stream, *comm, data, data, 64, CommDType::kF32);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_NE(failed.message().find("all_reduce on rank 0 of 1 (nccl)"), std::string::npos)
      << failed.message();
  EXPECT_NE(failed.message().find("EBB_NCCL_INJECT_ERROR"), std::string::npos);
  const Status later = barrier_on(stream, *comm);
  EXPECT_EQ(later.code(), StatusCode::kUnavailable);
  EXPECT_NE(later.message().find("aborted after an earlier failure"), std::string::npos);
  comm.reset();  // after ncclCommAbort: must not destroy the NCCL communicator again
  EXPECT_TRUE(stream.synchronize().ok());
  ASSERT_TRUE(device_->free(data).ok());
}

TEST_F(CommNccl, CudaDeviceTakesNcclOrSingleButNotMpi) {
  if (comm_ == nullptr) return;
  CommOptions mpi;
  mpi.backend = CommBackend::kMpi;
  Result<std::unique_ptr<Communicator>> refused = make_communicator(*device_, mpi);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  if (n_ != 1) return;
  comm_.reset();
  CommOptions single;
  single.backend = CommBackend::kSingle;
  std::unique_ptr<Communicator> one = make(single);
  if (one == nullptr) return;
  EXPECT_EQ(one->size(), 1);
}

}  // namespace
}  // namespace ebb
