// Optimizer state off the device (engine/optim/offload_step.cc): on the cpu device, every
// placement (host, NVMe, a mix) gives the device placement's bits for every optimizer and
// precision, with gradient accumulation; gradients start for the host during backward; the
// delayed update follows theta(t+1) = theta(t) - u(g(theta(t-1))) against a reference loop; a
// checkpoint's blobs move between placements; and bad placements fail before any step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/ebb.h"
#include "engine/optim/model_state.h"
#include "engine/optim/optimizer.h"
#include "kernels/nn_scalar.h"
#include "tests/engine/model_state_support.h"
#include "tests/engine/test_ops.h"
#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

using test_ops::make_cpu_device;

using test_support::initial_values;
using test_support::small_model;

struct Setup {
  OptimizerKind kind = OptimizerKind::kAdamW;
  Precision precision = Precision::kF32;
  std::vector<StatePlacement> placement;  // empty: every slice on the device
  bool delayed = false;
  std::string nvme_dir;  // empty: no NVMe tier
  std::size_t host_tier_bytes = 64 * kMiB;
};

// A model state and its optimizer in an engine of their own (members destroyed in reverse).
struct Rig {
  std::unique_ptr<Device> device;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<ModelState> state;
  std::unique_ptr<Optimizer> opt;
  Status created;
};

Rig make_run(const Setup& s) {
  Rig r;
  r.device = make_cpu_device();
  EngineOptions options{.device = *r.device};
  options.host_tier_bytes = s.host_tier_bytes;
  if (!s.nvme_dir.empty()) {
    options.nvme_directories = {s.nvme_dir};
    options.nvme_tier_bytes = 32 * kMiB;
    options.nvme_block_bytes = 4096;
    options.nvme_queue_depth = 4;
  }
  r.engine = Engine::create(std::move(options)).value();
  const std::vector<ParameterDecl> params = small_model();
  r.state = ModelState::create(*r.engine, params,
                               {.precision = s.precision,
                                .grad_dtype = precision_dtype(s.precision),
                                .placement = s.placement},
                               initial_values(params))
                .value();
  OptimizerConfig config{.kind = s.kind, .weight_decay = 0.05F};
  if (s.kind == OptimizerKind::kSm3) config.momentum = 0.9F;
  if (s.kind == OptimizerKind::kAdafactor) config.adafactor_beta1 = 0.9F;
  Result<std::unique_ptr<Optimizer>> opt = Optimizer::create(
      *r.engine, *r.state, config, {.delayed_update = s.delayed, .nvme_chunk_bytes = 2048});
  r.created = opt.status();
  if (opt.ok()) r.opt = std::move(opt).value();
  return r;
}

// Parameter p's working copy, as floats.
std::vector<float> working(Rig& r, std::size_t p) {
  const Tensor& t = r.state->param(p);
  std::vector<std::byte> bytes(t.bytes());
  EXPECT_TRUE(r.engine->read(t, bytes.data(), bytes.size()).ok());
  std::vector<float> out(t.bytes() / dtype_bytes(t.dtype()));
  for (std::size_t i = 0; i < out.size(); ++i) {
    switch (t.dtype()) {
      case DType::kF32:
        std::memcpy(&out[i], bytes.data() + i * 4, 4);
        break;
      case DType::kBF16: {
        std::uint16_t h = 0;
        std::memcpy(&h, bytes.data() + i * 2, 2);
        out[i] = nn::bf16_to_f32(h);
        break;
      }
      default: {
        std::uint16_t h = 0;
        std::memcpy(&h, bytes.data() + i * 2, 2);
        out[i] = nn::f16_to_f32(h);
        break;
      }
    }
  }
  return out;
}

// The gradient of micro-batch `micro` of step `step` at working parameters `at`: a function of
// the parameters, so that a stale parameter shows in the gradient.
std::vector<float> gradient(const std::vector<float>& at, std::size_t p, int step, int micro) {
  std::vector<float> g(at.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    g[i] = 0.5F * at[i] + 0.1F * std::sin(static_cast<float>(i) * 0.37F +
                                          static_cast<float>(p + 3 * step + micro));
  }
  return g;
}

// One step of `micros` micro-batches, every gradient taken at `at` (per parameter), then the
// optimizer's step.
void train_step(Rig& r, int step, int micros, const std::vector<std::vector<float>>& at) {
  r.state->begin_step();
  IterationScope it(*r.engine);
  const std::vector<ParameterDecl>& params = r.state->params();
  for (int m = 0; m < micros; ++m) {
    for (std::size_t p = params.size(); p-- > 0;) {  // backward: the last parameters first
      const std::vector<float> g = gradient(at[p], p, step, m);
      Tensor gt = r.engine->input({"g", params[p].shape, DType::kF32}, g.data()).value();
      ASSERT_TRUE(r.state->accumulate(p, gt).ok());
    }
  }
  ASSERT_TRUE(r.opt->step(step, 0.01F, 0.5F).ok());
  ASSERT_TRUE(it.end().ok());
}

std::vector<std::vector<float>> all_working(Rig& r) {
  std::vector<std::vector<float>> out;
  for (std::size_t p = 0; p < r.state->size(); ++p) out.push_back(working(r, p));
  return out;
}

// Steps with gradients at the current working parameters; the master weights after a flush.
std::vector<float> train(Rig& r, int steps, int micros) {
  for (int step = 1; step <= steps; ++step) train_step(r, step, micros, all_working(r));
  EXPECT_TRUE(r.opt->flush().ok());
  return r.state->masters_to_host().value();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool have_nvme() {
  return probe_io_uring().ok() &&
         test_support::direct_io_unsupported(test_support::scratch_base()).empty();
}

struct Case {
  OptimizerKind kind;
  Precision precision;
};

class OffloadStepTest : public ::testing::TestWithParam<Case> {};

TEST_P(OffloadStepTest, EveryPlacementGivesTheDeviceBits) {
  const auto [kind, precision] = GetParam();
  constexpr int kSteps = 4;
  constexpr int kMicros = 2;
  Rig device = make_run({.kind = kind, .precision = precision});
  ASSERT_TRUE(device.created.ok()) << device.created.to_string();
  const std::vector<float> expected = train(device, kSteps, kMicros);
  const std::vector<std::vector<float>> expected_working = all_working(device);
  const std::size_t slices = device.state->slices().size();
  ASSERT_EQ(slices, 5U);

  test_support::ScratchDir dir;
  const bool nvme = have_nvme();
  std::vector<std::vector<StatePlacement>> placements = {
      std::vector<StatePlacement>(slices, StatePlacement::kHost)};
  if (nvme) {
    placements.emplace_back(slices, StatePlacement::kNvme);
    placements.push_back({StatePlacement::kNvme, StatePlacement::kDevice, StatePlacement::kHost,
                          StatePlacement::kDevice, StatePlacement::kNvme});
  } else {
    placements.push_back({StatePlacement::kHost, StatePlacement::kDevice, StatePlacement::kHost,
                          StatePlacement::kDevice, StatePlacement::kHost});
  }
  for (const std::vector<StatePlacement>& placement : placements) {
    std::string name;
    for (StatePlacement p : placement) name += std::string(placement_name(p)) + " ";
    Rig run = make_run({.kind = kind,
                        .precision = precision,
                        .placement = placement,
                        .nvme_dir = nvme ? dir.path() : std::string()});
    ASSERT_TRUE(run.created.ok()) << name << run.created.to_string();
    EXPECT_TRUE(same_bits(train(run, kSteps, kMicros), expected)) << name;
    const std::vector<std::vector<float>> w = all_working(run);
    for (std::size_t p = 0; p < w.size(); ++p) {
      EXPECT_TRUE(same_bits(w[p], expected_working[p])) << name << " working parameter " << p;
    }
    const OffloadStats stats = run.opt->offload_stats();
    EXPECT_EQ(stats.cpu_steps, kSteps) << name;
    // From step 2 on, each off-device slice's copy started in backward, when it was final.
    std::int64_t off = 0;
    for (StatePlacement p : placement) off += p != StatePlacement::kDevice ? 1 : 0;
    EXPECT_EQ(stats.early_gradient_copies, off * (kSteps - 1)) << name;
    EXPECT_GT(stats.parameter_bytes, 0) << name;
    // The off-device slices' state is not on the device.
    EXPECT_LT(run.engine->memory_by_kind(TensorKind::kOptimizerState).current,
              device.engine->memory_by_kind(TensorKind::kOptimizerState).current)
        << name;
  }
}

INSTANTIATE_TEST_SUITE_P(KindsAndPrecisions, OffloadStepTest,
                         ::testing::Values(Case{OptimizerKind::kAdamW, Precision::kF32},
                                           Case{OptimizerKind::kAdamW, Precision::kBF16},
                                           Case{OptimizerKind::kAdamW, Precision::kF16},
                                           Case{OptimizerKind::kAdafactor, Precision::kBF16},
                                           Case{OptimizerKind::kAdafactor, Precision::kF32},
                                           Case{OptimizerKind::kSm3, Precision::kF16},
                                           Case{OptimizerKind::kSm3, Precision::kF32}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(optimizer_name(info.param.kind)) + "_" +
                                  std::string(precision_name(info.param.precision));
                         });

TEST(OffloadStep, DelayedUpdateFollowsTheStaleRecurrence) {
  for (Precision precision : {Precision::kF32, Precision::kBF16}) {
    constexpr int kSteps = 6;
    // The reference: a device-placed optimizer, every step's gradients taken at the parameters
    // one update stale from step 3 on (step 1's update lands before step 2, as it is not delayed).
    Rig ref = make_run({.precision = precision});
    std::vector<std::vector<std::vector<float>>> history = {all_working(ref)};  // theta(1)
    for (int t = 1; t <= kSteps; ++t) {
      const auto& at = t >= 3 ? history[static_cast<std::size_t>(t - 2)]
                              : history[static_cast<std::size_t>(t - 1)];
      train_step(ref, t, 1, at);
      history.push_back(all_working(ref));  // theta(t+1)
    }
    const std::vector<float> expected = ref.state->masters_to_host().value();

    Rig delayed = make_run({.precision = precision,
                            .placement = std::vector<StatePlacement>(5, StatePlacement::kHost),
                            .delayed = true});
    ASSERT_TRUE(delayed.created.ok()) << delayed.created.to_string();
    for (int t = 1; t <= kSteps; ++t) {
      const std::vector<std::vector<float>> at = all_working(delayed);
      // The forward of step t sees theta(t - 1) from step 3 on.
      const std::size_t seen =
          t >= 3 ? static_cast<std::size_t>(t - 2) : static_cast<std::size_t>(t - 1);
      for (std::size_t p = 0; p < at.size(); ++p) {
        ASSERT_TRUE(same_bits(at[p], history[seen][p])) << "step " << t << " parameter " << p;
      }
      train_step(delayed, t, 1, at);
    }
    ASSERT_TRUE(delayed.opt->flush().ok());
    EXPECT_TRUE(same_bits(delayed.state->masters_to_host().value(), expected))
        << precision_name(precision);
    const OffloadStats stats = delayed.opt->offload_stats();
    EXPECT_EQ(stats.cpu_steps, kSteps);
    EXPECT_LE(stats.wait_s, stats.cpu_step_s + 1.0);
  }
}

TEST(OffloadStep, ASkippedStepSkipsItsDelayedUpdate) {
  // Steps 1, 2, (3 skipped: gradients made, no optimizer step), 4: the same as 1, 2, 4 with no
  // step 3 at all.
  const std::vector<StatePlacement> host(5, StatePlacement::kHost);
  const auto run_steps = [&](bool with_skipped) {
    Rig r = make_run({.placement = host, .delayed = true});
    EXPECT_TRUE(r.created.ok());
    train_step(r, 1, 1, all_working(r));
    train_step(r, 2, 1, all_working(r));
    if (with_skipped) {
      r.state->begin_step();
      IterationScope it(*r.engine);
      const std::vector<std::vector<float>> at = all_working(r);
      for (std::size_t p = r.state->size(); p-- > 0;) {
        const std::vector<float> g = gradient(at[p], p, 99, 0);
        Tensor gt =
            r.engine->input({"g", r.state->params()[p].shape, DType::kF32}, g.data()).value();
        EXPECT_TRUE(r.state->accumulate(p, gt).ok());
      }
      EXPECT_TRUE(it.end().ok());
    }
    train_step(r, 3, 1, all_working(r));
    EXPECT_TRUE(r.opt->flush().ok());
    return r.state->masters_to_host().value();
  };
  EXPECT_TRUE(same_bits(run_steps(true), run_steps(false)));
}

TEST(OffloadStep, CheckpointBlobsMoveBetweenPlacements) {
  test_support::ScratchDir dir;
  const bool nvme = have_nvme();
  const StatePlacement off = nvme ? StatePlacement::kNvme : StatePlacement::kHost;
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kSm3}) {
    Rig whole = make_run({.kind = kind, .precision = Precision::kBF16});
    const std::vector<float> expected = train(whole, 4, 1);
    // Two steps off the device, saved; two more on the device from the blobs.
    Rig first = make_run({.kind = kind,
                          .precision = Precision::kBF16,
                          .placement = std::vector<StatePlacement>(5, off),
                          .nvme_dir = nvme ? dir.path() : std::string()});
    ASSERT_TRUE(first.created.ok()) << first.created.to_string();
    train(first, 2, 1);
    const std::vector<Optimizer::Blob> blobs = first.opt->blobs();
    Rig second = make_run({.kind = kind, .precision = Precision::kBF16});
    const std::vector<Optimizer::Blob> device_blobs = second.opt->blobs();
    ASSERT_EQ(blobs.size(), device_blobs.size());
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      EXPECT_EQ(blobs[i].name, device_blobs[i].name);
      ASSERT_EQ(blobs[i].bytes, device_blobs[i].bytes) << blobs[i].name;
      std::vector<std::byte> bytes(blobs[i].bytes);
      ASSERT_TRUE(first.opt->read_blob(i, bytes).ok());
      ASSERT_TRUE(second.opt->write_blob(i, bytes).ok());
    }
    for (int step = 3; step <= 4; ++step) train_step(second, step, 1, all_working(second));
    EXPECT_TRUE(same_bits(second.state->masters_to_host().value(), expected))
        << optimizer_name(kind);
    // And back: the device's blobs into an off-device run, which goes on to the same bits.
    Rig third = make_run({.kind = kind,
                          .precision = Precision::kBF16,
                          .placement = std::vector<StatePlacement>(5, off),
                          .nvme_dir = nvme ? dir.path() : std::string()});
    Rig device_half = make_run({.kind = kind, .precision = Precision::kBF16});
    train(device_half, 2, 1);
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      std::vector<std::byte> bytes(blobs[i].bytes);
      ASSERT_TRUE(device_half.opt->read_blob(i, bytes).ok());
      ASSERT_TRUE(third.opt->write_blob(i, bytes).ok());
    }
    for (int step = 3; step <= 4; ++step) train_step(third, step, 1, all_working(third));
    ASSERT_TRUE(third.opt->flush().ok());
    EXPECT_TRUE(same_bits(third.state->masters_to_host().value(), expected))
        << optimizer_name(kind);
  }
}

// The engine's side: read_async holds a tensor on the device only until its copy is done, so
// three gradients that do not fit at once are all read within a budget for two; replace_on_host
// gives a carried tensor new bytes on the host and prefetch brings them back.
TEST(OffloadStep, EngineReadsAsyncWithinTheBudgetAndReplacesOnTheHost) {
  auto device = make_cpu_device();
  EngineOptions options{
      .device = *device, .budget_bytes = 5 * kMiB, .policy = EvictionPolicy::kBoth};
  options.host_tier_bytes = 64 * kMiB;
  auto engine = Engine::create(std::move(options)).value();
  constexpr std::int64_t kFloats = 512 * 1024;  // 2 MiB each
  std::vector<Tensor> grads;
  std::vector<std::vector<float>> values;
  for (int k = 0; k < 3; ++k) {
    std::vector<float> v(kFloats);
    for (std::int64_t i = 0; i < kFloats; ++i) v[static_cast<std::size_t>(i)] = float(i % 97 + k);
    grads.push_back(
        engine
            ->parameter(test_ops::f32("g" + std::to_string(k), {kFloats}, TensorKind::kGradient),
                        v.data())
            .value());
    values.push_back(std::move(v));
  }
  std::vector<std::vector<float>> host(3, std::vector<float>(kFloats, -1.0F));
  {
    IterationScope it(*engine);
    for (int k = 0; k < 3; ++k) {
      const Status s = engine->read_async(grads[k], host[k].data(), kFloats * sizeof(float));
      ASSERT_TRUE(s.ok()) << "gradient " << k << ": " << s.to_string();
    }
    ASSERT_TRUE(engine->wait_reads().ok());
    ASSERT_TRUE(it.end().ok());
  }
  for (int k = 0; k < 3; ++k) EXPECT_EQ(host[k], values[k]) << "gradient " << k;
  EXPECT_LE(engine->allocator().stats().all.reserved_bytes.peak, std::int64_t{5} * kMiB);

  // New bytes for g0, left on the host, then brought back by a prefetch.
  std::vector<float> fresh(kFloats, 0.5F);
  ASSERT_TRUE(engine->replace_on_host(grads[0], fresh.data(), kFloats * sizeof(float)).ok());
  // g1 and g2 fill the budget, and a prefetch evicts nothing: no copy yet. With room, one starts.
  EXPECT_FALSE(engine->prefetch(grads[0]).value());
  ASSERT_TRUE(engine->release(grads[2]).ok());
  EXPECT_TRUE(engine->prefetch(grads[0]).value()) << "on the host, with room: a copy starts";
  std::vector<float> back(kFloats);
  ASSERT_TRUE(engine->read(grads[0], back.data(), kFloats * sizeof(float)).ok());
  EXPECT_EQ(back, fresh);
  EXPECT_EQ(engine->replace_on_host(grads[1], fresh.data(), 16).code(),
            StatusCode::kInvalidArgument)
      << "a partial replacement is refused";
}

TEST(OffloadStep, BadPlacementsFailBeforeAnyStep) {
  const std::vector<StatePlacement> nvme(5, StatePlacement::kNvme);
  Rig no_tier = make_run({.placement = nvme});
  EXPECT_EQ(no_tier.created.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(no_tier.created.message().find("--nvme-dir"), std::string::npos)
      << no_tier.created.message();

  Rig small = make_run({.placement = std::vector<StatePlacement>(5, StatePlacement::kHost),
                        .host_tier_bytes = 8 * kKiB});
  EXPECT_EQ(small.created.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(small.created.message().find("needs"), std::string::npos) << small.created.message();

  Rig delayed_on_device = make_run({.delayed = true});
  EXPECT_EQ(delayed_on_device.created.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(delayed_on_device.created.message().find("--delayed-update"), std::string::npos);
}

}  // namespace
}  // namespace ebb
