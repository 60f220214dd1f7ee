// An op's cost given to Engine::run reaches the sim device's clock: once for the op, and again
// for every recompute replay of it.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "engine/ebb.h"
#include "kernels/sim/sim_device.h"

namespace ebb {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr std::size_t kBytes = 2 * kMiB;  // one page: the budget counts whole tensors
const std::vector<std::int64_t> kU8Shape{static_cast<std::int64_t>(kBytes)};

TensorSpec u8(const char* name) { return {name, kU8Shape, DType::kU8}; }

std::unique_ptr<Device> make_sim_device() {
  DeviceOptions options;
  options.kind = DeviceKind::kSim;
  options.capacity_bytes = 64 * kMiB;
  return create_sim_device(options).value();
}

nanoseconds now(Engine& engine) {
  EXPECT_TRUE(engine.synchronize().ok());
  return simulated_time(engine.device()).value();
}

const OpFn kNoop = [](const OpArgs&) {};

TEST(EngineSimCost, AdvancesTheSimClockByTheGivenCost) {
  auto device = make_sim_device();
  auto engine = Engine::create({.device = *device}).value();
  Tensor x = engine->input(u8("x"), nullptr).value();
  IterationScope iteration(*engine);
  ASSERT_TRUE(iteration.status().ok());
  const nanoseconds before = now(*engine);
  Tensor y = engine->run("f", {x}, {u8("y")}, kNoop, milliseconds(7)).value()[0];
  EXPECT_EQ(now(*engine) - before, milliseconds(7));
  EXPECT_EQ(engine->tape()[0].cost_ns, 7'000'000);
  // No cost: the sim launch costs nothing.
  engine->run("g", {y}, {u8("z")}, kNoop).value();
  EXPECT_EQ(now(*engine) - before, milliseconds(7));
  EXPECT_FALSE(engine->run("h", {y}, {u8("w")}, kNoop, nanoseconds(-1)).ok());
  EXPECT_TRUE(iteration.end().ok());
}

TEST(EngineSimCost, ARecomputeReplaysTheCostAgain) {
  auto device = make_sim_device();
  // x and two activations fit; a third activation drops one.
  auto engine =
      Engine::create(
          {.device = *device, .budget_bytes = 3 * kBytes, .policy = EvictionPolicy::kRecompute})
          .value();
  Tensor x = engine->input(u8("x"), nullptr).value();
  IterationScope iteration(*engine);
  ASSERT_TRUE(iteration.status().ok());
  const nanoseconds before = now(*engine);
  Tensor y1 = engine->run("f1", {x}, {u8("y1")}, kNoop, milliseconds(3)).value()[0];
  Tensor y2 = engine->run("f2", {y1}, {u8("y2")}, kNoop, milliseconds(5)).value()[0];
  // y3 is never read: it only takes the third activation's room.
  ASSERT_TRUE(engine->run("f3", {y2}, {u8("y3")}, kNoop, milliseconds(11)).ok());
  engine->run("f4", {y1}, {u8("y4")}, kNoop, milliseconds(13)).value();
  const nanoseconds given = milliseconds(3 + 5 + 11 + 13);
  const EngineStats stats = engine->stats();
  ASSERT_GE(stats.recomputed_ops, 1);
  const nanoseconds elapsed = now(*engine) - before;
  EXPECT_GT(elapsed, given);
  EXPECT_EQ(elapsed, given + nanoseconds(stats.recompute_ns));
  EXPECT_TRUE(iteration.end().ok());
}

}  // namespace
}  // namespace ebb
