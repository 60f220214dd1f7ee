// The executor: an Engine following a Plan gives the same bits as an unconstrained run, fits a
// budget that the plan alone makes room for (no dynamic eviction), prefetches swapped tensors,
// leaves the plan when the loop's work changes and plans again for the new shape, moves late
// prefetches earlier, runs swaps to the NVMe tier through the transfer engine with the same bits,
// and refuses plans that do not belong to its work (or name a tier it does not have).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/ebb.h"
#include "tests/engine/test_ops.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_ops::f32;

// A forward chain of tanh layers, a loss, and the backward chain that reads every activation
// again in reverse: the shape of a training step, where activations are live across the peak.
struct ChainResult {
  float loss = 0;
  std::vector<float> grad;
};

Result<ChainResult> run_chain(Engine& engine, int layers, std::size_t n) {
  ChainResult result;
  IterationScope iteration(engine);
  EBB_RETURN_IF_ERROR(iteration.status());
  const std::vector<float> x0 = test_ops::random_floats(n, 7);
  EBB_ASSIGN_OR_RETURN(Tensor x, engine.input(f32("x", {static_cast<std::int64_t>(n)}), x0.data()));
  const auto n64 = static_cast<std::int64_t>(n);
  std::vector<Tensor> h{x};
  for (int i = 0; i < layers; ++i) {
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> y,
                         engine.run("fwd" + std::to_string(i), {h.back()},
                                    {f32("h" + std::to_string(i), {n64})}, test_ops::tanh_op(n)));
    h.push_back(y[0]);
  }
  EBB_ASSIGN_OR_RETURN(std::vector<Tensor> loss,
                       engine.run("loss", {h.back()}, {f32("loss", {1})}, test_ops::sum(n)));
  EBB_ASSIGN_OR_RETURN(std::vector<Tensor> g,
                       engine.run("seed", {h.back()}, {f32("g", {n64})}, test_ops::scale(n, 0, 1)));
  Tensor grad = g[0];
  for (int i = layers; i >= 1; --i) {
    EBB_ASSIGN_OR_RETURN(
        std::vector<Tensor> next,
        engine.run("bwd" + std::to_string(i), {grad, h[static_cast<std::size_t>(i)]},
                   {f32("g" + std::to_string(i), {n64})}, test_ops::tanh_backward(n)));
    EBB_RETURN_IF_ERROR(engine.release(grad));
    EBB_RETURN_IF_ERROR(engine.release(h[static_cast<std::size_t>(i)]));
    grad = next[0];
  }
  EBB_RETURN_IF_ERROR(engine.read(loss[0], &result.loss, sizeof(float)));
  result.grad.resize(n);
  EBB_RETURN_IF_ERROR(engine.read(grad, result.grad.data(), n * sizeof(float)));
  EBB_RETURN_IF_ERROR(iteration.end());
  return result;
}

bool same_bits(const ChainResult& a, const ChainResult& b) {
  return std::memcmp(&a.loss, &b.loss, sizeof(float)) == 0 && a.grad.size() == b.grad.size() &&
         std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(float)) == 0;
}

std::size_t tensor_id(const Profile& profile, const std::string& name) {
  for (const ProfiledTensor& t : profile.tensors) {
    if (t.name == name) return t.id;
  }
  ADD_FAILURE() << "no tensor " << name << " in the profile";
  return 0;
}

// Evicts activations after the forward op that reads them, back before their backward op: by
// swap (every one but the last, the copy back started `lead` ops ahead), or by recompute (every
// other one, so that the ones kept are checkpoints and each replay is one op).
Plan chain_plan(const Profile& profile, int layers, std::size_t budget_bytes, EvictionMethod method,
                std::size_t lead) {
  Plan plan;
  plan.policy = "test";
  plan.budget_bytes = budget_bytes;
  plan.profile = profile_key(profile);
  plan.hardware.name = "test";
  plan.hardware.host_to_device_bytes_per_s = 10e9;
  plan.hardware.device_to_host_bytes_per_s = 10e9;
  for (int i = 1; i < layers; ++i) {
    if (method == EvictionMethod::kRecompute && i % 2 == 0) continue;
    const ProfiledTensor& t = profile.tensors[tensor_id(profile, "h" + std::to_string(i - 1))];
    // Its first reader is the next forward op; its last reader is its backward op.
    Eviction ev;
    ev.tensor = t.id;
    ev.method = method;
    ev.evict_after = t.accesses.front();
    ev.needed_at = t.accesses.back();
    ev.prefetch_at =
        method == EvictionMethod::kSwap
            ? std::max(ev.evict_after + 1, *ev.needed_at - std::min(lead, *ev.needed_at))
            : *ev.needed_at;
    plan.evictions.push_back(ev);
  }
  sort_evictions(plan.evictions);
  return plan;
}

constexpr int kLayers = 8;
constexpr std::size_t kChainElems = 64 * 1024;  // 256 KiB per activation

struct Reference {
  ChainResult result;
  std::size_t peak_reserved_bytes = 0;
  Profile profile;
};

Reference unconstrained(Device& device, int layers = kLayers) {
  Reference ref;
  auto engine = Engine::create({.device = device, .policy = EvictionPolicy::kNone}).value();
  for (int i = 0; i < 2; ++i) ref.result = run_chain(*engine, layers, kChainElems).value();
  ref.peak_reserved_bytes =
      static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak);
  ref.profile = engine->profile().value();
  return ref;
}

class ExecutorTest : public ::testing::TestWithParam<EvictionMethod> {};

TEST_P(ExecutorTest, FollowsPlanUnderBudgetWithSameBits) {
  auto device = test_ops::make_cpu_device();
  const Reference ref = unconstrained(*device);
  // Room for the plan's peak (seven activations with two prefetched ahead) plus the pages that
  // 256 KiB blocks straddle in expandable segments.
  const std::size_t budget = ref.peak_reserved_bytes * 3 / 4;

  // Warm-up under dynamic eviction, then the plan alone must hold the budget.
  auto engine =
      Engine::create({.device = *device, .budget_bytes = budget, .policy = EvictionPolicy::kBoth})
          .value();
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(same_bits(run_chain(*engine, kLayers, kChainElems).value(), ref.result));
  const Profile profile = engine->profile().value();
  ASSERT_TRUE(engine->set_plan(chain_plan(profile, kLayers, budget, GetParam(), 2), profile).ok());
  const std::int64_t evictions_before = engine->stats().evictions;
  const std::int64_t recomputed_before = engine->stats().recomputed_ops;
  for (int i = 0; i < 3; ++i) {
    Result<ChainResult> r = run_chain(*engine, kLayers, kChainElems);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(same_bits(*r, ref.result)) << "iteration " << i;
  }
  const ExecutorStats stats = engine->executor_stats();
  EXPECT_EQ(stats.planned_iterations, 3);
  EXPECT_EQ(stats.diverged_iterations, 0);
  EXPECT_EQ(stats.fallback_evictions, 0) << "the plan alone should make room";
  EXPECT_EQ(stats.skipped_actions, 0);
  EXPECT_LE(engine->allocator().stats().all.reserved_bytes.peak, static_cast<std::int64_t>(budget));
  if (GetParam() == EvictionMethod::kSwap) {
    EXPECT_EQ(stats.planned_swap_outs, 3 * (kLayers - 1));
    EXPECT_EQ(stats.prefetches, 3 * (kLayers - 1));
  } else {
    EXPECT_EQ(stats.planned_drops, 3 * (kLayers / 2));
    EXPECT_EQ(engine->stats().recomputed_ops, recomputed_before + 3 * (kLayers / 2));
  }
  EXPECT_GT(engine->stats().evictions, evictions_before);
}

INSTANTIATE_TEST_SUITE_P(Methods, ExecutorTest,
                         ::testing::Values(EvictionMethod::kRecompute, EvictionMethod::kSwap),
                         [](const auto& info) {
                           return std::string(eviction_method_name(info.param));
                         });

// chain_plan with every swap sent to the NVMe tier.
Plan nvme_chain_plan(const Profile& profile, std::size_t budget_bytes, std::size_t lead) {
  Plan plan = chain_plan(profile, kLayers, budget_bytes, EvictionMethod::kSwap, lead);
  plan.hardware.nvme_read_bytes_per_s = 2e9;
  plan.hardware.nvme_write_bytes_per_s = 2e9;
  for (Eviction& e : plan.evictions) e.tier = OffloadTier::kNvme;
  return plan;
}

TEST(Executor, SwapsToNvmeThroughTheTransferEngineWithSameBits) {
  EBB_SKIP_WITHOUT_IO_URING();
  std::string dir = (test_support::scratch_base() / "executor_nvme_XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    auto device = test_ops::make_cpu_device();
    const Reference ref = unconstrained(*device);
    const std::size_t budget = ref.peak_reserved_bytes * 3 / 4;
    // No dynamic eviction: the plan alone holds the budget, so every swap it makes is its own.
    Result<std::unique_ptr<Engine>> created = Engine::create({.device = *device,
                                                              .budget_bytes = budget,
                                                              .policy = EvictionPolicy::kNone,
                                                              .warmup_iterations = 0,
                                                              .nvme_directories = {dir},
                                                              .nvme_tier_bytes = 16 * kMiB,
                                                              .nvme_block_bytes = 64 * kKiB,
                                                              .nvme_queue_depth = 4});
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    Engine& engine = **created;
    // The profile is taken unconstrained (the warm-up alone would not fit without eviction).
    ASSERT_TRUE(engine.set_plan(nvme_chain_plan(ref.profile, budget, 2), ref.profile).ok())
        << engine.executor_stats().last_refusal;
    for (int i = 0; i < 3; ++i) {
      Result<ChainResult> r = run_chain(engine, kLayers, kChainElems);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_TRUE(same_bits(*r, ref.result)) << "iteration " << i;
    }
    const ExecutorStats stats = engine.executor_stats();
    EXPECT_EQ(stats.planned_iterations, 3);
    EXPECT_EQ(stats.fallback_evictions, 0);
    EXPECT_EQ(stats.skipped_actions, 0);
    EXPECT_EQ(stats.planned_swap_outs, 3 * (kLayers - 1));
    EXPECT_EQ(stats.prefetches, 3 * (kLayers - 1));
    EXPECT_EQ(engine.stats().nvme_spills, 3 * (kLayers - 1));
    const auto bytes = static_cast<std::int64_t>(3 * (kLayers - 1) * kChainElems * sizeof(float));
    EXPECT_EQ(engine.stats().nvme_written_bytes, bytes);
    EXPECT_EQ(engine.stats().nvme_read_bytes, bytes);
    EXPECT_EQ(engine.nvme_tier()->stats().extents, 0u)
        << "every extent the plan wrote was given back once read";
    EXPECT_LE(engine.allocator().stats().all.reserved_bytes.peak,
              static_cast<std::int64_t>(budget));
  }
  EXPECT_EQ(rmdir(dir.c_str()), 0) << "files left behind in " << dir;
}

TEST(Executor, RefusesNvmeSwapsWithoutAnNvmeTier) {
  auto device = test_ops::make_cpu_device();
  const Reference ref = unconstrained(*device);
  auto engine = Engine::create({.device = *device, .policy = EvictionPolicy::kNone}).value();
  Status s =
      engine->set_plan(nvme_chain_plan(ref.profile, ref.peak_reserved_bytes, 2), ref.profile);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tier nvme"), std::string::npos) << s.message();
  EXPECT_EQ(engine->executor_stats().plans_refused, 1);
}

TEST(Executor, PlanWithoutDynamicEvictionFitsOnlyBecauseOfThePlan) {
  auto device = test_ops::make_cpu_device();
  const Reference ref = unconstrained(*device);
  const std::size_t budget = ref.peak_reserved_bytes * 7 / 10;
  auto engine = Engine::create({.device = *device,
                                .budget_bytes = budget,
                                .policy = EvictionPolicy::kNone,
                                .warmup_iterations = 0})
                    .value();
  // Without a plan and without dynamic eviction the step does not fit ...
  Result<ChainResult> without = run_chain(*engine, kLayers, kChainElems);
  ASSERT_FALSE(without.ok());
  EXPECT_EQ(without.status().code(), StatusCode::kOutOfMemory);
  // ... and with the plan it does, bit for bit.
  ASSERT_TRUE(
      engine
          ->set_plan(chain_plan(ref.profile, kLayers, budget, EvictionMethod::kRecompute, 0),
                     ref.profile)
          .ok());
  Result<ChainResult> with = run_chain(*engine, kLayers, kChainElems);
  ASSERT_TRUE(with.ok()) << with.status().to_string();
  EXPECT_TRUE(same_bits(*with, ref.result));
}

TEST(Executor, RefusesPlansThatDoNotBelongToItsWork) {
  auto device = test_ops::make_cpu_device();
  const Reference ref = unconstrained(*device);
  const Reference other = unconstrained(*device, kLayers - 2);
  auto engine =
      Engine::create({.device = *device, .budget_bytes = ref.peak_reserved_bytes}).value();
  // Made for another profile.
  Plan plan =
      chain_plan(ref.profile, kLayers, ref.peak_reserved_bytes, EvictionMethod::kRecompute, 0);
  Status s = engine->set_plan(plan, other.profile);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  // Made for a larger budget than the engine's.
  plan.budget_bytes = ref.peak_reserved_bytes + 1;
  s = engine->set_plan(plan, ref.profile);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("budget"), std::string::npos) << s.message();
  EXPECT_EQ(engine->executor_stats().plans_refused, 2);
  EXPECT_EQ(engine->active_plan(), nullptr);
  // The engine runs on as before.
  Result<ChainResult> r = run_chain(*engine, kLayers, kChainElems);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(same_bits(*r, ref.result));
}

TEST(Executor, DivergenceFallsBackThenPlansTheNewShapeOnce) {
  auto device = test_ops::make_cpu_device();
  const Reference longer = unconstrained(*device);
  const Reference shorter = unconstrained(*device, kLayers - 3);
  const std::size_t budget = longer.peak_reserved_bytes * 7 / 10;
  int planned = 0;
  EngineOptions options{.device = *device, .budget_bytes = budget};
  options.policy = EvictionPolicy::kBoth;
  options.warmup_iterations = 2;
  options.planner = [&](const Profile& profile) -> Result<Plan> {
    ++planned;
    int layers = 0;
    for (const ProfiledOp& op : profile.ops) layers += op.name.rfind("fwd", 0) == 0 ? 1 : 0;
    return chain_plan(profile, layers, budget, EvictionMethod::kRecompute, 0);
  };
  auto engine = Engine::create(options).value();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(same_bits(run_chain(*engine, kLayers, kChainElems).value(), longer.result));
  }
  EXPECT_EQ(planned, 1);
  EXPECT_EQ(engine->executor_stats().planned_iterations, 1);
  // Another sequence length: the plan is left, the step still gives the right bits.
  ASSERT_TRUE(same_bits(run_chain(*engine, kLayers - 3, kChainElems).value(), shorter.result));
  EXPECT_EQ(engine->executor_stats().diverged_iterations, 1);
  // Alternating shapes: the next short iteration is profiled and planned, then both shapes
  // follow their own cached plan without planning again.
  for (int i = 0; i < 6; ++i) {
    const bool is_long = i % 2 == 0;
    Result<ChainResult> r = run_chain(*engine, is_long ? kLayers : kLayers - 3, kChainElems);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(same_bits(*r, is_long ? longer.result : shorter.result)) << "iteration " << i;
  }
  EXPECT_EQ(planned, 2);
  const ExecutorStats stats = engine->executor_stats();
  EXPECT_EQ(stats.plans_set, 2);
  EXPECT_EQ(stats.diverged_iterations, 2);  // the first short one, and the one it was profiled in
  EXPECT_GE(stats.planned_iterations, 1 + 4);
  EXPECT_GE(stats.plan_switches, 1);
}

// A parameter the plan moves before any op reads it (so the executor must know it from the start of
// the iteration), and an activation moved after an op that does not read it.
TEST(Executor, MovesTensorsAtOpsThatDoNotReadThem) {
  auto device = test_ops::make_cpu_device();
  constexpr std::size_t n = 16 * 1024;
  const auto n64 = static_cast<std::int64_t>(n);
  const std::vector<float> w0 = test_ops::random_floats(n, 3);
  const std::vector<float> x0 = test_ops::random_floats(n, 4);
  auto step = [&](Engine& engine, const Tensor& w) -> Result<std::vector<float>> {
    IterationScope iteration(engine);
    EBB_RETURN_IF_ERROR(iteration.status());
    EBB_ASSIGN_OR_RETURN(Tensor x, engine.input(f32("x", {n64}), x0.data()));
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> a,
                         engine.run("a", {x}, {f32("a", {n64})}, test_ops::tanh_op(n)));
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> b,
                         engine.run("b", {a[0]}, {f32("b", {n64})}, test_ops::tanh_op(n)));
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> c,
                         engine.run("c", {b[0]}, {f32("c", {n64})}, test_ops::tanh_op(n)));
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> d, engine.run("d", {c[0], a[0]}, {f32("d", {n64})},
                                                           test_ops::tanh_backward(n)));
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> e,
                         engine.run("e", {d[0], w}, {f32("e", {n64})}, test_ops::tanh_backward(n)));
    std::vector<float> result(n);
    EBB_RETURN_IF_ERROR(engine.read(e[0], result.data(), n * sizeof(float)));
    EBB_RETURN_IF_ERROR(iteration.end());
    return result;
  };
  auto reference_engine = Engine::create({.device = *device}).value();
  const Tensor w_ref =
      reference_engine->parameter(f32("w", {n64}, TensorKind::kParameter), w0.data()).value();
  const std::vector<float> reference = step(*reference_engine, w_ref).value();

  auto engine = Engine::create({.device = *device, .policy = EvictionPolicy::kNone}).value();
  const Tensor w = engine->parameter(f32("w", {n64}, TensorKind::kParameter), w0.data()).value();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(step(*engine, w).ok());
  const Profile profile = engine->profile().value();
  Plan plan;
  plan.policy = "test";
  plan.budget_bytes = engine->allocator().budget_bytes();
  plan.profile = profile_key(profile);
  plan.hardware.name = "test";
  plan.hardware.host_to_device_bytes_per_s = 10e9;
  plan.hardware.device_to_host_bytes_per_s = 10e9;
  // w is read by op 4 alone: out after op 0, back from op 3. a is read by ops 1 and 3: out after
  // op 2, which does not read it, and back before op 3.
  const auto swap = [&](const std::string& name, std::size_t after, std::size_t prefetch,
                        std::size_t needed) {
    return Eviction{.tensor = tensor_id(profile, name),
                    .method = EvictionMethod::kSwap,
                    .evict_after = after,
                    .prefetch_at = prefetch,
                    .needed_at = needed};
  };
  plan.evictions = {swap("w", 0, 3, 4), swap("a", 2, 3, 3)};
  ASSERT_TRUE(validate_plan(plan, profile, "test").ok());
  ASSERT_TRUE(engine->set_plan(plan, profile).ok());
  for (int i = 0; i < 3; ++i) {
    Result<std::vector<float>> r = step(*engine, w);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(std::memcmp(r->data(), reference.data(), n * sizeof(float)), 0) << "iteration " << i;
  }
  const ExecutorStats stats = engine->executor_stats();
  EXPECT_EQ(stats.planned_iterations, 3);
  EXPECT_EQ(stats.planned_swap_outs, 2 * 3);
  EXPECT_EQ(stats.skipped_actions, 0);
  EXPECT_EQ(stats.prefetches, 2 * 3);
}

// The chain on the sim device: ops cost `op_cost` of virtual time and compute nothing, so when a
// copy back arrives against the op that reads it depends on the modelled link alone, never on
// the load of the machine running the test.
Status run_sim_chain(Engine& engine, int layers, std::size_t n, std::chrono::nanoseconds op_cost) {
  IterationScope iteration(engine);
  EBB_RETURN_IF_ERROR(iteration.status());
  const auto n64 = static_cast<std::int64_t>(n);
  const auto nothing = [](const OpArgs&) {};
  EBB_ASSIGN_OR_RETURN(Tensor x, engine.input(f32("x", {n64}), nullptr));
  std::vector<Tensor> h{x};
  for (int i = 0; i < layers; ++i) {
    EBB_ASSIGN_OR_RETURN(std::vector<Tensor> y,
                         engine.run("fwd" + std::to_string(i), {h.back()},
                                    {f32("h" + std::to_string(i), {n64})}, nothing, op_cost));
    h.push_back(y[0]);
  }
  EBB_ASSIGN_OR_RETURN(std::vector<Tensor> g,
                       engine.run("seed", {h.back()}, {f32("g", {n64})}, nothing, op_cost));
  Tensor grad = g[0];
  for (int i = layers; i >= 1; --i) {
    EBB_ASSIGN_OR_RETURN(
        std::vector<Tensor> next,
        engine.run("bwd" + std::to_string(i), {grad, h[static_cast<std::size_t>(i)]},
                   {f32("g" + std::to_string(i), {n64})}, nothing, op_cost));
    EBB_RETURN_IF_ERROR(engine.release(grad));
    EBB_RETURN_IF_ERROR(engine.release(h[static_cast<std::size_t>(i)]));
    grad = next[0];
  }
  EBB_RETURN_IF_ERROR(engine.release(grad));
  return iteration.end();
}

TEST(Executor, LatePrefetchesMoveEarlierUntilOnTime) {
  // A 256 KiB copy back takes ~0.53 ms over the modelled 0.5 GB/s link and an op 0.6 ms: started
  // just before the op that reads it, every copy back is late; started one op ahead, each one is
  // in time, and the link keeps pace with the backward pass. Feedback starts each late prefetch
  // an op earlier. Virtual time makes every count exact, whatever the machine's load.
  DeviceOptions device_options;
  device_options.kind = DeviceKind::kSim;
  device_options.capacity_bytes = 256 * kMiB;
  device_options.page_bytes = 64 * kKiB;
  device_options.host_to_device = {0.5e9, std::chrono::microseconds(5)};
  device_options.device_to_host = {4e9, std::chrono::microseconds(5)};
  auto device = create_device(device_options).value();
  const auto op_cost = std::chrono::microseconds(600);
  auto engine = Engine::create({.device = *device, .policy = EvictionPolicy::kNone}).value();
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(run_sim_chain(*engine, kLayers, kChainElems, op_cost).ok());
  const Profile profile = engine->profile().value();
  ASSERT_TRUE(engine
                  ->set_plan(chain_plan(profile, kLayers, engine->allocator().budget_bytes(),
                                        EvictionMethod::kSwap, 0),
                             profile)
                  .ok());
  std::vector<std::int64_t> late;
  for (int i = 0; i < 12; ++i) {
    const std::int64_t before = engine->executor_stats().late_prefetches;
    const Status s = run_sim_chain(*engine, kLayers, kChainElems, op_cost);
    ASSERT_TRUE(s.ok()) << s.to_string();
    late.push_back(engine->executor_stats().late_prefetches - before);
  }
  const ExecutorStats stats = engine->executor_stats();
  EXPECT_EQ(stats.planned_iterations, 12);
  EXPECT_EQ(stats.planned_swap_outs, 12 * (kLayers - 1));
  EXPECT_EQ(stats.prefetches, 12 * (kLayers - 1));
  EXPECT_EQ(late.front(), kLayers - 1) << "a copy back started at its reader is late";
  for (std::size_t i = 1; i < late.size(); ++i) {
    EXPECT_EQ(late[i], 0) << "iteration " << i << ": each prefetch should now start an op ahead";
  }
}

}  // namespace
}  // namespace ebb
