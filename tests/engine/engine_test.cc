// The Engine's API: tensors, ops, reading back, iterations, release, errors, and recompute
// through a chain of dropped tensors.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "kernels/sim/sim_device.h"
#include "tests/engine/test_ops.h"
#include "tests/support/forwarding_device.h"

namespace ebb {
namespace {

using test_ops::f32;

constexpr std::size_t kN = 64 * 1024;  // 256 KiB of floats
const std::vector<std::int64_t> kShape{static_cast<std::int64_t>(kN)};

std::unique_ptr<Engine> make_engine(Device& device, std::size_t budget = 0,
                                    EvictionPolicy policy = EvictionPolicy::kBoth) {
  return Engine::create({.device = device, .budget_bytes = budget, .policy = policy}).value();
}

std::vector<float> read_floats(Engine& engine, const Tensor& t) {
  std::vector<float> host(t.bytes() / sizeof(float));
  Status s = engine.read(t, host.data(), t.bytes());
  EXPECT_TRUE(s.ok()) << s.to_string();
  return host;
}

TEST(Engine, RunsAnOpAndReadsItBack) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  IterationScope iteration(*engine);
  ASSERT_TRUE(iteration.status().ok());
  const std::vector<float> a = test_ops::random_floats(kN, 1);
  const std::vector<float> b = test_ops::random_floats(kN, 2);
  Tensor ta = engine->input(f32("a", kShape), a.data()).value();
  Tensor tb = engine->parameter(f32("b", kShape), b.data()).value();
  EXPECT_EQ(ta.kind(), TensorKind::kInput);
  EXPECT_EQ(tb.kind(), TensorKind::kParameter);
  EXPECT_EQ(ta.bytes(), kN * sizeof(float));
  auto out = engine->run("add", {ta, tb}, {f32("c", kShape)}, test_ops::add(kN)).value();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].name(), "c");
  EXPECT_EQ(out[0].shape(), kShape);
  const std::vector<float> c = read_floats(*engine, out[0]);
  for (std::size_t i = 0; i < kN; ++i) ASSERT_EQ(c[i], a[i] + b[i]) << i;
  ASSERT_EQ(engine->tape().size(), 1U);
  EXPECT_EQ(engine->tape()[0].code->name, "add");
  EXPECT_TRUE(iteration.end().ok());
  EXPECT_EQ(engine->stats().ops_run, 1);
}

TEST(Engine, RejectsBadArguments) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  Tensor x = engine->input(f32("x", kShape), nullptr).value();
  // Outside an iteration.
  Result<std::vector<Tensor>> outside =
      engine->run("early", {x}, {f32("y", kShape)}, test_ops::tanh_op(kN));
  EXPECT_EQ(outside.status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(engine->begin_iteration().ok());
  Result<std::vector<Tensor>> empty_shape =
      engine->run("bad_shape", {x}, {f32("y", {0, 4})}, test_ops::tanh_op(kN));
  ASSERT_EQ(empty_shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty_shape.status().message().find("'bad_shape'"), std::string::npos);
  EXPECT_NE(empty_shape.status().message().find("'y'"), std::string::npos);
  Result<std::vector<Tensor>> no_handle =
      engine->run("no_handle", {Tensor()}, {f32("y", kShape)}, test_ops::tanh_op(kN));
  EXPECT_EQ(no_handle.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine->end_iteration().ok());
  EXPECT_TRUE(engine->tape().empty());
}

TEST(Engine, UseAfterReleaseNamesTheTensorAndTheOp) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  IterationScope iteration(*engine);
  Tensor x = engine->input(f32("x", kShape), nullptr).value();
  Tensor y = engine->run("tanh", {x}, {f32("hidden", kShape)}, test_ops::tanh_op(kN)).value()[0];
  const std::size_t live = engine->allocator().stats().all.allocated_bytes.current;
  ASSERT_TRUE(engine->release(y).ok());
  EXPECT_LT(engine->allocator().stats().all.allocated_bytes.current, live);
  Result<std::vector<Tensor>> after =
      engine->run("consumer", {y}, {f32("z", kShape)}, test_ops::tanh_op(kN));
  ASSERT_EQ(after.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(after.status().message().find("'hidden'"), std::string::npos)
      << after.status().message();
  EXPECT_NE(after.status().message().find("'consumer'"), std::string::npos)
      << after.status().message();
  std::vector<float> host(kN);
  EXPECT_EQ(engine->read(y, host.data(), 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->release(y).code(), StatusCode::kInvalidArgument);
}

TEST(Engine, TensorNotKeptIsReleasedAtEndOfIterationAndNamedAfterwards) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  const std::vector<float> xs = test_ops::random_floats(kN, 5);
  Tensor x = engine->input(f32("x", kShape), xs.data()).value();  // outside: carried
  const std::int64_t before = engine->allocator().stats().all.allocated_bytes.current;
  ASSERT_TRUE(engine->begin_iteration().ok());
  Tensor kept =
      engine->run("scale", {x}, {f32("kept", kShape)}, test_ops::scale(kN, 2, 1)).value()[0];
  Tensor temp =
      engine->run("tanh", {kept}, {f32("temp", kShape)}, test_ops::tanh_op(kN)).value()[0];
  ASSERT_TRUE(engine->keep(kept).ok());
  const std::int64_t during = engine->allocator().stats().all.allocated_bytes.current;
  ASSERT_TRUE(engine->end_iteration().ok());
  const std::int64_t after = engine->allocator().stats().all.allocated_bytes.current;
  EXPECT_EQ(during - after, static_cast<std::int64_t>(kN * sizeof(float)));  // temp's block
  EXPECT_EQ(after - before, static_cast<std::int64_t>(kN * sizeof(float)));  // kept's block

  ASSERT_TRUE(engine->begin_iteration().ok());
  const std::vector<float> k = read_floats(*engine, kept);
  for (std::size_t i = 0; i < kN; ++i) ASSERT_EQ(k[i], xs[i] * 2 + 1) << i;
  Result<std::vector<Tensor>> stale =
      engine->run("next", {temp}, {f32("z", kShape)}, test_ops::tanh_op(kN));
  ASSERT_EQ(stale.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(stale.status().message().find("'temp'"), std::string::npos) << stale.status().message();
  EXPECT_NE(stale.status().message().find("'next'"), std::string::npos);
  auto again = engine->run("again", {kept, x}, {f32("sum", kShape)}, test_ops::add(kN));
  EXPECT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(engine->end_iteration().ok());
}

TEST(Engine, ClosureThatThrowsIsReportedNamingTheOpAndTheEngineStaysUsable) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  Tensor x = engine->input(f32("x", kShape), nullptr).value();
  ASSERT_TRUE(engine->begin_iteration().ok());
  auto thrown = engine->run("exploding_op", {x}, {f32("y", kShape)},
                            [](const OpArgs&) { throw std::runtime_error("boom"); });
  ASSERT_TRUE(thrown.ok());  // launched; the closure runs on the stream's thread
  Status synced = engine->synchronize();
  ASSERT_FALSE(synced.ok());
  EXPECT_NE(synced.message().find("'exploding_op'"), std::string::npos) << synced.message();
  EXPECT_NE(synced.message().find("boom"), std::string::npos) << synced.message();
  EXPECT_TRUE(engine->end_iteration().ok());

  // The next iteration runs normally.
  ASSERT_TRUE(engine->begin_iteration().ok());
  auto fine = engine->run("fine", {x}, {f32("y", kShape)}, test_ops::scale(kN, 1, 3)).value();
  EXPECT_EQ(read_floats(*engine, fine[0])[7], 3.0F);
  EXPECT_TRUE(engine->end_iteration().ok());
}

TEST(Engine, ClosureErrorIsReturnedByTheNextRun) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device);
  IterationScope iteration(*engine);
  Tensor x = engine->input(f32("x", kShape), nullptr).value();
  ASSERT_TRUE(engine
                  ->run("thrower", {x}, {f32("y", kShape)},
                        [](const OpArgs&) { throw std::runtime_error("bad input"); })
                  .ok());
  ASSERT_TRUE(device->default_stream().synchronize().ok());
  auto next = engine->run("next", {x}, {f32("z", kShape)}, test_ops::tanh_op(kN));
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("'thrower'"), std::string::npos);
}

TEST(Engine, RejectsATensorOfAnotherEngine) {
  auto device = test_ops::make_cpu_device();
  auto first = make_engine(*device, 64 * kMiB);
  auto second = make_engine(*device, 64 * kMiB);
  Tensor foreign = first->input(f32("foreign", kShape), nullptr).value();
  IterationScope iteration(*second);
  auto r = second->run("op", {foreign}, {f32("y", kShape)}, test_ops::tanh_op(kN));
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("another engine"), std::string::npos);
  EXPECT_NE(r.status().message().find("'op'"), std::string::npos);
}

TEST(Engine, TwoEnginesDoNotInterfere) {
  auto device_a = test_ops::make_cpu_device();
  auto device_b = test_ops::make_cpu_device();
  auto a = make_engine(*device_a, 2 * kMiB, EvictionPolicy::kRecompute);
  auto b = make_engine(*device_b, 0, EvictionPolicy::kNone);
  const std::vector<float> xs = test_ops::random_floats(kN, 9);
  Tensor xa = a->input(f32("x", kShape), xs.data()).value();
  Tensor xb = b->input(f32("x", kShape), xs.data()).value();
  ASSERT_TRUE(a->begin_iteration().ok());
  ASSERT_TRUE(b->begin_iteration().ok());
  Tensor ya = xa;
  Tensor yb = xb;
  for (int i = 0; i < 12; ++i) {  // interleaved; a evicts, b does not
    ya = a->run("tanh", {ya}, {f32("ya", kShape)}, test_ops::tanh_op(kN)).value()[0];
    yb = b->run("tanh", {yb}, {f32("yb", kShape)}, test_ops::tanh_op(kN)).value()[0];
  }
  EXPECT_EQ(read_floats(*a, ya), read_floats(*b, yb));
  EXPECT_GT(a->stats().evictions, 0);
  EXPECT_EQ(b->stats().evictions, 0);
  EXPECT_LE(a->allocator().stats().all.reserved_bytes.peak, 2 * static_cast<std::int64_t>(kMiB));
  EXPECT_GT(b->allocator().stats().all.reserved_bytes.peak, 2 * static_cast<std::int64_t>(kMiB));
  EXPECT_TRUE(a->end_iteration().ok());
  EXPECT_TRUE(b->end_iteration().ok());
}

// A chain under a budget of five of its tensors: reading a dropped tensor whose input was dropped
// too replays its producer and, recursively, the producer's producer.
TEST(Engine, RecomputesThroughAChainOfDroppedInputs) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, 1280 * kKiB, EvictionPolicy::kRecompute);
  const std::vector<float> xs = test_ops::random_floats(kN, 4);
  IterationScope iteration(*engine);
  Tensor x = engine->input(f32("x", kShape), xs.data()).value();
  std::vector<Tensor> chain{x};
  for (int i = 0; i < 12; ++i) {
    chain.push_back(engine
                        ->run("step" + std::to_string(i), {chain.back()},
                              {f32("t" + std::to_string(i), kShape)},
                              test_ops::scale(kN, 1.25F, 0.5F))
                        .value()[0]);
  }
  std::vector<float> expect = xs;
  std::vector<std::vector<float>> expected;
  for (int i = 0; i < 12; ++i) {
    for (float& v : expect) v = v * 1.25F + 0.5F;
    expected.push_back(expect);
  }
  // Which tensors are dropped depends on measured op costs; find a dropped tensor whose
  // producer's input is dropped too.
  int target = 0;
  for (int i = 12; i >= 2 && target == 0; --i) {
    if (engine->residency(chain[i]).value() == Residency::kDropped &&
        engine->residency(chain[i - 1]).value() == Residency::kDropped) {
      target = i;
    }
  }
  ASSERT_NE(target, 0) << "no two consecutive tensors of the chain were dropped";
  const std::int64_t before = engine->stats().recomputed_ops;
  EXPECT_EQ(read_floats(*engine, chain[target]), expected[target - 1]);
  EXPECT_GE(engine->stats().recomputed_ops - before, 2);
  EXPECT_GT(engine->stats().recompute_ns, 0);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(read_floats(*engine, chain[i + 1]), expected[i]) << "t" << i;
  }
  EXPECT_LE(engine->allocator().stats().all.reserved_bytes.peak,
            static_cast<std::int64_t>(1280 * kKiB));
}

TEST(Engine, OutOfMemoryNamesTheOpBudgetAndHeldTensorsAndLeavesNothingBehind) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, 1 * kMiB, EvictionPolicy::kNone);
  IterationScope iteration(*engine);
  Tensor x = engine->input(f32("big_input", kShape), nullptr).value();
  Tensor y = engine->run("first", {x}, {f32("y", kShape)}, test_ops::tanh_op(kN)).value()[0];
  const std::size_t tensors_before = engine->tensors().slot_count();
  const std::int64_t live_before = engine->allocator().stats().all.allocated_bytes.current;
  auto failed =
      engine->run("too_big", {x, y}, {f32("a", kShape), f32("b", kShape), f32("c", kShape)},
                  test_ops::tanh_op(kN));
  ASSERT_EQ(failed.status().code(), StatusCode::kOutOfMemory);
  const std::string& m = failed.status().message();
  EXPECT_NE(m.find("'too_big'"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(kN * sizeof(float))), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(kMiB)), std::string::npos) << m;
  EXPECT_NE(m.find("'big_input'"), std::string::npos) << m;
  EXPECT_EQ(engine->tensors().slot_count(), tensors_before);
  EXPECT_TRUE(engine->tape().size() == 1);
  EXPECT_EQ(engine->allocator().stats().all.allocated_bytes.current, live_before);
  // Still usable.
  auto ok = engine->run("small", {x}, {f32("s", {16})}, test_ops::tanh_op(16));
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
}

TEST(Engine, SwapsParametersOutAndBackBitExactly) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, 1 * kMiB, EvictionPolicy::kSwap);
  std::vector<Tensor> params;
  std::vector<std::vector<float>> hosts;
  for (int i = 0; i < 6; ++i) {  // 1.5 MiB of parameters under a 1 MiB budget
    hosts.push_back(test_ops::random_floats(kN, 20 + i));
    params.push_back(
        engine->parameter(f32("p" + std::to_string(i), kShape), hosts.back().data()).value());
  }
  EXPECT_GT(engine->stats().swap_outs, 0);
  IterationScope iteration(*engine);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(read_floats(*engine, params[i]), hosts[i]) << i;
  EXPECT_GT(engine->stats().swapped_in_bytes, 0);
  EXPECT_LE(engine->allocator().stats().all.reserved_bytes.peak, static_cast<std::int64_t>(kMiB));
}

std::unique_ptr<Engine> make_checking_engine(Device& device) {
  return Engine::create({.device = device, .check_outputs = true}).value();
}

TEST(Engine, CheckOutputsReportsAnUnwrittenHalf) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_checking_engine(*device);
  const std::vector<float> a = test_ops::random_floats(kN, 1);
  Tensor x = engine->input(f32("x", kShape), a.data()).value();  // carried
  IterationScope iteration(*engine);
  Result<std::vector<Tensor>> half =
      engine->run("half_writer", {x}, {f32("h", kShape)}, [](const OpArgs& args) {
        for (std::size_t i = 0; i < kN / 2; ++i)
          test_ops::out(args, 0)[i] = test_ops::in(args, 0)[i];
      });
  ASSERT_EQ(half.status().code(), StatusCode::kFailedPrecondition);
  const std::string& m = half.status().message();
  EXPECT_NE(m.find("'half_writer'"), std::string::npos) << m;
  EXPECT_NE(m.find("'h'"), std::string::npos) << m;
  const std::size_t half_bytes = kN / 2 * sizeof(float);
  EXPECT_NE(m.find("from byte " + std::to_string(half_bytes) + ", " + std::to_string(half_bytes) +
                   " of " + std::to_string(kN * sizeof(float))),
            std::string::npos)
      << m;
  // No partial state: nothing registered, the engine runs the next op.
  EXPECT_TRUE(engine->tape().empty());
  EXPECT_EQ(engine->stats().ops_run, 0);
  Tensor y = engine->run("tanh", {x}, {f32("y", kShape)}, test_ops::tanh_op(kN)).value()[0];
  const std::vector<float> got = read_floats(*engine, y);
  for (std::size_t i = 0; i < kN; ++i) ASSERT_EQ(got[i], std::tanh(a[i])) << i;
  EXPECT_EQ(engine->tape().size(), 1U);
  Status ended = iteration.end();
  EXPECT_TRUE(ended.ok()) << ended.to_string();
  // Only x holds bytes: the failed op's output went back to the allocator.
  EXPECT_EQ(engine->allocator().stats().all.allocated_bytes.current,
            static_cast<std::int64_t>(kN * sizeof(float)));
  // And the next iteration runs.
  IterationScope next(*engine);
  EXPECT_TRUE(engine->run("tanh", {x}, {f32("y", kShape)}, test_ops::tanh_op(kN)).ok());
  EXPECT_TRUE(next.end().ok());
}

TEST(Engine, CheckOutputsPassesACorrectClosureWithTheSameBits) {
  auto device = test_ops::make_cpu_device();
  const std::vector<float> a = test_ops::random_floats(kN, 3);
  const std::vector<float> b = test_ops::random_floats(kN, 4);
  std::vector<float> results[2];
  for (int checked = 0; checked < 2; ++checked) {
    auto engine = Engine::create({.device = *device, .check_outputs = checked == 1}).value();
    IterationScope iteration(*engine);
    Tensor ta = engine->input(f32("a", kShape), a.data()).value();
    Tensor tb = engine->input(f32("b", kShape), b.data()).value();
    Tensor c = engine->run("mul", {ta, tb}, {f32("c", kShape)}, test_ops::mul(kN)).value()[0];
    Tensor d = engine->run("tanh", {c}, {f32("d", kShape)}, test_ops::tanh_op(kN)).value()[0];
    results[checked] = read_floats(*engine, d);
    EXPECT_EQ(engine->stats().ops_run, 2);
    EXPECT_TRUE(iteration.end().ok());
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), kN * sizeof(float)), 0);
}

TEST(Engine, CheckOutputsReportsANondeterministicClosure) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_checking_engine(*device);
  IterationScope iteration(*engine);
  Tensor x = engine->input(f32("x", kShape), nullptr).value();
  auto counter = std::make_shared<float>(0.0F);
  Result<std::vector<Tensor>> r =
      engine->run("counter", {x}, {f32("n", kShape)}, [counter](const OpArgs& args) {
        *counter += 1;
        for (std::size_t i = 0; i < kN; ++i) test_ops::out(args, 0)[i] = *counter;
      });
  ASSERT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("'counter'"), std::string::npos) << m;
  EXPECT_NE(m.find("'n'"), std::string::npos) << m;
  EXPECT_NE(m.find("from byte "), std::string::npos) << m;
  EXPECT_TRUE(engine->tape().empty());
  EXPECT_TRUE(iteration.end().ok());
}

// The compute stream of a TimedSimDevice: every launch occupies the sim stream for the device's
// kernel_cost, whatever cost the engine passes, so that an op with no given cost still has a
// measured duration, and an exact one.
class TimedStream final : public Stream {
 public:
  TimedStream(Stream& inner, const std::chrono::nanoseconds& kernel_cost)
      : inner_(inner), kernel_cost_(kernel_cost) {}
  std::uint32_t id() const override { return inner_.id(); }
  Status copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) override {
    return inner_.copy_async(dst, src, bytes, kind);
  }
  Status memset_async(void* dst, std::uint8_t value, std::size_t bytes) override {
    return inner_.memset_async(dst, value, bytes);
  }
  Status launch(Kernel kernel) override { return inner_.launch(std::move(kernel), kernel_cost_); }
  Status launch(Kernel kernel, std::chrono::nanoseconds) override {
    return launch(std::move(kernel));
  }
  Status record(Event& event) override { return inner_.record(event); }
  Status wait(Event& event) override { return inner_.wait(event); }
  Status synchronize() override { return inner_.synchronize(); }
  Result<bool> query() override { return inner_.query(); }

 private:
  Stream& inner_;
  const std::chrono::nanoseconds& kernel_cost_;
};

// A sim device (a virtual clock) whose default stream, the engine's compute stream, runs every
// kernel for kernel_cost: what an op takes is set by the test, not by the machine's load.
class TimedSimDevice final : public test_support::ForwardingDevice {
 public:
  TimedSimDevice()
      : ForwardingDevice(create_sim_device(options()).value()),
        default_stream_(inner().default_stream(), kernel_cost) {}
  Stream& default_stream() override { return default_stream_; }

  std::chrono::nanoseconds kernel_cost{0};

 private:
  static DeviceOptions options() {
    DeviceOptions o;
    o.capacity_bytes = 64 * kMiB;
    return o;
  }

  TimedStream default_stream_;
};

// After the warm-up not every op is timed, but every op still carries a measured cost for
// eviction: its name's last measurement, which a timed sample of the name keeps current. On a
// virtual clock, so that every measurement is exact.
TEST(Engine, AfterTheWarmupOpsCarryTheirNamesMeasuredCostAndSamplesKeepItCurrent) {
  TimedSimDevice device;
  auto engine = Engine::create({.device = device, .warmup_iterations = 1}).value();
  Tensor x = engine->input(f32("x", {4}), nullptr).value();
  constexpr std::int64_t kSlowNs = 20'000'000;
  constexpr std::int64_t kFastNs = 1'000'000;
  const OpFn nothing = [](const OpArgs&) {};  // a sim device runs no closure
  // The cost the op carries when it is run (a measurement lands when the iteration ends).
  const auto run_once = [&](std::int64_t kernel_ns) -> std::int64_t {
    device.kernel_cost = std::chrono::nanoseconds(kernel_ns);
    IterationScope iteration(*engine);
    Result<std::vector<Tensor>> y = engine->run("op", {x}, {f32("y", {4})}, nothing);
    EXPECT_TRUE(y.ok()) << y.status().to_string();
    const std::int64_t cost_ns = engine->tape().empty() ? 0 : engine->tape()[0].cost_ns;
    EXPECT_TRUE(iteration.end().ok());
    return cost_ns;
  };
  run_once(kSlowNs);  // the warm-up iteration: timed
  // The op is fast now, but until a sample of "op" is timed its cost is the warm-up's.
  for (std::uint64_t i = 1; i <= Engine::kTimingSamplePeriod; ++i) {
    ASSERT_EQ(run_once(kFastNs), kSlowNs) << "run " << i << " after the warm-up";
  }
  // The last of those was the sample: its measurement is the name's cost from now on, also for a
  // run that is slow again and not timed.
  EXPECT_EQ(run_once(kFastNs), kFastNs);
  EXPECT_EQ(run_once(kSlowNs), kFastNs);
}

}  // namespace
}  // namespace ebb
