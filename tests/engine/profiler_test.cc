// The profiler: an MLP forward+backward recorded over the warm-up iterations becomes a Profile
// that validates, matches the graph and the allocator, survives JSON and files, and is refused
// while the warm-up runs or when the warm-up iterations disagree. Profiling changes no result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/ebb.h"
#include "tests/engine/test_ops.h"

namespace ebb {
namespace {

using test_ops::f32;

constexpr std::int64_t kProfiledBatch = 8;
constexpr std::int64_t kIn = 32;
constexpr std::int64_t kHidden = 64;
constexpr std::int64_t kOut = 16;

std::size_t n(std::int64_t a, std::int64_t b) { return static_cast<std::size_t>(a * b); }

std::vector<float> read_back(Engine& engine, const Tensor& t) {
  std::vector<float> host(t.bytes() / sizeof(float));
  Status s = engine.read(t, host.data(), t.bytes());
  EXPECT_TRUE(s.ok()) << s.to_string();
  return host;
}

struct Mlp {
  Tensor w1;
  Tensor w2;
};

Mlp make_mlp(Engine& engine) {
  const std::vector<float> w1 = test_ops::random_floats(n(kIn, kHidden), 11);
  const std::vector<float> w2 = test_ops::random_floats(n(kHidden, kOut), 12);
  return {engine.parameter(f32("w1", {kIn, kHidden}), w1.data()).value(),
          engine.parameter(f32("w2", {kHidden, kOut}), w2.data()).value()};
}

// What one iteration computes, read back: loss, then dW1, then dW2.
using Outputs = std::vector<float>;

// One iteration of y = tanh(x W1) W2, loss = sum(y), and the gradients of W1 and W2 (9 ops).
// Intermediates are released as soon as they are dead. `extra_op` adds a 10th op at the end.
Outputs run_iteration(Engine& engine, const Mlp& mlp, std::uint32_t seed, bool extra_op = false) {
  IterationScope iteration(engine);
  EXPECT_TRUE(iteration.status().ok()) << iteration.status().to_string();
  const std::vector<float> xs = test_ops::random_floats(n(kProfiledBatch, kIn), seed);
  Tensor x = engine.input(f32("x", {kProfiledBatch, kIn}), xs.data()).value();
  auto one = [&](std::string name, std::initializer_list<Tensor> in, TensorSpec out, OpFn fn) {
    Result<std::vector<Tensor>> r = engine.run(name, in, {std::move(out)}, std::move(fn));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.value()[0];
  };
  const auto B = static_cast<std::size_t>(kProfiledBatch);
  const auto I = static_cast<std::size_t>(kIn);
  const auto H = static_cast<std::size_t>(kHidden);
  const auto O = static_cast<std::size_t>(kOut);
  Tensor h =
      one("fc1", {x, mlp.w1}, f32("h", {kProfiledBatch, kHidden}), test_ops::matmul(B, I, H));
  Tensor a = one("tanh", {h}, f32("a", {kProfiledBatch, kHidden}), test_ops::tanh_op(B * H));
  EXPECT_TRUE(engine.release(h).ok());
  Tensor y = one("fc2", {a, mlp.w2}, f32("y", {kProfiledBatch, kOut}), test_ops::matmul(B, H, O));
  Tensor loss = one("sum", {y}, f32("loss", {1}), test_ops::sum(B * O));
  Tensor gy = one("ones", {y}, f32("gy", {kProfiledBatch, kOut}), test_ops::scale(B * O, 0, 1));
  EXPECT_TRUE(engine.release(y).ok());
  Tensor gw2 = one("fc2.dw", {a, gy}, f32("gw2", {kHidden, kOut}, TensorKind::kGradient),
                   test_ops::matmul(H, B, O, /*trans_a=*/true));
  Tensor ga = one("fc2.dx", {gy, mlp.w2}, f32("ga", {kProfiledBatch, kHidden}),
                  test_ops::matmul(B, O, H, false, /*trans_b=*/true));
  EXPECT_TRUE(engine.release(gy).ok());
  Tensor gh =
      one("tanh.dx", {ga, a}, f32("gh", {kProfiledBatch, kHidden}), test_ops::tanh_backward(B * H));
  EXPECT_TRUE(engine.release(ga).ok());
  EXPECT_TRUE(engine.release(a).ok());
  Tensor gw1 = one("fc1.dw", {x, gh}, f32("gw1", {kIn, kHidden}, TensorKind::kGradient),
                   test_ops::matmul(I, B, H, /*trans_a=*/true));
  EXPECT_TRUE(engine.release(gh).ok());
  if (extra_op) one("extra", {gw1}, f32("gw1x2", {kIn, kHidden}), test_ops::scale(I * H, 2));
  Outputs out = read_back(engine, loss);
  for (const Tensor& t : {gw1, gw2}) {
    const std::vector<float> v = read_back(engine, t);
    out.insert(out.end(), v.begin(), v.end());
  }
  Status ended = iteration.end();
  EXPECT_TRUE(ended.ok()) << ended.to_string();
  return out;
}

std::unique_ptr<Engine> make_engine(Device& device, int warmup) {
  return Engine::create({.device = device, .warmup_iterations = warmup}).value();
}

TEST(Profiler, RecordsTheWarmUpOfAnMlp) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, /*warmup=*/2);
  const Mlp mlp = make_mlp(*engine);

  Result<Profile> early = engine->profile();
  ASSERT_EQ(early.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(early.status().message().find("2 of 2"), std::string::npos) << early.status().message();
  run_iteration(*engine, mlp, 1);
  early = engine->profile();
  ASSERT_EQ(early.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(early.status().message().find("1 of 2"), std::string::npos) << early.status().message();
  run_iteration(*engine, mlp, 2);
  run_iteration(*engine, mlp, 3);

  Result<Profile> got = engine->profile();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  const Profile& p = *got;
  ASSERT_TRUE(validate_profile(p, "engine profile").ok())
      << validate_profile(p, "engine profile").to_string();
  EXPECT_EQ(p.source, "engine");
  EXPECT_EQ(p.device, device->name());
  EXPECT_EQ(p.iterations, 2);

  const std::vector<std::string> names{"fc1",    "tanh",   "fc2",     "sum",   "ones",
                                       "fc2.dw", "fc2.dx", "tanh.dx", "fc1.dw"};
  ASSERT_EQ(p.ops.size(), names.size());
  for (std::size_t k = 0; k < names.size(); ++k) {
    EXPECT_EQ(p.ops[k].name, names[k]) << k;
    EXPECT_GT(p.ops[k].duration_ns, 0) << k;
    ASSERT_EQ(p.ops[k].outputs.size(), 1U);
  }
  // Tensors before the iteration come first: w1, w2 (parameters) and x (an input made inside
  // the iteration before any op counts as live from the start).
  ASSERT_EQ(p.tensors.size(), 3 + names.size());
  EXPECT_EQ(p.tensors[0].name, "w1");
  EXPECT_EQ(p.tensors[1].name, "w2");
  EXPECT_EQ(p.tensors[2].name, "x");
  for (std::size_t i = 0; i < 3; ++i) EXPECT_FALSE(p.tensors[i].producer.has_value()) << i;
  EXPECT_EQ(p.tensors[0].bytes, n(kIn, kHidden) * 4);
  EXPECT_EQ(p.tensors[0].kind, TensorKind::kParameter);
  EXPECT_EQ(p.tensors[2].kind, TensorKind::kInput);
  const ProfiledTensor& h = p.tensors[p.ops[0].outputs[0]];
  EXPECT_EQ(h.name, "h");
  EXPECT_EQ(h.bytes, n(kProfiledBatch, kHidden) * 4);
  EXPECT_EQ(h.shape, (std::vector<std::int64_t>{kProfiledBatch, kHidden}));
  EXPECT_EQ(h.producer, 0U);
  EXPECT_EQ(h.accesses, std::vector<std::size_t>{1});
  // release(h) after op 1 frees h after op 1; end_iteration frees after the last op.
  EXPECT_EQ(p.ops[1].frees, std::vector<std::size_t>{h.id});
  EXPECT_EQ(p.tensors[p.ops[3].outputs[0]].bytes, 4U);  // loss
  EXPECT_EQ(p.tensors[p.ops[5].outputs[0]].kind, TensorKind::kGradient);
  for (const MemoryPoint& m : p.memory) EXPECT_GT(m.reserved_bytes, 0U);

  // Peak live bytes against the allocator of this unconstrained run. The allocator rounds each
  // request up to a 512 B block, so the relation asserted is exact equality between its peak
  // allocated bytes and the profile's peak live bytes with every tensor rounded to its block
  // (and hence peak_live <= peak_allocated < peak_live + 512 * tensors).
  const ProfileFigures figures = profile_figures(p);
  const auto allocated_peak =
      static_cast<std::size_t>(engine->allocator().stats().all.allocated_bytes.peak);
  Profile rounded = p;
  for (ProfiledTensor& t : rounded.tensors) {
    t.bytes = round_block_bytes(t.bytes);
    t.shape.clear();
  }
  std::size_t rounded_peak = 0;
  for (std::size_t live : recompute_live_bytes(rounded))
    rounded_peak = std::max(rounded_peak, live);
  EXPECT_EQ(allocated_peak, rounded_peak);
  EXPECT_LE(figures.peak_live_bytes, allocated_peak);
  EXPECT_LT(allocated_peak, figures.peak_live_bytes + kMinBlockBytes * p.tensors.size());
  EXPECT_LE(figures.peak_reserved_bytes,
            static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak));

  // JSON and file round trips.
  Result<Profile> parsed = profile_from_json(profile_to_json(p), "round trip");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, p);
  const std::string path = ::testing::TempDir() + "/ebb_profiler_test_profile.json";
  ASSERT_TRUE(write_profile(p, path).ok());
  Result<Profile> read = read_profile(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(*read, p);
  std::remove(path.c_str());
}

// Iterations that keep disagreeing: the warm-up is extended kMaxWarmupExtension times, then the
// last window's disagreement is the answer.
TEST(Profiler, DisagreeingWarmUpIterationsNameTheOp) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, /*warmup=*/2);
  const Mlp mlp = make_mlp(*engine);
  const int last = 2 + Profiler::kMaxWarmupExtension;
  for (int it = 1; it <= last; ++it) {
    EXPECT_EQ(engine->profile().status().code(), StatusCode::kFailedPrecondition);
    run_iteration(*engine, mlp, static_cast<std::uint32_t>(it), /*extra_op=*/it % 2 == 0);
  }
  Result<Profile> got = engine->profile();
  ASSERT_EQ(got.status().code(), StatusCode::kFailedPrecondition) << got.status().to_string();
  const std::string& m = got.status().message();
  const std::string pair =
      "warm-up iterations " + std::to_string(last - 1) + " and " + std::to_string(last);
  EXPECT_NE(m.find(pair), std::string::npos) << m;
  EXPECT_NE(m.find("op 9"), std::string::npos) << m;
  // The answer stays after the warm-up: later iterations are not recorded.
  run_iteration(*engine, mlp, static_cast<std::uint32_t>(last + 1));
  EXPECT_EQ(engine->profile().status().message(), m);
}

// A first iteration that differs from the rest (a loop's lazy set-up): the warm-up goes on one
// iteration, and the profile is that of the iterations that repeat.
TEST(Profiler, AFirstIterationThatDiffersExtendsTheWarmUp) {
  auto device = test_ops::make_cpu_device();
  auto engine = make_engine(*device, /*warmup=*/2);
  const Mlp mlp = make_mlp(*engine);
  run_iteration(*engine, mlp, 1, /*extra_op=*/true);
  run_iteration(*engine, mlp, 2);
  EXPECT_EQ(engine->profile().status().code(), StatusCode::kFailedPrecondition);
  run_iteration(*engine, mlp, 3);
  Result<Profile> got = engine->profile();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  auto reference_device = test_ops::make_cpu_device();
  auto reference = make_engine(*reference_device, /*warmup=*/2);
  const Mlp r = make_mlp(*reference);
  run_iteration(*reference, r, 1);
  run_iteration(*reference, r, 2);
  EXPECT_EQ(got->ops.size(), reference->profile().value().ops.size());
}

TEST(Profiler, ProfilingChangesNoResultAndNoStat) {
  auto device = test_ops::make_cpu_device();
  auto profiled = make_engine(*device, /*warmup=*/2);
  auto plain = make_engine(*device, /*warmup=*/0);
  const Mlp mp = make_mlp(*profiled);
  const Mlp mq = make_mlp(*plain);
  for (std::uint32_t it = 1; it <= 3; ++it) {
    const Outputs a = run_iteration(*profiled, mp, it);
    const Outputs b = run_iteration(*plain, mq, it);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "iteration " << it;
  }
  EXPECT_TRUE(profiled->profile().ok());
  EXPECT_EQ(plain->profile().status().code(), StatusCode::kFailedPrecondition);
  const EngineStats s = profiled->stats();
  const EngineStats t = plain->stats();
  EXPECT_EQ(s.ops_run, t.ops_run);
  EXPECT_EQ(s.evictions, t.evictions);
  EXPECT_EQ(s.recomputed_ops, t.recomputed_ops);
  const AllocatorStats sa = profiled->allocator().stats();
  const AllocatorStats ta = plain->allocator().stats();
  EXPECT_EQ(sa.all.allocated_bytes.peak, ta.all.allocated_bytes.peak);
  EXPECT_EQ(sa.all.reserved_bytes.peak, ta.all.reserved_bytes.peak);
  EXPECT_EQ(sa.num_device_alloc, ta.num_device_alloc);
}

// Under a budget that forces drops, reading the chain back replays producers: those replays
// are the engine's doing and are not ops of the profile.
TEST(Profiler, RecomputeReplaysAreNotOps) {
  constexpr std::size_t kN = 64 * 1024;  // 256 KiB of floats
  const std::vector<std::int64_t> shape{static_cast<std::int64_t>(kN)};
  auto device = test_ops::make_cpu_device();
  auto engine = Engine::create({.device = *device,
                                .budget_bytes = 1280 * kKiB,
                                .policy = EvictionPolicy::kRecompute,
                                .warmup_iterations = 2})
                    .value();
  const std::vector<float> xs = test_ops::random_floats(kN, 4);
  for (int it = 0; it < 2; ++it) {
    IterationScope iteration(*engine);
    std::vector<Tensor> chain{engine->input(f32("x", shape), xs.data()).value()};
    for (int i = 0; i < 12; ++i) {
      chain.push_back(engine
                          ->run("step" + std::to_string(i), {chain.back()},
                                {f32("t" + std::to_string(i), shape)},
                                test_ops::scale(kN, 1.25F, 0.5F))
                          .value()[0]);
    }
    for (const Tensor& t : chain) read_back(*engine, t);
    ASSERT_TRUE(iteration.end().ok());
  }
  EXPECT_GT(engine->stats().recomputed_ops, 0);
  Result<Profile> got = engine->profile();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->ops.size(), 12U);
  for (std::size_t k = 0; k < 12; ++k) EXPECT_EQ(got->ops[k].name, "step" + std::to_string(k));
  EXPECT_TRUE(validate_profile(*got, "chain").ok());
  EXPECT_EQ(profile_figures(*got).peak_live_bytes, 13 * kN * sizeof(float));
}

}  // namespace
}  // namespace ebb
