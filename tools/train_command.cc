// `ebb train`: the reference trainer (tools/train) from the command line: a GPT-2-style model
// trained on synthetic tokens or an llm.c token file, on cpu or cuda, under a budget and an
// eviction policy, with one line (or one JSON object) per step and a summary.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tools/commands.h"
#include "tools/report/report_files.h"
#include "tools/report/run_reports.h"
#include "tools/train/trainer.h"

namespace ebb::cli {
namespace {

struct TrainArgs {
  train::TrainOptions options;
  CLI::App* app = nullptr;  // which shape flags were given alongside --model
  std::string model;        // --model: a preset; empty: the shape flags alone
  std::string device = "cpu";
  std::string hw;             // --hw: the sim device's hardware profile
  std::string device_memory;  // --device-memory: the sim device's memory, a byte size
  std::string budget;
  std::string policy = "none";
  std::string host_tier;  // --host-tier: a byte size; empty = the engine's default
  std::string nvme_size;  // --nvme-size: a byte size; empty = TrainOptions' default
  std::string precision = "fp32";
  std::string grad_dtype;  // empty: the precision's dtype
  std::string optimizer = "adamw";
  std::optional<float> lr_min;
  std::string optimizer_state = "device";
  std::string nvme_chunk;  // --nvme-chunk: a byte size; empty = the tier's default
  int zero = -1;           // --zero: the stage; -1: no ZeRO
  double bucket_mb = 32;   // --bucket-mb
  double comm_timeout_s = 120;
  double comm_gbps = 0;
  std::string gather_schedule = "plan";
  double comm_latency_us = 0;
  bool json = false;
  report::ReportPaths reports;  // --report, --chrome-trace
};

nlohmann::json step_json(const train::StepStats& s) {
  return {{"step", s.step},
          {"loss", s.loss},
          {"ms", s.ms},
          {"host_ms", s.host_ms},
          {"tokens_per_s", s.tokens_per_s},
          {"peak_reserved_bytes", s.peak_reserved_bytes},
          {"rss_bytes", s.rss_bytes},
          {"swapped_bytes", s.swapped_bytes},
          {"recompute_ms", s.recompute_ms},
          {"recomputed_ops", s.recomputed_ops},
          {"lr", s.learning_rate},
          {"loss_scale", s.loss_scale},
          {"skipped", s.skipped},
          {"grad_norm", s.grad_norm},
          {"gathers", s.gathers},
          {"gather_bytes", s.gather_bytes},
          {"exposed_gather_ms", s.exposed_gather_ms}};
}

// The model state on the device after the run, by kind, against the formula (with auto, plus
// the state of the slices the plan keeps on the device).
nlohmann::json model_state_json(const train::TrainOptions& o, const train::TrainResult& r) {
  const double n = static_cast<double>(r.parameters);
  const double total = static_cast<double>(r.parameter_state_bytes + r.gradient_state_bytes +
                                           r.optimizer_state_bytes);
  double formula = train::model_state_bytes_per_parameter(o, r.ranks);
  if (r.state_plan.has_value()) {
    for (const StateSliceChoice& c : r.state_plan->slices) {
      if (placement_of(c.choice) == StatePlacement::kDevice) {
        formula += static_cast<double>(c.state_bytes) / n;
      }
    }
  }
  return {{"parameters", r.parameters},
          {"parameter_bytes", r.parameter_state_bytes},
          {"gradient_bytes", r.gradient_state_bytes},
          {"optimizer_state_bytes", r.optimizer_state_bytes},
          {"bytes_per_parameter", total / n},
          {"formula_bytes_per_parameter", formula}};
}

// ZeRO: the ranks, the steady state's peak device bytes per kind, and what was sent.
nlohmann::json zero_json(const train::TrainOptions& o, const train::TrainResult& r) {
  nlohmann::json sent = nlohmann::json::object();
  for (std::size_t i = 0; i < kCommOpCount; ++i) {
    if (r.comm.calls[i] == 0) continue;
    sent[std::string(comm_op_name(static_cast<CommOp>(i)))] = {{"calls", r.comm.calls[i]},
                                                               {"bytes", r.comm.bytes_sent[i]}};
  }
  return {{"stage", *o.zero_stage},
          {"rank", r.rank},
          {"ranks", r.ranks},
          {"peak_parameter_bytes", r.peak_parameter_bytes},
          {"peak_gradient_bytes", r.peak_gradient_bytes},
          {"peak_optimizer_state_bytes", r.peak_optimizer_state_bytes},
          {"peak_workspace_bytes", r.peak_workspace_bytes},
          {"peak_op_gradient_bytes", r.peak_op_gradient_bytes},
          {"reduce_bytes", r.zero.reduce_bytes},
          {"gather_bytes", r.zero.gather_bytes},
          {"buckets_reduced", r.zero.buckets_reduced},
          {"early_buckets", r.zero.early_buckets},
          {"sent", sent},
          {"gather_schedule", *o.zero_stage == 3 ? gather_policy_name(o.gather_policy) : "none"},
          {"gathers_sent",
           {{"calls", r.gather_comm.calls[static_cast<std::size_t>(CommOp::kAllGather)]},
            {"bytes", r.gather_comm.bytes_sent[static_cast<std::size_t>(CommOp::kAllGather)]}}},
          {"predicted",
           r.predicted_gathers.has_value()
               ? nlohmann::json{{"step_s", r.predicted_gathers->step_seconds},
                                {"exposed_s", r.predicted_gathers->exposed_seconds},
                                {"gather_s", r.predicted_gathers->gather_seconds},
                                {"peak_bytes", r.predicted_gathers->peak_bytes},
                                {"peak_gathered_bytes", r.predicted_gathers->peak_gathered_bytes},
                                {"gathers", r.predicted_gathers->gathers}}
               : nlohmann::json()}};
}

// The training options given as names, checked before any step runs.
Status parse_training_names(TrainArgs& args) {
  train::TrainOptions& o = args.options;
  std::optional<Precision> precision = precision_from_name(args.precision);
  if (!precision.has_value()) {
    return invalid_argument("--precision \"" + args.precision + "\" is not fp32, bf16 or fp16");
  }
  o.precision = *precision;
  if (!args.grad_dtype.empty()) {
    const std::string& g = args.grad_dtype;
    if (g == "fp32") {
      o.grad_dtype = DType::kF32;
    } else if (g == "bf16" || g == "fp16") {
      o.grad_dtype = g == "bf16" ? DType::kBF16 : DType::kF16;
    } else {
      return invalid_argument("--grad-dtype \"" + g + "\" is not fp32, bf16 or fp16");
    }
  }
  std::optional<OptimizerKind> optimizer = optimizer_from_name(args.optimizer);
  if (!optimizer.has_value()) {
    return invalid_argument("--optimizer \"" + args.optimizer +
                            "\" is not adamw, adafactor or sm3");
  }
  o.optimizer.kind = *optimizer;
  o.lr_min = args.lr_min;
  std::optional<StatePolicy> state = state_policy_from_name(args.optimizer_state);
  if (!state.has_value()) {
    return invalid_argument("--optimizer-state \"" + args.optimizer_state +
                            "\" is not device, host, nvme or auto");
  }
  o.optimizer_state = *state;
  return ok_status();
}

// Where the optimizer's state lived, what the planner chose (auto) and what the off-device step
// did, for the JSON summary.
nlohmann::json optimizer_state_json(const train::TrainOptions& o, const train::TrainResult& r) {
  nlohmann::json placement = nlohmann::json::array();
  for (StatePlacement p : r.state_placement) placement.push_back(placement_name(p));
  const OffloadStats& f = r.offload;
  nlohmann::json j = {{"policy", state_policy_name(o.optimizer_state)},
                      {"delayed_update", o.delayed_update},
                      {"placement", placement},
                      {"offload",
                       {{"cpu_steps", f.cpu_steps},
                        {"cpu_step_s", f.cpu_step_s},
                        {"wait_s", f.wait_s},
                        {"hidden_share", f.cpu_step_s > 0 ? 1.0 - f.wait_s / f.cpu_step_s : 0.0},
                        {"gradient_bytes", f.gradient_bytes},
                        {"early_gradient_copies", f.early_gradient_copies},
                        {"parameter_bytes", f.parameter_bytes},
                        {"host_bytes", f.host_bytes},
                        {"nvme_bytes", f.nvme_bytes},
                        {"nvme_read_s", f.nvme_read_s},
                        {"nvme_write_s", f.nvme_write_s},
                        {"nvme_update_s", f.nvme_update_s}}}};
  if (r.state_plan.has_value()) {
    const StatePlacementPlan& p = *r.state_plan;
    nlohmann::json slices = nlohmann::json::array();
    for (const StateSliceChoice& c : p.slices) {
      slices.push_back({{"slice", c.name},
                        {"choice", state_choice_name(c.choice)},
                        {"state_bytes", c.state_bytes},
                        {"predicted_s", c.predicted_s}});
    }
    j["plan"] = {{"slices", slices},
                 {"predicted_s", p.predicted_s},
                 {"forward_peak_bytes", p.forward_peak_bytes},
                 {"step_peak_bytes", p.step_peak_bytes},
                 {"smallest_budget_bytes", p.smallest_budget_bytes}};
  }
  return j;
}

// One line: how many slices went where, and the planner's per-slice choice with auto.
void print_optimizer_state(const train::TrainOptions& o, const train::TrainResult& r) {
  std::size_t counts[3] = {0, 0, 0};
  for (StatePlacement p : r.state_placement) ++counts[static_cast<int>(p)];
  std::printf("optimizer state (%s): %zu slices on the device, %zu on the host, %zu on NVMe",
              std::string(state_policy_name(o.optimizer_state)).c_str(), counts[0], counts[1],
              counts[2]);
  const OffloadStats& f = r.offload;
  if (f.cpu_steps > 0) {
    std::printf("; CPU step %.1f ms per step",
                f.cpu_step_s * 1e3 / static_cast<double>(f.cpu_steps));
    if (o.delayed_update && f.cpu_step_s > 0) {
      std::printf(" (%.0f%% hidden by the delayed update)",
                  100.0 * (1.0 - f.wait_s / f.cpu_step_s));
    }
  }
  std::printf("\n");
  if (r.state_plan.has_value()) {
    for (const StateSliceChoice& c : r.state_plan->slices) {
      std::printf("  %-12s %-8s %s, predicted %.3f ms\n", c.name.c_str(),
                  std::string(state_choice_name(c.choice)).c_str(),
                  format_bytes(c.state_bytes).c_str(), c.predicted_s * 1e3);
    }
  }
}

// A bar on stderr, redrawn in place, only when stderr is a terminal and stdout is not JSON.
void draw_progress(int step, int steps) {
  constexpr int kWidth = 30;
  const int filled = steps > 0 ? step * kWidth / steps : kWidth;
  std::fprintf(stderr, "\r[%s%s] %d/%d", std::string(static_cast<std::size_t>(filled), '#').c_str(),
               std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), step, steps);
  if (step == steps) std::fprintf(stderr, "\r%*s\r", kWidth + 24, "");
  std::fflush(stderr);
}

// What the plan predicted and what the executor did, for the JSON summary.
nlohmann::json plan_json(const train::TrainResult& r) {
  const PlanPrediction& p = r.plan->predicted;
  return {{"policy", r.plan->policy},
          {"evictions", r.plan->evictions.size()},
          {"planner_seconds", r.plan->planner_seconds},
          {"predicted_peak_reserved_bytes", p.peak_reserved_bytes},
          {"predicted_step_ms", static_cast<double>(p.step_ns) / 1e6},
          {"checked_on_sim", p.checked_on_sim},
          {"hardware_h2d_gbps", r.hardware.host_to_device_bytes_per_s / 1e9},
          {"hardware_d2h_gbps", r.hardware.device_to_host_bytes_per_s / 1e9},
          {"planned_steps", r.executor.planned_iterations},
          {"diverged_steps", r.executor.diverged_iterations},
          {"prefetches", r.executor.prefetches},
          {"late_prefetches", r.executor.late_prefetches},
          {"fallback_evictions", r.executor.fallback_evictions},
          {"skipped_actions", r.executor.skipped_actions}};
}

// --model: the preset's shape, with the shape flags given beside it winning.
Status apply_model_preset(TrainArgs& args) {
  if (args.model.empty()) return ok_status();
  EBB_ASSIGN_OR_RETURN(train::ModelPreset preset, train::find_model_preset(args.model));
  train::GptConfig& c = args.options.model;
  const auto given = [&](const char* flag, int value) -> std::optional<int> {
    if (args.app->count(flag) == 0) return std::nullopt;
    return value;
  };
  const train::ShapeOverrides overrides{.layers = given("--layers", c.layers),
                                        .d_model = given("--d-model", c.d_model),
                                        .heads = given("--heads", c.heads),
                                        .vocab = given("--vocab", c.vocab),
                                        .seq = given("--seq", c.seq)};
  c = train::apply_preset(preset, c, overrides);
  return ok_status();
}

// --device sim: the hardware profile's host link and the device's memory.
Status parse_sim_device(TrainArgs& args) {
  train::TrainOptions& o = args.options;
  if (args.hw.empty()) {
    return invalid_argument(
        "--device sim needs --hw FILE, the hardware profile whose host link it models (e.g. "
        "profiles/hw/h100-sxm.json)");
  }
  if (o.link_gbps != 0) {
    return invalid_argument("--link-gbps models the cpu device's link; the sim's is --hw's");
  }
  EBB_ASSIGN_OR_RETURN(o.sim_hardware, read_hardware_model(args.hw));
  // A chip object, when the profile has one, times the kernels and gives the memory.
  EBB_ASSIGN_OR_RETURN(o.sim_chip, read_chip_spec_if_any(args.hw));
  if (!args.device_memory.empty()) {
    EBB_ASSIGN_OR_RETURN(o.device_memory_bytes,
                         parse_byte_size(args.device_memory, "--device-memory"));
  }
  return ok_status();
}

// With --report or --chrome-trace the run needs its warm-up profile: the one --profile-out writes,
// or `temporary`, made here. Checks the report paths first, so that a path that cannot be written
// fails before the training does.
Status prepare_reports(TrainArgs& args, std::optional<report::TemporaryProfile>& temporary) {
  if (args.reports.empty()) return ok_status();
  EBB_RETURN_IF_ERROR(report::check_report_paths(args.reports));
  if (!args.options.profile_out.empty()) return ok_status();
  temporary.emplace("train");
  args.options.profile_out = temporary->path();
  return ok_status();
}

// Writes the report and the trace of the finished run (rank 0 speaks for the job).
Status write_reports(const TrainArgs& args, const train::TrainResult& r) {
  if (args.reports.empty() || r.rank != 0) return ok_status();
  EBB_RETURN_IF_ERROR(report::write_train_reports(args.options.profile_out, r, args.reports));
  if (!args.json) report::print_written(args.reports);
  return ok_status();
}

int run_train(TrainArgs& args) {
  Result<DeviceKind> device = parse_device_kind(args.device);
  if (!device.ok()) return report_error(device.status());
  train::TrainOptions& o = args.options;
  o.device = *device;
  if (Status s = apply_model_preset(args); !s.ok()) return report_error(s);
  if (*device == DeviceKind::kSim) {
    if (Status s = parse_sim_device(args); !s.ok()) return report_error(s);
  } else if (!args.hw.empty() || !args.device_memory.empty() || args.options.sim_ranks != 1) {
    return report_error(invalid_argument("--hw, --device-memory and --gpus are for --device sim"));
  }
  if (Status s = parse_training_names(args); !s.ok()) return report_error(s);
  // A planner's name: follow its plan after the warm-up, with dynamic eviction (both) under it.
  // "dynamic" is that dynamic eviction alone; the older names pick one dynamic policy.
  if (std::optional<PlanPolicy> planner = plan_policy_from_name(args.policy)) {
    o.plan_policy = planner;
    o.policy = EvictionPolicy::kBoth;
  } else if (args.policy == "dynamic") {
    o.policy = EvictionPolicy::kBoth;
  } else {
    Result<EvictionPolicy> policy = parse_policy(args.policy);
    if (!policy.ok()) {
      return report_error(invalid_argument(
          "--policy \"" + args.policy +
          "\" is not keep, recompute-all, sqrt, swap-all, plan, dynamic, none, swap, recompute or "
          "both"));
    }
    o.policy = *policy;
  }
  if (!(o.link_gbps >= 0) || !std::isfinite(o.link_gbps)) {
    return report_error(
        invalid_argument("--link-gbps must be 0 (unthrottled) or a positive "
                         "number of GB/s"));
  }
  if (!args.budget.empty()) {
    Result<BudgetArg> budget = parse_budget(args.budget);
    if (!budget.ok()) return report_error(budget.status());
    o.budget_bytes = budget->bytes;
    o.budget_fraction = budget->fraction;
  }
  if (!args.host_tier.empty()) {
    Result<std::size_t> bytes = parse_byte_size(args.host_tier, "--host-tier");
    if (!bytes.ok()) return report_error(bytes.status());
    o.host_tier_bytes = *bytes;
  }
  if (!args.nvme_size.empty()) {
    Result<std::size_t> bytes = parse_byte_size(args.nvme_size, "--nvme-size");
    if (!bytes.ok()) return report_error(bytes.status());
    o.nvme_tier_bytes = *bytes;
  }
  if (!args.nvme_chunk.empty()) {
    Result<std::size_t> bytes = parse_byte_size(args.nvme_chunk, "--nvme-chunk");
    if (!bytes.ok()) return report_error(bytes.status());
    o.nvme_chunk_bytes = *bytes;
  }
  if (args.zero >= 0) {
    o.zero_stage = args.zero;
    if (!(args.bucket_mb > 0)) {
      return report_error(invalid_argument("--bucket-mb must be positive"));
    }
    o.zero_bucket_bytes = static_cast<std::size_t>(args.bucket_mb * 1024 * 1024);
    if (!(args.comm_timeout_s > 0)) {
      return report_error(invalid_argument("--comm-timeout must be positive (seconds)"));
    }
    o.comm_timeout =
        std::chrono::milliseconds(static_cast<std::int64_t>(args.comm_timeout_s * 1e3));
    if (args.comm_gbps < 0 || args.comm_latency_us < 0) {
      return report_error(invalid_argument("--comm-gbps and --comm-latency-us must be >= 0"));
    }
    const std::optional<GatherPolicy> policy = gather_policy_from_name(args.gather_schedule);
    if (!policy.has_value()) {
      return report_error(invalid_argument("--gather-schedule " + args.gather_schedule +
                                           ": expected plan, jit, deepspeed or at-use"));
    }
    o.gather_policy = *policy;
    o.comm_link = {
        .bytes_per_second = args.comm_gbps * 1e9,
        .latency = std::chrono::nanoseconds(static_cast<std::int64_t>(args.comm_latency_us * 1e3))};
  }
  // Under a launcher, rank 0 speaks for the job; the others print only their errors, by rank.
  const RankEnv ranks = rank_env_from_environment();
  if (ranks.rank != 0 && o.zero_stage.has_value()) {
    if (std::freopen("/dev/null", "w", stdout) == nullptr) {
      return report_error(Status(StatusCode::kIoError,
                                 "rank " + std::to_string(ranks.rank) + ": cannot quiet stdout"));
    }
  }
  const auto failed = [&](const Status& s) {
    if (!ranks.under_launcher) return report_error(s);
    const Status named(s.code(), "rank " + std::to_string(ranks.rank) + " of " +
                                     std::to_string(ranks.size) + ": " + s.message());
    const int code = report_error(named);
    // The job ends with this rank: peers waiting in a collective are not left to their watchdog.
    if (o.zero_stage.has_value() && ranks.size > 1) {
      Result<Communicator*> comm =
          train::process_communicator(o.device, o.comm_timeout, false, o.sim_ranks);
      if (comm.ok()) (*comm)->abort(named.message());
    }
    return code;
  };
  // Removed before failed(), which may end the job, and after the report.
  std::optional<report::TemporaryProfile> temporary_profile;
  if (Status s = prepare_reports(args, temporary_profile); !s.ok()) return failed(s);
  const bool profile_only_reported = temporary_profile.has_value();
  const bool progress = !args.json && isatty(STDERR_FILENO) == 1 && ranks.rank == 0;
  if (!args.json) {
    std::printf(
        "ebb train: %d layers, d_model %d, %d heads, seq %d, batch %d, vocab %d (%lld "
        "parameters) on %s, policy %s, %s, %s\n",
        o.model.layers, o.model.d_model, o.model.heads, o.model.seq, o.model.batch, o.model.vocab,
        static_cast<long long>(train::parameter_count(o.model)), args.device.c_str(),
        args.policy.c_str(), args.precision.c_str(), args.optimizer.c_str());
  }
  // Each step is printed as it ends; the summary needs the last one only.
  o.keep_steps = false;
  Result<train::TrainResult> result = train::train(o, [&](const train::StepStats& s) {
    if (args.json) {
      std::printf("%s\n", step_json(s).dump().c_str());
    } else {
      if (progress) std::fprintf(stderr, "\r%*s\r", 60, "");
      std::printf(
          "step %4d  loss %.4f  %8.1f ms  %9.0f tok/s  peak reserved %s  swapped %s  "
          "recompute %.1f ms%s\n",
          s.step, static_cast<double>(s.loss), s.ms, s.tokens_per_s,
          format_bytes(s.peak_reserved_bytes).c_str(),
          format_bytes(static_cast<std::size_t>(s.swapped_bytes)).c_str(), s.recompute_ms,
          s.skipped ? "  (skipped: gradients overflowed)" : "");
      std::fflush(stdout);
      if (progress) draw_progress(s.step, o.steps);
    }
  });
  if (!result.ok()) {
    temporary_profile.reset();
    return failed(result.status());
  }
  const train::TrainResult& r = *result;
  const Status reported = write_reports(args, r);
  temporary_profile.reset();
  if (!reported.ok()) return failed(reported);
  const float final_loss = r.steps.back().loss;
  if (args.json) {
    nlohmann::json summary = {{"final_loss", final_loss},
                              {"simulated", r.simulated},
                              {"budget_bytes", r.budget_bytes},
                              {"peak_reserved_bytes", r.peak_reserved_bytes},
                              {"peak_live_bytes", r.peak_live_bytes},
                              {"peak_activation_bytes", r.peak_activation_bytes},
                              {"ms_per_step_median", r.ms_per_step_median},
                              {"tokens_per_s", r.tokens_per_s},
                              {"swapped_out_bytes", r.engine.swapped_out_bytes},
                              {"nvme_written_bytes", r.engine.nvme_written_bytes},
                              {"nvme_read_bytes", r.engine.nvme_read_bytes},
                              {"recomputed_ops", r.engine.recomputed_ops},
                              {"parameters_fnv1a", train::fingerprint(r.final_parameters)},
                              {"steady_peak_reserved_bytes", r.steady_peak_reserved_bytes},
                              {"steady_ms_median", r.steady_ms_median},
                              {"precision", args.precision},
                              {"optimizer", args.optimizer},
                              {"model_state", model_state_json(o, r)},
                              {"skipped_steps", r.skipped_steps},
                              {"resumed_from_step", r.resumed_from_step},
                              {"checkpoints_written", r.checkpoints_written}};
    if (r.plan.has_value()) summary["plan"] = plan_json(r);
    summary["optimizer_state"] = optimizer_state_json(o, r);
    if (o.zero_stage.has_value()) summary["zero"] = zero_json(o, r);
    std::printf("%s\n", summary.dump().c_str());
    return 0;
  }
  std::printf("final loss %.4f, peak reserved %s, peak live %s, median %.1f ms/step, %.0f tok/s\n",
              static_cast<double>(final_loss), format_bytes(r.peak_reserved_bytes).c_str(),
              format_bytes(r.peak_live_bytes).c_str(), r.ms_per_step_median, r.tokens_per_s);
  if (r.plan.has_value()) {
    const PlanPrediction& p = r.plan->predicted;
    std::printf(
        "plan %s: predicted peak reserved %s, measured %s after the warm-up; predicted step "
        "%.1f ms, measured %.1f ms; %lld planned steps, %lld diverged, %lld late prefetches, "
        "%lld fallback evictions\n",
        r.plan->policy.c_str(), format_bytes(p.peak_reserved_bytes).c_str(),
        format_bytes(r.steady_peak_reserved_bytes).c_str(), static_cast<double>(p.step_ns) / 1e6,
        r.steady_ms_median, static_cast<long long>(r.executor.planned_iterations),
        static_cast<long long>(r.executor.diverged_iterations),
        static_cast<long long>(r.executor.late_prefetches),
        static_cast<long long>(r.executor.fallback_evictions));
  } else if (o.plan_policy.has_value()) {
    std::printf("no plan was followed (dynamic eviction throughout): %s\n",
                r.executor.last_refusal.c_str());
  }
  const nlohmann::json state = model_state_json(o, r);
  std::printf("model state on the device: %.2f bytes per parameter (formula %.2f)%s\n",
              state["bytes_per_parameter"].get<double>(),
              state["formula_bytes_per_parameter"].get<double>(),
              r.skipped_steps > 0
                  ? (", " + std::to_string(r.skipped_steps) + " steps skipped for overflow").c_str()
                  : "");
  print_optimizer_state(o, r);
  if (o.zero_stage.has_value()) {
    std::printf(
        "ZeRO stage %d over %d ranks (rank 0): peak device bytes parameters %s, gradients %s, "
        "optimizer state %s, collective buffers %s; sent per rank: gradients %s, %s %s\n",
        *o.zero_stage, r.ranks,
        format_bytes(static_cast<std::size_t>(r.peak_parameter_bytes)).c_str(),
        format_bytes(static_cast<std::size_t>(r.peak_gradient_bytes)).c_str(),
        format_bytes(static_cast<std::size_t>(r.peak_optimizer_state_bytes)).c_str(),
        format_bytes(static_cast<std::size_t>(r.peak_workspace_bytes)).c_str(),
        format_bytes(static_cast<std::size_t>(r.zero.reduce_bytes)).c_str(),
        *o.zero_stage == 0 ? "gradients gathered" : "parameters gathered",
        format_bytes(static_cast<std::size_t>(r.zero.gather_bytes)).c_str());
  }
  if (!r.checkpoints_written.empty()) {
    std::printf("checkpoints written at step %d (latest) into %s\n", r.checkpoints_written.back(),
                o.checkpoint_dir.c_str());
  }
  if (!o.profile_out.empty() && !profile_only_reported)
    std::printf("profile written to %s\n", o.profile_out.c_str());
  return 0;
}

}  // namespace

// Adds the model-shape, optimizer and data options `ebb train` and `ebb demo` share.
void add_model_options(CLI::App& app, train::TrainOptions& o) {
  app.add_option("--layers", o.model.layers, "transformer blocks")->capture_default_str();
  app.add_option("--d-model", o.model.d_model, "width (channels)")->capture_default_str();
  app.add_option("--heads", o.model.heads, "attention heads (must divide --d-model)")
      ->capture_default_str();
  app.add_option("--seq", o.model.seq, "tokens per sequence")->capture_default_str();
  app.add_option("--batch", o.model.batch, "sequences per step")->capture_default_str();
  app.add_option("--vocab", o.model.vocab, "vocabulary size (at most 65535)")
      ->capture_default_str();
  app.add_option("--steps", o.steps, "training steps")->capture_default_str();
  app.add_option("--lr", o.optimizer.learning_rate,
                 "peak learning rate (default: the optimizer's own, engine/optim/optimizer.h)");
  app.add_option("--seed", o.seed, "seed of the weights and the synthetic tokens")
      ->capture_default_str();
  app.add_option("--data", o.data_path, "llm.c token file (default: synthetic tokens)");
}

Command add_train_command(CLI::App& parent) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* app = parent.add_subcommand(
      "train", "train the reference GPT-2-style model through the engine, under a budget");
  args->app = app;
  add_model_options(*app, args->options);
  app->add_option("--model", args->model,
                  "a preset shape: gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b, llama-7b-like, "
                  "llama-13b-like (the LLaMA-like ones keep this trainer's GPT-2 block: "
                  "LayerNorm, GELU MLP, learned positions); --layers, --d-model, --heads, --vocab "
                  "and --seq given beside it override its fields");
  app->add_option("--device", args->device,
                  "cpu, cuda, or sim (kernels accounted, never run: simulated step times on the "
                  "hardware of --hw; losses are NaN, null in --json)")
      ->capture_default_str();
  app->add_option("--hw", args->hw,
                  "--device sim: the hardware profile (profiles/hw/NAME.json) whose host link "
                  "the sim's copies take; its chip object, when it has one, times each kernel "
                  "(a roofline, engine/planner/cost_model.h) and gives the device's memory; "
                  "without one kernels take no simulated time");
  app->add_option("--device-memory", args->device_memory,
                  "--device sim: the device's memory in bytes (default: the chip's)");
  app->add_option("--gpus", args->options.sim_ranks,
                  "--device sim with --zero: the data-parallel GPUs one simulated rank stands for "
                  "(ranks are symmetric); collectives take the ring's time over the chip's links");
  app->add_option("--budget", args->budget,
                  "device memory budget: bytes (512MiB) or a percentage of the unconstrained "
                  "peak (50%), measured by a two-step probe run");
  app->add_option("--policy", args->policy,
                  "a planner followed after the warm-up (keep, recompute-all, sqrt, swap-all, "
                  "plan), or dynamic eviction alone (dynamic = both; none, swap, recompute)")
      ->capture_default_str();
  app->add_option("--link-gbps", args->options.link_gbps,
                  "cpu device: modelled host link, GB/s each way (default 0: unthrottled)");
  app->add_option("--profile-out", args->options.profile_out,
                  "write the warm-up profile (JSON, profiles/README.md) here");
  app->add_option("--host-tier", args->host_tier,
                  "pinned host tier for swapped tensors, in bytes (default 1GiB)");
  app->add_option("--nvme-dir", args->options.nvme_directories,
                  "NVMe tier directory below the host tier (repeat to stripe over several)");
  app->add_option("--nvme-size", args->nvme_size,
                  "bytes the NVMe tier reserves up front over its directories (default 1GiB)");
  train::TrainOptions& o = args->options;
  app->add_option("--precision", args->precision,
                  "fp32, or bf16 / fp16 with fp32 master weights (fp16 with loss scaling)")
      ->capture_default_str();
  app->add_option("--grad-dtype", args->grad_dtype,
                  "gradient buffers: fp32, or the precision's 16-bit type (the default)");
  app->add_option("--optimizer", args->optimizer, "adamw, adafactor or sm3")->capture_default_str();
  app->add_option("--weight-decay", o.optimizer.weight_decay,
                  "decoupled weight decay of the block matrices")
      ->capture_default_str();
  app->add_option("--momentum", o.optimizer.momentum, "SM3's momentum (0: off; 0.9 when on)")
      ->capture_default_str();
  app->add_flag("--relative-step", o.optimizer.relative_step,
                "Adafactor: the paper's relative step size instead of --lr's rate");
  app->add_option("--adafactor-beta1", o.optimizer.adafactor_beta1,
                  "Adafactor's first moment (0: off, the paper's default)")
      ->capture_default_str();
  app->add_option("--grad-accum", o.grad_accum, "micro-batches (of --batch each) per step")
      ->capture_default_str();
  app->add_option("--clip-grad-norm", o.clip_grad_norm,
                  "clip the global gradient norm to this (0: off)")
      ->capture_default_str();
  app->add_option("--lr-warmup", o.lr_warmup, "linear learning-rate warm-up steps")
      ->capture_default_str();
  app->add_option("--lr-min", args->lr_min,
                  "cosine decay to this rate at the last step (default: no decay)");
  app->add_option("--checkpoint-dir", o.checkpoint_dir, "where checkpoints are written and read");
  app->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: none)")
      ->capture_default_str();
  app->add_flag("--resume", o.resume,
                "continue from the latest checkpoint in --checkpoint-dir (--steps still counts "
                "from the run's start)");
  app->add_option("--init-from", o.init_from,
                  "start a fresh run (step 0, fresh optimizer state) from the weights of this "
                  "file (`ebb checkpoint export`), checked against the model");
  app->add_option("--checkpoint-at-start", o.checkpoint_at_start,
                  "also write the state the run starts from (initialized, --init-from or resumed) "
                  "as a checkpoint into this directory before the first step (with --resume: "
                  "re-sharded for this run's ranks)");
  app->add_option("--optimizer-state", args->optimizer_state,
                  "where master weights and optimizer state live: device, host (a CPU step), "
                  "nvme (streamed from --nvme-dir through the CPU step) or auto (per slice, "
                  "planned to fit --budget)")
      ->capture_default_str();
  app->add_flag("--delayed-update", o.delayed_update,
                "host/nvme: overlap the CPU step with the next forward and backward, on "
                "parameters one update stale (ZeRO-Offload's DPU; changes the results)");
  app->add_option("--nvme-chunk", args->nvme_chunk,
                  "bytes of state per NVMe stream chunk (default: the tier's queue depth x block, "
                  "at least 4MiB)");
  app->add_option("--zero", args->zero,
                  "ZeRO data parallelism over the ranks of mpirun: stage 0 (data parallel), 1 "
                  "(optimizer state partitioned), 2 (and gradients) or 3 (and parameters, "
                  "gathered on a communication stream as the plan schedules)");
  app->add_option("--bucket-mb", args->bucket_mb,
                  "ZeRO: MiB of gradients reduced by one collective op (consecutive slices)")
      ->capture_default_str();
  app->add_option("--comm-timeout", args->comm_timeout_s,
                  "ZeRO: seconds a collective waits for its peers before the job ends")
      ->capture_default_str();
  app->add_option("--gather-schedule", args->gather_schedule,
                  "ZeRO stage 3: when parameters are gathered: plan (the planner's schedule "
                  "under the budget), jit (just before each layer's use), deepspeed (DeepSpeed's "
                  "default prefetch window) or at-use (by its first use, released when an op reads "
                  "another block)")
      ->capture_default_str();
  app->add_option("--comm-gbps", args->comm_gbps,
                  "ZeRO on cpu ranks: a modelled link, GB/s each collective's payload takes (0: "
                  "none)");
  app->add_option("--comm-latency-us", args->comm_latency_us,
                  "ZeRO on cpu ranks: the modelled link's latency per collective, microseconds");
  app->add_option("--inject-exit-step", args->options.inject_exit_step,
                  "testing: a rank exits at the start of this step (0: never)")
      ->group("");
  app->add_option("--inject-exit-rank", args->options.inject_exit_rank,
                  "testing: the rank --inject-exit-step ends")
      ->group("");
  app->add_flag("--json", args->json, "one JSON object per step, then a summary object");
  app->add_option("--report", args->reports.html,
                  "at the end, write an HTML report of the run here (tools/report/)");
  app->add_option("--chrome-trace", args->reports.chrome_trace,
                  "at the end, write the run's timeline as Chrome trace JSON here");
  return {app, [args] { return run_train(*args); }};
}

}  // namespace ebb::cli
