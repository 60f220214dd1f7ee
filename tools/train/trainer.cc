#include "tools/train/trainer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <memory>

#include "engine/planner/hardware_probe.h"
#include "tools/train/gpt_model.h"
#include "tools/train/token_data.h"

namespace ebb::train {
namespace {

// cpu device memory: a lazily touched host region; pages small enough that budgets of a few
// MiB (the demo's model) are not rounded away by the mapping granularity.
constexpr std::size_t kCpuDeviceBytes = std::size_t{4} << 30;  // 4 GiB of address space
constexpr std::size_t kCpuPageBytes = std::size_t{64} << 10;   // 64 KiB
// Synthetic stream length: long enough that a demo does not see the same batch twice.
constexpr std::int64_t kSyntheticTokens = std::int64_t{1} << 20;

Result<std::unique_ptr<Device>> make_device(DeviceKind kind, double link_gbps) {
  DeviceOptions options;
  options.kind = kind;
  if (kind != DeviceKind::kCuda) {
    options.capacity_bytes = kCpuDeviceBytes;
    options.page_bytes = kCpuPageBytes;
    const LinkModel link{link_gbps * 1e9, link_gbps > 0 ? std::chrono::microseconds(5)
                                                        : std::chrono::microseconds(0)};
    options.host_to_device = link;
    options.device_to_host = link;
  }
  return create_device(options);
}

Result<TokenData> load_data(const TrainOptions& o) {
  const std::int64_t needed = static_cast<std::int64_t>(o.model.batch) * o.model.seq + 1;
  if (o.data_path.empty()) {
    return TokenData::synthetic(o.model.vocab, std::max(kSyntheticTokens, needed), o.seed);
  }
  return TokenData::from_file(o.data_path, o.model.vocab, needed);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Trains `steps` steps on a fresh engine of `device` with `budget_bytes` (0: the device's size).
Result<TrainResult> run(const TrainOptions& o, Device& device, const TokenData& data,
                        std::size_t budget_bytes, int steps, bool write_profile_out,
                        const std::function<void(const StepStats&)>& on_step) {
  EngineOptions engine_options{.device = device,
                               .budget_bytes = budget_bytes,
                               .policy = o.policy,
                               .warmup_iterations = o.warmup_iterations};
  if (o.host_tier_bytes > 0) engine_options.host_tier_bytes = o.host_tier_bytes;
  engine_options.nvme_directories = o.nvme_directories;
  engine_options.nvme_tier_bytes = o.nvme_tier_bytes;
  TrainResult result;
  if (o.plan_policy.has_value()) {
    EBB_ASSIGN_OR_RETURN(result.hardware, measure_host_link(device));
    engine_options.planner = [&o, &result, budget_bytes, &device](const Profile& profile) {
      PlannerOptions planner;
      planner.policy = *o.plan_policy;
      planner.budget_bytes = budget_bytes > 0 ? budget_bytes : device.capacity_bytes();
      planner.hardware = result.hardware;
      return make_plan(profile, planner);
    };
  }
  EBB_ASSIGN_OR_RETURN(auto engine, Engine::create(std::move(engine_options)));
  EBB_ASSIGN_OR_RETURN(auto model, GptModel::create(*engine, o.model, o.seed));
  result.budget_bytes = engine->allocator().stats().budget_bytes;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> targets;
  std::vector<double> step_ms;
  std::vector<double> steady_ms;
  std::size_t peak_reserved = 0;  // over every step (the allocator's peak is reset after warm-up)
  const double tokens_per_step = static_cast<double>(o.model.batch) * o.model.seq;
  for (int s = 1; s <= steps; ++s) {
    data.batch(s - 1, o.model.batch, o.model.seq, inputs, targets);
    // The steady state starts after the warm-up (and the plan made at its end).
    if (s == o.warmup_iterations + 1) engine->allocator().reset_peak_stats();
    const EngineStats before = engine->stats();
    const auto start = std::chrono::steady_clock::now();
    EBB_ASSIGN_OR_RETURN(float loss, model->step(inputs, targets, o.adamw, s));
    const auto end = std::chrono::steady_clock::now();
    const EngineStats after = engine->stats();
    StepStats st;
    st.step = s;
    st.loss = loss;
    st.ms = std::chrono::duration<double, std::milli>(end - start).count();
    st.tokens_per_s = st.ms > 0 ? tokens_per_step * 1000.0 / st.ms : 0;
    peak_reserved =
        std::max(peak_reserved,
                 static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak));
    st.peak_reserved_bytes = peak_reserved;
    st.swapped_bytes = after.swapped_out_bytes - before.swapped_out_bytes;
    st.recompute_ms = static_cast<double>(after.recompute_ns - before.recompute_ns) / 1e6;
    st.recomputed_ops = after.recomputed_ops - before.recomputed_ops;
    step_ms.push_back(st.ms);
    if (s > o.warmup_iterations) steady_ms.push_back(st.ms);
    result.steps.push_back(st);
    if (on_step) on_step(st);
    if (write_profile_out && s == o.warmup_iterations) {
      EBB_ASSIGN_OR_RETURN(Profile profile, engine->profile());
      EBB_RETURN_IF_ERROR(write_profile(profile, o.profile_out));
    }
  }
  const AllocatorStats stats = engine->allocator().stats();
  result.peak_reserved_bytes =
      std::max(peak_reserved, static_cast<std::size_t>(stats.all.reserved_bytes.peak));
  if (steps > o.warmup_iterations) {
    result.steady_peak_reserved_bytes = static_cast<std::size_t>(stats.all.reserved_bytes.peak);
    result.steady_ms_median = median(steady_ms);
  }
  if (const Plan* plan = engine->active_plan()) result.plan = *plan;
  result.executor = engine->executor_stats();
  result.peak_live_bytes = static_cast<std::size_t>(stats.all.allocated_bytes.peak);
  result.ms_per_step_median = median(step_ms);
  result.tokens_per_s =
      result.ms_per_step_median > 0 ? tokens_per_step * 1000.0 / result.ms_per_step_median : 0;
  EBB_ASSIGN_OR_RETURN(result.final_parameters, model->parameters_to_host());
  result.engine = engine->stats();
  return result;
}

}  // namespace

std::size_t minimum_budget_bytes(const GptConfig& c, EvictionPolicy policy) {
  const std::size_t f = sizeof(float);
  const std::size_t N = static_cast<std::size_t>(c.batch) * c.seq;
  const std::size_t C = c.d_model;
  const std::size_t V = c.vocab;
  const std::size_t att = static_cast<std::size_t>(c.batch) * c.heads * c.seq * c.seq;
  // Each op's inputs and outputs that are not parameters or moments (those are counted apart).
  const std::size_t ops[] = {
      N * V * 2 + N * 2,            // cross_entropy: logits, probs, losses, targets
      N * V + N * C * 2 + V * C,    // logits_backward: dlogits, lnf, dlnf, dwte_head
      N * C * 3 * 2 + att + N * C,  // attention_backward: dout, qkv, att, dqkv
      N * C * 4 * 2 + N * C * 2 + C * C * 4 + C * 4,  // fc backward
      V * C * 3,                                      // dwte: two contributions and their sum
  };
  std::size_t working = 0;
  for (std::size_t bytes : ops) working = std::max(working, bytes * f);
  const bool can_swap = policy == EvictionPolicy::kSwap || policy == EvictionPolicy::kBoth;
  const std::size_t pinned = can_swap ? 0 : static_cast<std::size_t>(parameter_count(c)) * f * 3;
  return working + pinned;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](float x, float y) { return same_bits(x, y); });
}

bool same_losses(const TrainResult& a, const TrainResult& b) {
  return std::equal(
      a.steps.begin(), a.steps.end(), b.steps.begin(), b.steps.end(),
      [](const StepStats& x, const StepStats& y) { return same_bits(x.loss, y.loss); });
}

std::uint64_t fingerprint(const std::vector<float>& values) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (std::size_t i = 0; i < values.size() * sizeof(float); ++i) {
    h = (h ^ bytes[i]) * 0x100000001b3ULL;
  }
  return h;
}

Result<TrainResult> train(const TrainOptions& o,
                          const std::function<void(const StepStats&)>& on_step) {
  EBB_RETURN_IF_ERROR(validate_config(o.model));
  if (o.steps <= 0) {
    return invalid_argument("--steps must be positive (got " + std::to_string(o.steps) + ")");
  }
  if (o.budget_fraction < 0 || o.budget_fraction > 1) {
    return invalid_argument("--budget " + std::to_string(o.budget_fraction * 100) +
                            "% is not within 0-100% of the unconstrained peak");
  }
  if (!o.profile_out.empty() && o.steps < o.warmup_iterations) {
    return invalid_argument("--profile-out needs at least " + std::to_string(o.warmup_iterations) +
                            " steps (the warm-up)");
  }
  EBB_ASSIGN_OR_RETURN(TokenData data, load_data(o));
  EBB_ASSIGN_OR_RETURN(auto device, make_device(o.device, o.link_gbps));
  std::size_t budget = o.budget_bytes;
  if (budget == 0 && o.budget_fraction > 0) {
    // The unconstrained peak, from a short run of the same model on a fresh engine.
    TrainOptions probe = o;
    probe.policy = EvictionPolicy::kNone;
    probe.plan_policy.reset();
    EBB_ASSIGN_OR_RETURN(TrainResult unconstrained,
                         run(probe, *device, data, 0, std::min(2, o.steps), false, {}));
    budget = static_cast<std::size_t>(static_cast<double>(unconstrained.peak_reserved_bytes) *
                                      o.budget_fraction);
  }
  if (budget > 0) {
    const std::size_t floor = minimum_budget_bytes(o.model, o.policy);
    if (budget < floor) {
      return invalid_argument(
          "--budget " + std::to_string(budget) + " B is below the " + std::to_string(floor) +
          " B that one step needs at once under policy " +
          std::string(eviction_policy_name(o.policy)) + " (the largest op's working set" +
          (o.policy == EvictionPolicy::kSwap || o.policy == EvictionPolicy::kBoth
               ? ")"
               : ", plus parameters and AdamW moments, which only swapping could evict)"));
    }
    if (budget > device->capacity_bytes()) {
      return invalid_argument("--budget " + std::to_string(budget) + " B is above the device's " +
                              std::to_string(device->capacity_bytes()) + " B");
    }
  }
  return run(o, *device, data, budget, o.steps, !o.profile_out.empty(), on_step);
}

}  // namespace ebb::train
