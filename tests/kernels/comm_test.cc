// The Communicator (kernels/comm/communicator.h) on the cpu and sim devices.
//
// One process (a plain ctest): names, the launcher's environment, make_communicator's errors,
// and the single backend. Under mpirun (ctests comm_mpi_np2 and comm_mpi_np4, filter CommMpi.*)
// the mpi backend: every collective in fp32, bf16, fp16 and bytes on unequal data per rank
// against its definition (tests/kernels/comm_reference.h), the byte counters against the
// textbook counts, host_all_gather, and the stream helpers. CommMpiWatchdog runs only from
// comm_mpi_watchdog_test.sh, which checks how the whole job ends.
#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/comm/communicator.h"
#include "kernels/device.h"
#include "tests/kernels/comm_reference.h"

namespace ebb {
namespace {

namespace ref = comm_reference;
using ref::Bytes;

constexpr LaunchContext kCpu{DeviceKind::kCpu, nullptr};
constexpr CommDType kAllTypes[] = {CommDType::kF32, CommDType::kBF16, CommDType::kF16,
                                   CommDType::kByte};

std::string type_name(CommDType t) {
  switch (t) {
    case CommDType::kF32:
      return "f32";
    case CommDType::kBF16:
      return "bf16";
    case CommDType::kF16:
      return "f16";
    case CommDType::kByte:
      return "byte";
  }
  return "?";
}

std::int64_t bytes_of(const CommStats& s, CommOp op) {
  return s.bytes_sent[static_cast<std::size_t>(op)];
}
std::int64_t calls_of(const CommStats& s, CommOp op) {
  return s.calls[static_cast<std::size_t>(op)];
}

std::unique_ptr<Device> cpu_device() {
  DeviceOptions options;
  options.capacity_bytes = 64 * kMiB;
  Result<std::unique_ptr<Device>> device = create_device(options);
  EBB_CHECK(device.ok(), device.status().to_string());
  return std::move(device).value();
}

// Sets (or unsets, for nullopt) environment variables for one scope, then puts them back.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, std::optional<std::string>>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.push_back({name, old != nullptr ? std::optional<std::string>(old) : std::nullopt});
      if (value) {
        setenv(name, value->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name, value->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

// Every launcher variable rank_env_from_environment reads, unset.
ScopedEnv no_launcher() {
  return ScopedEnv({{"OMPI_COMM_WORLD_RANK", std::nullopt},
                    {"OMPI_COMM_WORLD_SIZE", std::nullopt},
                    {"OMPI_COMM_WORLD_LOCAL_RANK", std::nullopt},
                    {"PMI_RANK", std::nullopt},
                    {"PMI_SIZE", std::nullopt},
                    {"MPI_LOCALRANKID", std::nullopt}});
}

// --- one process ---------------------------------------------------------------------------

TEST(CommNames, RoundTrip) {
  for (CommBackend b :
       {CommBackend::kSingle, CommBackend::kMpi, CommBackend::kNccl, CommBackend::kSim}) {
    EXPECT_EQ(comm_backend_from_name(comm_backend_name(b)), b);
  }
  EXPECT_EQ(comm_backend_from_name("gloo"), std::nullopt);
  EXPECT_EQ(comm_op_name(CommOp::kReduceScatter), "reduce_scatter");
  EXPECT_EQ(comm_dtype_bytes(CommDType::kF32), 4U);
  EXPECT_EQ(comm_dtype_bytes(CommDType::kBF16), 2U);
  EXPECT_EQ(comm_dtype_bytes(CommDType::kF16), 2U);
  EXPECT_EQ(comm_dtype_bytes(CommDType::kByte), 1U);
}

TEST(CommRankEnv, ReadsOpenMpiThenPmiElseOneRank) {
  {
    const ScopedEnv env = no_launcher();
    const RankEnv none = rank_env_from_environment();
    EXPECT_FALSE(none.under_launcher);
    EXPECT_EQ(none.rank, 0);
    EXPECT_EQ(none.size, 1);
    EXPECT_EQ(none.local_rank, 0);
  }
  {
    const ScopedEnv env = no_launcher();
    const ScopedEnv ompi({{"OMPI_COMM_WORLD_RANK", "3"},
                          {"OMPI_COMM_WORLD_SIZE", "8"},
                          {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                          {"PMI_RANK", "5"},
                          {"PMI_SIZE", "6"}});
    const RankEnv e = rank_env_from_environment();
    EXPECT_TRUE(e.under_launcher);
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.size, 8);
    EXPECT_EQ(e.local_rank, 1);
  }
  {
    const ScopedEnv env = no_launcher();
    const ScopedEnv pmi({{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "2"}});
    const RankEnv e = rank_env_from_environment();
    EXPECT_TRUE(e.under_launcher);
    EXPECT_EQ(e.rank, 2);
    EXPECT_EQ(e.size, 4);
    EXPECT_EQ(e.local_rank, 2);
  }
  {
    // A rank outside [0, size), or not a number: under a launcher, but one rank of one.
    const ScopedEnv env = no_launcher();
    const ScopedEnv bad({{"PMI_RANK", "4"}, {"PMI_SIZE", "4x"}});
    const RankEnv e = rank_env_from_environment();
    EXPECT_TRUE(e.under_launcher);
    EXPECT_EQ(e.rank, 0);
    EXPECT_EQ(e.size, 1);
  }
}

TEST(CommMake, PicksSingleOutsideALauncherAndRefusesWhatTheDeviceCannotServe) {
  const ScopedEnv env = no_launcher();
  std::unique_ptr<Device> device = cpu_device();

  Result<std::unique_ptr<Communicator>> single = make_communicator(*device);
  ASSERT_TRUE(single.ok()) << single.status().to_string();
  EXPECT_EQ((*single)->backend(), CommBackend::kSingle);
  EXPECT_EQ((*single)->rank(), 0);
  EXPECT_EQ((*single)->size(), 1);

  CommOptions nccl;
  nccl.backend = CommBackend::kNccl;
  Result<std::unique_ptr<Communicator>> on_cpu = make_communicator(*device, nccl);
  ASSERT_FALSE(on_cpu.ok());
  EXPECT_EQ(on_cpu.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(on_cpu.status().message().find("nccl needs a cuda device"), std::string::npos);

  CommOptions mpi;
  mpi.backend = CommBackend::kMpi;
  Result<std::unique_ptr<Communicator>> no_launch = make_communicator(*device, mpi);
  ASSERT_FALSE(no_launch.ok());
  EXPECT_EQ(no_launch.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(no_launch.status().message().find("mpirun"), std::string::npos);
}

TEST(CommMake, MissingMpiPluginIsUnavailableAndNamesWhereItLooked) {
  const ScopedEnv env = no_launcher();
  const ScopedEnv launcher({{"OMPI_COMM_WORLD_RANK", "0"},
                            {"OMPI_COMM_WORLD_SIZE", "2"},
                            {"EBB_COMM_MPI_PLUGIN", "/nonexistent/libebb_comm_mpi.so"}});
  std::unique_ptr<Device> device = cpu_device();
  Result<std::unique_ptr<Communicator>> comm = make_communicator(*device);
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(comm.status().message().find("/nonexistent/libebb_comm_mpi.so"), std::string::npos)
      << comm.status().message();
}

// The single backend: each collective's definition with one rank.
TEST(CommSingle, EveryCollectiveIsItsDefinitionForOneRank) {
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*cpu_device()).value());
  ASSERT_EQ(comm->backend(), CommBackend::kSingle);
  constexpr std::size_t kCount = 37;
  for (CommDType t : kAllTypes) {
    SCOPED_TRACE(type_name(t));
    const Bytes in = ref::input(0, kCount, t);
    Bytes out(in.size());
    ASSERT_TRUE(comm->all_reduce(kCpu, in.data(), out.data(), kCount, t).ok());
    EXPECT_EQ(out, ref::all_reduce(1, kCount, t));
    Bytes in_place = in;
    ASSERT_TRUE(comm->all_reduce(kCpu, in_place.data(), in_place.data(), kCount, t).ok());
    EXPECT_EQ(in_place, ref::all_reduce(1, kCount, t));
    ASSERT_TRUE(comm->reduce_scatter(kCpu, in.data(), out.data(), kCount, t).ok());
    EXPECT_EQ(out, ref::reduce_scatter(0, 1, kCount, t));
    ASSERT_TRUE(comm->all_gather(kCpu, in.data(), out.data(), kCount, t).ok());
    EXPECT_EQ(out, ref::all_gather(1, kCount, t));
    ASSERT_TRUE(comm->all_to_all(kCpu, in.data(), out.data(), kCount, t).ok());
    EXPECT_EQ(out, ref::all_to_all(0, 1, kCount, t));
    Bytes buffer = in;
    ASSERT_TRUE(comm->broadcast(kCpu, buffer.data(), kCount, t, 0).ok());
    EXPECT_EQ(buffer, ref::broadcast(0, kCount, t));
  }
  ASSERT_TRUE(comm->barrier(kCpu).ok());

  // No peers: no payload, but every call counted.
  const CommStats stats = comm->stats();
  EXPECT_EQ(stats.total_bytes_sent(), 0);
  EXPECT_EQ(calls_of(stats, CommOp::kAllReduce), 8);
  EXPECT_EQ(calls_of(stats, CommOp::kReduceScatter), 4);
  EXPECT_EQ(calls_of(stats, CommOp::kAllGather), 4);
  EXPECT_EQ(calls_of(stats, CommOp::kAllToAll), 4);
  EXPECT_EQ(calls_of(stats, CommOp::kBroadcast), 4);
  EXPECT_EQ(calls_of(stats, CommOp::kBarrier), 1);

  const char hello[] = "hello";
  char got[sizeof(hello)] = {};
  ASSERT_TRUE(comm->host_all_gather(hello, got, sizeof(hello)).ok());
  EXPECT_STREQ(got, hello);
}

TEST(CommSingle, RefusesBadArgumentsNamingTheCollective) {
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*cpu_device()).value());
  float a[8] = {};
  const Status null_recv = comm->all_gather(kCpu, a, nullptr, 4, CommDType::kF32);
  EXPECT_EQ(null_recv.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(null_recv.message().find("all_gather on rank 0 of 1 (single)"), std::string::npos);
  const Status overlap = comm->all_to_all(kCpu, a, a + 2, 4, CommDType::kF32);
  EXPECT_EQ(overlap.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(overlap.message().find("overlap"), std::string::npos);
  const Status root = comm->broadcast(kCpu, a, 4, CommDType::kF32, 1);
  EXPECT_EQ(root.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(root.message().find("root 1"), std::string::npos);
  const Status cuda = comm->all_reduce({DeviceKind::kCuda, nullptr}, a, a, 4, CommDType::kF32);
  EXPECT_EQ(cuda.code(), StatusCode::kInvalidArgument);
  // Zero elements: nothing to read, so no buffers needed.
  EXPECT_TRUE(comm->all_reduce(kCpu, nullptr, nullptr, 0, CommDType::kF32).ok());
  EXPECT_EQ(comm->stats().calls[static_cast<std::size_t>(CommOp::kAllGather)], 0);
}

// The *_on helpers run the collective on the stream's thread; a failure becomes the stream's.
TEST(CommSingle, StreamHelpersRunOnTheStreamAndReportItsFailure) {
  std::unique_ptr<Device> device = cpu_device();
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*device).value());
  Stream& stream = device->default_stream();
  constexpr std::size_t kCount = 64;
  const Bytes in = ref::input(0, kCount, CommDType::kF32);
  void* send = device->allocate(in.size()).value();
  void* recv = device->allocate(in.size()).value();
  std::memcpy(send, in.data(), in.size());
  ASSERT_TRUE(all_reduce_on(stream, *comm, send, recv, kCount, CommDType::kF32).ok());
  ASSERT_TRUE(reduce_scatter_on(stream, *comm, send, recv, kCount, CommDType::kF32).ok());
  ASSERT_TRUE(all_gather_on(stream, *comm, send, recv, kCount, CommDType::kF32).ok());
  ASSERT_TRUE(all_to_all_on(stream, *comm, send, recv, kCount, CommDType::kF32).ok());
  ASSERT_TRUE(broadcast_on(stream, *comm, recv, kCount, CommDType::kF32, 0).ok());
  ASSERT_TRUE(barrier_on(stream, *comm).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(std::memcmp(recv, in.data(), in.size()), 0);
  EXPECT_EQ(comm->stats().calls[static_cast<std::size_t>(CommOp::kBarrier)], 1);

  ASSERT_TRUE(broadcast_on(stream, *comm, recv, kCount, CommDType::kF32, 3).ok());
  const Status failed = stream.synchronize();
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("broadcast on rank 0 of 1 (single): root 3"), std::string::npos)
      << failed.message();
  ASSERT_TRUE(device->free(send).ok());
  ASSERT_TRUE(device->free(recv).ok());
}

// On sim closures never run; a collective called directly moves nothing and is counted.
TEST(CommSingle, SimDeviceCountsOnly) {
  DeviceOptions options;
  options.kind = DeviceKind::kSim;
  std::unique_ptr<Device> sim = std::move(create_device(options).value());
  const ScopedEnv env = no_launcher();
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*sim).value());
  EXPECT_EQ(comm->backend(), CommBackend::kSingle);
  float send[4] = {1, 2, 3, 4};
  float recv[4] = {};
  ASSERT_TRUE(comm->all_reduce({DeviceKind::kSim, nullptr}, send, recv, 4, CommDType::kF32).ok());
  EXPECT_EQ(recv[0], 0.0F);
  EXPECT_EQ(calls_of(comm->stats(), CommOp::kAllReduce), 1);
}

// The sim backend: rank 0 of N standing for every rank. It is chosen only when asked, on a sim
// device; a collective counts N ranks' textbook bytes and moves nothing; host_all_gather gives
// every rank this rank's bytes; on a cpu stream it refuses, as it moves no data.
TEST(CommSim, OneRankStandsForN) {
  DeviceOptions options;
  options.kind = DeviceKind::kSim;
  std::unique_ptr<Device> sim = std::move(create_device(options).value());
  std::unique_ptr<Device> cpu = cpu_device();
  const ScopedEnv env = no_launcher();
  CommOptions asked;
  asked.backend = CommBackend::kSim;
  asked.sim_ranks = 4;
  Result<std::unique_ptr<Communicator>> refused = make_communicator(*cpu, asked);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("needs a sim device"), std::string::npos);
  asked.sim_ranks = 0;
  refused = make_communicator(*sim, asked);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("sim_ranks 0"), std::string::npos);
  asked.sim_ranks = 4;
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*sim, asked).value());
  EXPECT_EQ(comm->backend(), CommBackend::kSim);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 4);

  float send[4] = {1, 2, 3, 4};
  float recv[16] = {};
  ASSERT_TRUE(comm->all_gather({DeviceKind::kSim, nullptr}, send, recv, 4, CommDType::kF32).ok());
  EXPECT_EQ(recv[0], 0.0F);  // nothing moved
  // (N - 1) chunks of 4 fp32 elements.
  EXPECT_EQ(bytes_of(comm->stats(), CommOp::kAllGather), 3 * 4 * 4);
  const Status on_cpu = comm->all_gather(kCpu, send, recv, 4, CommDType::kF32);
  EXPECT_EQ(on_cpu.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(on_cpu.message().find("moves no data"), std::string::npos);

  const std::int32_t mine = 7;
  std::int32_t all[4] = {};
  ASSERT_TRUE(comm->host_all_gather(&mine, all, sizeof mine).ok());
  for (std::int32_t v : all) EXPECT_EQ(v, 7);
}

// A modelled link's transfer time, which the sim clock and ZeRO's collective ops use.
TEST(CommSim, LinkModelTransferTime) {
  LinkModel link{.bytes_per_second = 1e9, .latency = std::chrono::microseconds(5)};
  EXPECT_EQ(link.transfer_time(1e6), std::chrono::nanoseconds(5000 + 1000000));
  EXPECT_EQ(LinkModel{}.transfer_time(1e9), std::chrono::nanoseconds(0));
}

// --- under mpirun --------------------------------------------------------------------------

// A communicator of every rank. Collectives are called straight, with the cpu context, except
// in StreamHelpers; a timeout well inside ctest's keeps a broken test from hanging the job.
class CommMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!rank_env_from_environment().under_launcher) GTEST_SKIP() << "not under mpirun";
    device_ = cpu_device();
    CommOptions options;
    options.timeout = std::chrono::seconds(60);
    Result<std::unique_ptr<Communicator>> comm = make_communicator(*device_, options);
    ASSERT_TRUE(comm.ok()) << comm.status().to_string();
    comm_ = std::move(comm).value();
    ASSERT_EQ(comm_->backend(), CommBackend::kMpi);
    me_ = comm_->rank();
    n_ = comm_->size();
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Communicator> comm_;
  int me_ = 0;
  int n_ = 1;
};

TEST_F(CommMpi, RanksMatchTheLauncher) {
  const RankEnv env = rank_env_from_environment();
  EXPECT_EQ(me_, env.rank);
  EXPECT_EQ(n_, env.size);
  EXPECT_EQ(comm_->local_rank(), env.local_rank);
}

TEST_F(CommMpi, AllReduceSumsEveryRanksBuffer) {
  constexpr std::size_t kCount = 1001;
  for (CommDType t : kAllTypes) {
    SCOPED_TRACE(type_name(t));
    const Bytes in = ref::input(me_, kCount, t);
    Bytes out(in.size());
    ASSERT_TRUE(comm_->all_reduce(kCpu, in.data(), out.data(), kCount, t).ok());
    EXPECT_EQ(out, ref::all_reduce(n_, kCount, t));
    Bytes in_place = in;
    ASSERT_TRUE(comm_->all_reduce(kCpu, in_place.data(), in_place.data(), kCount, t).ok());
    EXPECT_EQ(in_place, ref::all_reduce(n_, kCount, t));
  }
}

// 16-bit sums are reduced in fp32 and rounded once: 1 + 2^-8 + 2^-8 (+ 0) is 1 + 2^-7 in bf16,
// where adding in bf16 would round each 1 + 2^-8 back to 1 (a tie, to even).
TEST_F(CommMpi, Bf16SumRoundsOnceFromFp32) {
  std::vector<float> mine(3, 0.0F);
  if (me_ == 0) mine = {1.0F, 1.0F, 256.0F};
  if (me_ == 1 || me_ == 2) mine = {0x1p-8F, 0x1p-9F, 1.0F};
  const Bytes in = ref::encode(mine, CommDType::kBF16);
  Bytes out(in.size());
  ASSERT_TRUE(comm_->all_reduce(kCpu, in.data(), out.data(), 3, CommDType::kBF16).ok());
  const std::vector<float> sum = ref::decode(out, CommDType::kBF16);
  const int small = n_ >= 3 ? 2 : 1;  // ranks 1 and 2, as many as there are
  EXPECT_EQ(sum[0], nn::bf16_to_f32(nn::f32_to_bf16(1.0F + small * 0x1p-8F)));
  EXPECT_EQ(sum[1], nn::bf16_to_f32(nn::f32_to_bf16(1.0F + small * 0x1p-9F)));
  EXPECT_EQ(sum[2], nn::bf16_to_f32(nn::f32_to_bf16(256.0F + small)));
  if (n_ >= 3) {
    EXPECT_EQ(sum[0], 1.0F + 0x1p-7F);
  }
}

TEST_F(CommMpi, ReduceScatterSumsThisRanksChunk) {
  constexpr std::size_t kRecv = 257;
  for (CommDType t : kAllTypes) {
    SCOPED_TRACE(type_name(t));
    const Bytes in = ref::input(me_, kRecv * n_, t);
    Bytes out(kRecv * comm_dtype_bytes(t));
    ASSERT_TRUE(comm_->reduce_scatter(kCpu, in.data(), out.data(), kRecv, t).ok());
    EXPECT_EQ(out, ref::reduce_scatter(me_, n_, kRecv, t));
  }
}

TEST_F(CommMpi, AllGatherConcatenatesInRankOrder) {
  constexpr std::size_t kSend = 129;
  for (CommDType t : kAllTypes) {
    SCOPED_TRACE(type_name(t));
    const Bytes in = ref::input(me_, kSend, t);
    Bytes out(in.size() * n_);
    ASSERT_TRUE(comm_->all_gather(kCpu, in.data(), out.data(), kSend, t).ok());
    EXPECT_EQ(out, ref::all_gather(n_, kSend, t));
  }
}

TEST_F(CommMpi, AllToAllSendsChunkJToRankJ) {
  constexpr std::size_t kChunk = 65;
  for (CommDType t : kAllTypes) {
    SCOPED_TRACE(type_name(t));
    const Bytes in = ref::input(me_, kChunk * n_, t);
    Bytes out(in.size());
    ASSERT_TRUE(comm_->all_to_all(kCpu, in.data(), out.data(), kChunk, t).ok());
    EXPECT_EQ(out, ref::all_to_all(me_, n_, kChunk, t));
  }
}

TEST_F(CommMpi, BroadcastCopiesTheRootsBufferFromEveryRoot) {
  constexpr std::size_t kCount = 100;
  for (CommDType t : kAllTypes) {
    for (int root = 0; root < n_; root++) {
      SCOPED_TRACE(type_name(t) + " root " + std::to_string(root));
      Bytes buffer = ref::input(me_, kCount, t);
      ASSERT_TRUE(comm_->broadcast(kCpu, buffer.data(), kCount, t, root).ok());
      EXPECT_EQ(buffer, ref::broadcast(root, kCount, t));
    }
  }
}

TEST_F(CommMpi, CountersAreTheTextbookCounts) {
  constexpr std::size_t kCount = 1024;  // a multiple of 2 and 4: all_reduce's 2(N-1)/N is exact
  const Bytes in = ref::input(me_, kCount * n_, CommDType::kF32);
  Bytes out(in.size());
  ASSERT_TRUE(comm_->all_reduce(kCpu, in.data(), out.data(), kCount, CommDType::kF32).ok());
  ASSERT_TRUE(comm_->reduce_scatter(kCpu, in.data(), out.data(), kCount, CommDType::kF32).ok());
  ASSERT_TRUE(comm_->all_gather(kCpu, in.data(), out.data(), kCount, CommDType::kF32).ok());
  ASSERT_TRUE(comm_->all_to_all(kCpu, in.data(), out.data(), kCount, CommDType::kF32).ok());
  ASSERT_TRUE(comm_->broadcast(kCpu, out.data(), kCount, CommDType::kF32, 0).ok());
  ASSERT_TRUE(comm_->barrier(kCpu).ok());
  const std::int64_t buffer = kCount * 4;
  const std::int64_t others = n_ - 1;
  const CommStats s = comm_->stats();
  EXPECT_EQ(bytes_of(s, CommOp::kAllReduce), 2 * others * buffer / n_);
  EXPECT_EQ(bytes_of(s, CommOp::kReduceScatter), others * buffer);
  EXPECT_EQ(bytes_of(s, CommOp::kAllGather), others * buffer);
  EXPECT_EQ(bytes_of(s, CommOp::kAllToAll), others * buffer);
  EXPECT_EQ(bytes_of(s, CommOp::kBroadcast), me_ == 0 ? others * buffer : 0);
  EXPECT_EQ(bytes_of(s, CommOp::kBarrier), 0);
  for (std::size_t op = 0; op < kCommOpCount; op++) EXPECT_EQ(s.calls[op], 1) << op;

  // A bf16 sum goes over MPI as fp32: it counts the fp32 bytes.
  const Bytes half = ref::input(me_, kCount, CommDType::kBF16);
  Bytes half_out(half.size());
  ASSERT_TRUE(comm_->all_reduce(kCpu, half.data(), half_out.data(), kCount, CommDType::kBF16).ok());
  EXPECT_EQ(bytes_of(comm_->stats(), CommOp::kAllReduce), 2 * (2 * others * buffer / n_));
}

TEST_F(CommMpi, HostAllGatherGathersEveryRanksBytes) {
  const std::string mine = "rank " + std::to_string(me_) + " says hello";
  std::vector<char> send(32, '\0');
  std::memcpy(send.data(), mine.data(), mine.size());
  std::vector<char> all(send.size() * n_);
  ASSERT_TRUE(comm_->host_all_gather(send.data(), all.data(), send.size()).ok());
  for (int r = 0; r < n_; r++) {
    EXPECT_STREQ(all.data() + r * send.size(),
                 ("rank " + std::to_string(r) + " says hello").c_str());
  }
}

TEST_F(CommMpi, StreamHelpersRunCollectivesOnDeviceMemory) {
  constexpr std::size_t kCount = 512;
  constexpr CommDType kT = CommDType::kBF16;
  const Bytes in = ref::input(me_, kCount * n_, kT);
  void* send = device_->allocate(in.size()).value();
  void* recv = device_->allocate(in.size()).value();
  std::memcpy(send, in.data(), in.size());
  Stream& stream = device_->default_stream();
  const auto result = [&](std::size_t elements) {
    const auto* p = static_cast<const std::uint8_t*>(recv);
    return Bytes(p, p + elements * comm_dtype_bytes(kT));
  };
  ASSERT_TRUE(all_reduce_on(stream, *comm_, send, recv, kCount, kT).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(result(kCount), ref::all_reduce(n_, kCount, kT));
  ASSERT_TRUE(reduce_scatter_on(stream, *comm_, send, recv, kCount, kT).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(result(kCount), ref::reduce_scatter(me_, n_, kCount, kT));
  ASSERT_TRUE(all_to_all_on(stream, *comm_, send, recv, kCount, kT).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(result(kCount * n_), ref::all_to_all(me_, n_, kCount, kT));
  ASSERT_TRUE(all_gather_on(stream, *comm_, send, recv, kCount, kT).ok());
  ASSERT_TRUE(barrier_on(stream, *comm_).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(result(kCount * n_), ref::all_gather(n_, kCount, kT));
  std::memcpy(recv, in.data(), kCount * 2);
  ASSERT_TRUE(broadcast_on(stream, *comm_, recv, kCount, kT, n_ - 1).ok());
  ASSERT_TRUE(stream.synchronize().ok());
  EXPECT_EQ(result(kCount), ref::broadcast(n_ - 1, kCount, kT));
  ASSERT_TRUE(device_->free(send).ok());
  ASSERT_TRUE(device_->free(recv).ok());
}

// Checked before any buffer is touched, on every rank alike, so no rank is left waiting.
TEST_F(CommMpi, RefusesCountsPastIntMax) {
  const std::size_t count = std::size_t{INT_MAX} + 1;
  // Distinct fake addresses far apart: only the count may be wrong.
  auto* send = reinterpret_cast<const void*>(std::uintptr_t{1} << 40);
  auto* recv = reinterpret_cast<void*>(std::uintptr_t{1} << 44);
  const Status s = comm_->all_reduce(kCpu, send, recv, count, CommDType::kF32);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("INT_MAX"), std::string::npos) << s.message();
  // The communicator still works.
  EXPECT_TRUE(comm_->barrier(kCpu).ok());
}

// --- the watchdog, from comm_mpi_watchdog_test.sh (mpirun -np 2) -----------------------------
//
// EBB_COMM_TEST_WATCHDOG=hang: rank 1 skips an all_reduce; rank 0's fails within its 2 s
// timeout with kUnavailable naming the rank, every later call fails at once, and rank 0 then
// aborts the job (MPI_Abort), so mpirun exits non-zero. Rank 0 prints EBB_WATCHDOG_OK when
// every expectation held.
// EBB_COMM_TEST_WATCHDOG=abort: rank 1 aborts while rank 0 waits in an all_reduce (timeout 60
// s): the job ends at once, mpirun exits non-zero, and stderr names rank 1.
TEST(CommMpiWatchdog, APeerThatHangsOrAbortsEndsTheJob) {
  const char* scenario = std::getenv("EBB_COMM_TEST_WATCHDOG");
  if (scenario == nullptr || !rank_env_from_environment().under_launcher) {
    GTEST_SKIP() << "run by comm_mpi_watchdog_test.sh";
  }
  const bool hang = std::string(scenario) == "hang";
  std::unique_ptr<Device> device = cpu_device();
  CommOptions options;
  options.timeout = hang ? std::chrono::seconds(2) : std::chrono::seconds(60);
  std::unique_ptr<Communicator> comm = std::move(make_communicator(*device, options).value());
  ASSERT_EQ(comm->size(), 2) << "run with mpirun -np 2";
  ASSERT_TRUE(comm->barrier(kCpu).ok());  // every rank is up

  float data[16] = {};
  if (comm->rank() == 1) {
    if (!hang) comm->abort("injected failure of the watchdog test");
    // Skips the all_reduce; rank 0's MPI_Abort ends this sleep.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::_Exit(4);  // not reached when the job ends as it should
  }
  const auto start = std::chrono::steady_clock::now();
  const Status s = comm->all_reduce(kCpu, data, data, 16, CommDType::kF32);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("all_reduce on rank 0 of 2 (mpi)"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("a peer rank may have died"), std::string::npos) << s.message();
  EXPECT_GE(waited, std::chrono::seconds(2));
  EXPECT_LT(waited, std::chrono::seconds(10));
  const auto again = std::chrono::steady_clock::now();
  const Status later = comm->barrier(kCpu);
  EXPECT_EQ(later.code(), StatusCode::kUnavailable);
  EXPECT_NE(later.message().find("aborted after an earlier failure"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - again, std::chrono::milliseconds(100));
  if (!::testing::Test::HasFailure()) std::fprintf(stderr, "EBB_WATCHDOG_OK rank 0\n");
  comm->abort(s.message());
}

}  // namespace
}  // namespace ebb
