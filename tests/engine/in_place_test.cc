// Views into flat buffers and in-place ops (Engine::view, Engine::update): what model state
// needs from the engine. Views name bytes of a base; in-place ops write carried tensors; neither
// may change a bit of what replay and eviction give back.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "tests/engine/test_ops.h"

namespace ebb {
namespace {

using test_ops::f32;
using test_ops::in;
using test_ops::make_cpu_device;
using test_ops::out;

// out = in * 2 (one input), for checking what an op reads through a view.
OpFn twice(std::size_t n) { return test_ops::scale(n, 2.0F); }

// targets[0] += inputs[0], elementwise: gradient accumulation in place.
OpFn accumulate(std::size_t n) {
  return [n](const OpArgs& a) {
    float* acc = out(a, 0);
    for (std::size_t i = 0; i < n; ++i) acc[i] += in(a, 0)[i];
  };
}

std::vector<float> read_all(Engine& engine, const Tensor& t) {
  std::vector<float> host(t.bytes() / sizeof(float));
  EXPECT_TRUE(engine.read(t, host.data(), t.bytes()).ok());
  return host;
}

// An engine that makes room by recompute alone under `budget` (0: none), no warm-up.
std::unique_ptr<Engine> recompute_engine(Device& device, std::size_t budget) {
  return Engine::create({.device = device,
                         .budget_bytes = budget,
                         .policy = EvictionPolicy::kRecompute,
                         .warmup_iterations = 0})
      .value();
}

// Recompute costs given to the ops rather than measured, so that which tensor eviction drops
// does not depend on how fast this build runs the kernels (a sanitizer build runs tanh far
// slower): `a` is cheap to rebuild, the chain after it dear.
constexpr std::chrono::nanoseconds kCheap{1000};
constexpr std::chrono::nanoseconds kDear{1000000};

// Six activations of n floats made one from the other after `from`: enough that `from`, the
// cheapest to rebuild, must be dropped under a budget of a few such tensors.
void run_chain_after(Engine& engine, const Tensor& from, std::size_t n) {
  Tensor x = from;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "b" + std::to_string(i);
    x = engine
            .run(name, {x}, {f32(name, {static_cast<std::int64_t>(n)})},
                 test_ops::scale(n, 0.5F, 1.0F), kDear)
            .value()[0];
  }
}

// Engine::discard gives a carried tensor's block back without saving it; the next use finds
// zeros, and a view of it reads the refilled base.
TEST(EngineDiscard, GivesTheBytesBackAndRefillsWithZeros) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  std::vector<float> flat{1, 2, 3, 4, 5, 6, 7, 8};
  Tensor buffer = engine->parameter(f32("grads", {8}, TensorKind::kGradient), flat.data()).value();
  Tensor tail = engine->view(buffer, 4 * sizeof(float), f32("tail", {4})).value();
  const std::int64_t held = engine->memory_by_kind(TensorKind::kGradient).current;
  EXPECT_GE(held, static_cast<std::int64_t>(8 * sizeof(float)));
  {
    IterationScope it(*engine);
    ASSERT_TRUE(engine->discard(buffer).ok());
    EXPECT_EQ(engine->memory_by_kind(TensorKind::kGradient).current, 0);
    EXPECT_EQ(engine->residency(buffer).value(), Residency::kDropped);
    EXPECT_EQ(engine->discard(tail).code(), StatusCode::kInvalidArgument) << "a view";
    Tensor g = engine->input(f32("g", {4}), std::vector<float>{1, 1, 1, 1}.data()).value();
    ASSERT_TRUE(engine->update("accumulate", {g}, {tail}, accumulate(4)).ok());
  }
  // The iteration's end neither rebuilt nor released it: it stays, refilled by the update.
  EXPECT_EQ(read_all(*engine, buffer), (std::vector<float>{0, 0, 0, 0, 1, 1, 1, 1}));
  {
    IterationScope it(*engine);
    ASSERT_TRUE(engine->discard(buffer).ok());
  }
  EXPECT_EQ(engine->residency(buffer).value(), Residency::kDropped) << "kept across iterations";
  EXPECT_EQ(read_all(*engine, tail), (std::vector<float>{0, 0, 0, 0}));
  Tensor made;
  {
    IterationScope it(*engine);
    made = engine->run("twice", {tail}, {f32("made", {4})}, twice(4)).value()[0];
    EXPECT_EQ(engine->discard(made).code(), StatusCode::kInvalidArgument) << "not carried";
  }
}

TEST(EngineView, OpsReadAndWriteTheBytesOfTheirBase) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  // A flat buffer of 8 floats holding two "parameters" of 3 floats, the second at byte 16.
  std::vector<float> flat{1, 2, 3, 0, 10, 20, 30, 0};
  Tensor buffer = engine->parameter(f32("flat", {8}, TensorKind::kParameter), flat.data()).value();
  Tensor a = engine->view(buffer, 0, f32("a", {3})).value();
  Tensor b = engine->view(buffer, 4 * sizeof(float), f32("b", {3})).value();
  EXPECT_EQ(a.kind(), TensorKind::kParameter) << "a view takes its base's kind by default";
  EXPECT_EQ(b.bytes(), 3 * sizeof(float));
  {
    IterationScope it(*engine);
    Tensor doubled = engine->run("twice", {b}, {f32("doubled", {3})}, twice(3)).value()[0];
    EXPECT_EQ(read_all(*engine, doubled), (std::vector<float>{20, 40, 60}));
    Tensor g = engine->input(f32("g", {3}), std::vector<float>{1, 1, 1}.data()).value();
    ASSERT_TRUE(engine->update("accumulate", {g}, {a}, accumulate(3)).ok());
  }
  EXPECT_EQ(read_all(*engine, a), (std::vector<float>{2, 3, 4}));
  EXPECT_EQ(read_all(*engine, buffer), (std::vector<float>{2, 3, 4, 0, 10, 20, 30, 0}))
      << "the update wrote the base's bytes, and only the view's";
  EXPECT_EQ(engine->residency(a).value(), Residency::kDevice);
}

TEST(EngineView, RefusesWhatItCannotName) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  Tensor buffer = engine->parameter(f32("flat", {8}, TensorKind::kParameter), nullptr).value();
  EXPECT_EQ(engine->view(buffer, 6 * sizeof(float), f32("past", {3})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->view(buffer, 2, f32("unaligned", {1})).status().code(),
            StatusCode::kInvalidArgument);
  Tensor view = engine->view(buffer, 0, f32("v", {2})).value();
  Status released = engine->release(buffer);
  EXPECT_EQ(released.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(released.message().find("live views"), std::string::npos) << released.message();
  ASSERT_TRUE(engine->release(view).ok());
  EXPECT_TRUE(engine->release(buffer).ok());
  IterationScope it(*engine);
  Tensor activation = engine->input(f32("x", {4}), nullptr).value();
  EXPECT_EQ(engine->view(activation, 0, f32("of_input", {2})).status().code(),
            StatusCode::kInvalidArgument)
      << "an input of the iteration is not carried: no view of it";
}

TEST(EngineUpdate, RefusesATargetAnOpOfTheIterationMade) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  IterationScope it(*engine);
  Tensor x = engine->input(f32("x", {4}), std::vector<float>{1, 2, 3, 4}.data()).value();
  Tensor y = engine->run("twice", {x}, {f32("y", {4})}, twice(4)).value()[0];
  Status s = engine->update("accumulate", {x}, {y}, accumulate(4));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'twice'"), std::string::npos) << s.message();
  EXPECT_EQ(engine->update("nothing", {x}, {}, accumulate(4)).code(), StatusCode::kInvalidArgument);
}

// A tensor dropped under the budget whose producer read a parameter: when the parameter is
// written in place, the tensor is rebuilt first (from the old bytes), and the bits it gives are
// those of the run that never dropped it.
TEST(EngineUpdate, RebuildsWhatReplayWouldReadBeforeTheWrite) {
  constexpr std::size_t kN = 64 * 1024;  // 256 KiB per tensor
  auto run = [&](std::size_t budget, std::vector<float>* kept, std::int64_t* replays) {
    auto device = make_cpu_device();
    auto engine = recompute_engine(*device, budget);
    std::vector<float> w0(kN);
    for (std::size_t i = 0; i < kN; ++i) w0[i] = 0.001F * static_cast<float>(i % 97);
    Tensor w = engine->parameter(f32("w", {kN}, TensorKind::kParameter), w0.data()).value();
    IterationScope it(*engine);
    Tensor a = engine->run("a", {w}, {f32("a", {kN})}, test_ops::tanh_op(kN), kCheap).value()[0];
    run_chain_after(*engine, a, kN);
    Tensor g = engine->input(f32("g", {kN}), std::vector<float>(kN, 0.25F).data()).value();
    EXPECT_TRUE(engine->update("w_update", {g}, {w}, accumulate(kN)).ok());
    *kept = read_all(*engine, a);
    *replays = engine->stats().recomputed_ops;
  };
  std::vector<float> unconstrained;
  std::vector<float> budgeted;
  std::int64_t replays_free = 0;
  std::int64_t replays_tight = 0;
  run(0, &unconstrained, &replays_free);
  run(5 * kN * sizeof(float), &budgeted, &replays_tight);
  EXPECT_EQ(replays_free, 0);
  EXPECT_GT(replays_tight, 0) << "the budget must have dropped something";
  EXPECT_EQ(budgeted, unconstrained) << "a rebuilt after w changed would read the new w";
}

// A parameter swapped out and brought back keeps a clean host copy; an in-place write makes it
// out of date, so the next swap-out must copy the new bytes.
TEST(EngineUpdate, DropsTheCleanHostCopyOfWhatItWrites) {
  constexpr std::size_t kN = 64 * 1024;
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device,
                                .budget_bytes = 3 * kN * sizeof(float),
                                .policy = EvictionPolicy::kSwap,
                                .warmup_iterations = 0})
                    .value();
  Tensor w =
      engine->parameter(f32("w", {kN}, TensorKind::kParameter), std::vector<float>(kN, 1.0F).data())
          .value();
  const auto fill = [&](const std::string& name) {
    return engine->input(f32(name, {kN}), std::vector<float>(kN, 3.0F).data()).value();
  };
  {
    IterationScope it(*engine);
    // Three more tensors of w's size: w is swapped out to make room, and read back.
    Tensor x1 = fill("x1");
    Tensor x2 = fill("x2");
    Tensor x3 = fill("x3");
    ASSERT_EQ(engine->residency(w).value(), Residency::kHost);
    ASSERT_TRUE(engine->update("w_plus_x1", {x1}, {w}, accumulate(kN)).ok());
    EXPECT_EQ(read_all(*engine, w), std::vector<float>(kN, 4.0F));
    // Three more: everything older is swapped out, w with its new bytes.
    Tensor x4 = fill("x4");
    Tensor x5 = fill("x5");
    Tensor x6 = fill("x6");
    EXPECT_EQ(engine->residency(w).value(), Residency::kHost);
    (void)x2;
    (void)x3;
    (void)x4;
    (void)x5;
    (void)x6;
  }
  EXPECT_EQ(read_all(*engine, w), std::vector<float>(kN, 4.0F));
  EXPECT_GE(engine->stats().swap_outs, 2);
}

// The profile records a view as its base, and an in-place op as reading its inputs and then its
// targets, with no outputs.
TEST(EngineUpdate, ProfileSeesTheBaseAndTheInPlaceOp) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device, .warmup_iterations = 1}).value();
  Tensor buffer = engine->parameter(f32("flat", {8}, TensorKind::kGradient), nullptr).value();
  Tensor part = engine->view(buffer, 4 * sizeof(float), f32("part", {4})).value();
  {
    IterationScope it(*engine);
    Tensor g = engine->input(f32("g", {4}), std::vector<float>{1, 2, 3, 4}.data()).value();
    ASSERT_TRUE(engine->update("accumulate", {g}, {part}, accumulate(4)).ok());
  }
  Profile profile = engine->profile().value();
  ASSERT_EQ(profile.ops.size(), 1U);
  ASSERT_EQ(profile.ops[0].inputs.size(), 2U);
  EXPECT_TRUE(profile.ops[0].outputs.empty());
  const ProfiledTensor& target = profile.tensors[profile.ops[0].inputs[1]];
  EXPECT_EQ(target.name, "flat") << "the base, not the view";
  EXPECT_EQ(target.bytes, 8 * sizeof(float));
  for (const ProfiledTensor& t : profile.tensors) EXPECT_NE(t.name, "part");
  EXPECT_EQ(profile.ops[0].writes, (std::vector<std::size_t>{profile.ops[0].inputs[1]}))
      << "the profile says which input the op writes";
  EXPECT_EQ(read_all(*engine, buffer), (std::vector<float>{0, 0, 0, 0, 1, 2, 3, 4}));
  Profile back = profile_from_json(profile_to_json(profile), "in_place").value();
  EXPECT_EQ(back.ops[0].writes, profile.ops[0].writes) << "the JSON keeps it";
}

// A replay hands an op the pointers it was first given: a view at an offset into its base, not
// the base's first byte. Recomputing under a budget must give the unconstrained bytes.
TEST(EngineView, ReplayReadsTheViewNotTheStartOfItsBase) {
  constexpr std::size_t kN = 64 * 1024;  // 256 KiB per tensor
  auto run = [&](std::size_t budget, std::int64_t* replays) {
    auto device = make_cpu_device();
    auto engine = recompute_engine(*device, budget);
    std::vector<float> flat(2 * kN);
    for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = i < kN ? 1.0F : 0.001F * (i % 89);
    Tensor buffer =
        engine->parameter(f32("flat", {2 * kN}, TensorKind::kParameter), flat.data()).value();
    Tensor second = engine->view(buffer, kN * sizeof(float), f32("second", {kN})).value();
    IterationScope it(*engine);
    Tensor a =
        engine->run("a", {second}, {f32("a", {kN})}, test_ops::tanh_op(kN), kCheap).value()[0];
    run_chain_after(*engine, a, kN);
    std::vector<float> result = read_all(*engine, a);
    *replays = engine->stats().recomputed_ops;
    return result;
  };
  std::int64_t replays_free = 0;
  std::int64_t replays_tight = 0;
  const std::vector<float> unconstrained = run(0, &replays_free);
  const std::vector<float> budgeted = run(6 * kN * sizeof(float), &replays_tight);
  EXPECT_EQ(replays_free, 0);
  EXPECT_GT(replays_tight, 0) << "the budget must have dropped `a`";
  EXPECT_EQ(budgeted, unconstrained);
}

TEST(EngineWrite, LoadsBytesIntoAViewBetweenIterationsOnly) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  Tensor buffer = engine->parameter(f32("flat", {8}, TensorKind::kParameter), nullptr).value();
  Tensor part = engine->view(buffer, 4 * sizeof(float), f32("part", {4})).value();
  const std::vector<float> loaded{5, 6, 7, 8};
  ASSERT_TRUE(engine->write(part, loaded.data(), 16).ok());
  EXPECT_EQ(read_all(*engine, buffer), (std::vector<float>{0, 0, 0, 0, 5, 6, 7, 8}));
  EXPECT_EQ(engine->write(part, loaded.data(), 20).code(), StatusCode::kInvalidArgument);
  IterationScope it(*engine);
  EXPECT_EQ(engine->write(part, loaded.data(), 16).code(), StatusCode::kFailedPrecondition);
}

TEST(EngineMemory, CountsDeviceBytesByTensorKind) {
  auto device = make_cpu_device();
  auto engine = Engine::create({.device = *device}).value();
  Tensor p = engine->parameter(f32("p", {1024}, TensorKind::kParameter), nullptr).value();
  Tensor s = engine->parameter(f32("s", {2048}, TensorKind::kOptimizerState), nullptr).value();
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kParameter).current, 4096);
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kOptimizerState).current, 8192);
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kActivation).current, 0);
  {
    IterationScope it(*engine);
    Tensor y = engine->run("twice", {p}, {f32("y", {1024})}, twice(1024)).value()[0];
    EXPECT_EQ(engine->memory_by_kind(TensorKind::kActivation).current, 4096);
    (void)y;
  }
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kActivation).current, 0);
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kActivation).peak, 4096);
  ASSERT_TRUE(engine->release(s).ok());
  EXPECT_EQ(engine->memory_by_kind(TensorKind::kOptimizerState).current, 0);
}

}  // namespace
}  // namespace ebb
