// `ebb plan --model M --hw FILE --gpus N ...`: will this model train on N of this chip, with
// which ZeRO stage, policy and micro-batch, and how fast (tools/config_plan.h). --search tries
// the configurations around the one given and prints the fastest that fit; --compare-hw does
// that on every chip of profiles/hw/ and prints one line per chip.
#include "tools/plan_config_command.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/schema/chip_spec.h"
#include "engine/schema/hardware_model.h"
#include "tools/commands.h"
#include "tools/config_plan.h"
#include "tools/report/run_reports.h"
#include "tools/train/gpt_config.h"

namespace ebb::cli {
namespace {

constexpr std::size_t kShownConfigurations = 5;
// How far "what would fit" doubles the GPUs.
constexpr int kMostGpus = 1024;

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

std::string stage_text(const ConfigQuery& q) {
  if (!q.zero_stage.has_value()) return q.gpus > 1 ? "zero 0" : "no zero";
  return "zero " + std::to_string(*q.zero_stage);
}

nlohmann::ordered_json answer_json(const ConfigAnswer& a) {
  const ConfigQuery& q = a.query;
  nlohmann::ordered_json j;
  j["gpus"] = q.gpus;
  j["zero_stage"] = q.zero_stage.has_value() ? nlohmann::ordered_json(*q.zero_stage)
                                             : nlohmann::ordered_json(nullptr);
  j["policy"] = q.policy;
  j["micro_batch"] = q.model.batch;
  j["grad_accum"] = q.grad_accum;
  j["global_batch"] = global_batch(q);
  j["seq"] = q.model.seq;
  j["precision"] = std::string(precision_name(q.precision));
  j["optimizer_state"] = std::string(state_policy_name(q.optimizer_state));
  j["fits"] = a.fits;
  j["budget_bytes"] = a.budget_bytes;
  if (!a.fits) {
    j["why_not"] = a.why_not;
    return j;
  }
  j["peak_bytes"] = {{"parameters", a.parameter_bytes},
                     {"gradients", a.gradient_bytes},
                     {"optimizer_state", a.optimizer_state_bytes},
                     {"activations", a.activation_bytes},
                     {"communication_buffers", a.communication_bytes},
                     {"fragmentation", a.fragmentation_bytes},
                     {"reserved", a.peak_reserved_bytes},
                     {"live", a.peak_live_bytes}};
  j["state_placement"] = {{"device_slices", a.device_state_slices},
                          {"host_slices", a.host_state_slices},
                          {"nvme_slices", a.nvme_state_slices},
                          {"host_bytes", a.host_state_bytes},
                          {"nvme_bytes", a.nvme_state_bytes}};
  j["plan"] = {{"planned", a.planned},
               {"swapped_tensors", a.swapped_tensors},
               {"recomputed_tensors", a.recomputed_tensors},
               {"gathers_per_step", a.gathers_per_step}};
  if (!a.plan_refused.empty()) j["plan"]["refused"] = a.plan_refused;
  j["step_ms"] = a.step_ms;
  j["step_parts_ms"] = {{"compute", a.compute_ms},
                        {"recompute", a.recompute_ms},
                        {"exposed_transfers_and_communication", a.exposed_transfer_and_comm_ms},
                        {"exposed_transfers", a.exposed_transfer_ms},
                        {"exposed_communication", a.exposed_communication_ms},
                        {"exposed_gathers", a.exposed_gather_ms},
                        {"host_optimizer_step", a.host_step_ms}};
  j["tokens_per_s"] = a.tokens_per_s;
  j["model_flops_per_token"] = a.model_flops_per_token;
  j["mfu"] = a.mfu;
  return j;
}

void print_answer(const ConfigAnswer& a) {
  const ConfigQuery& q = a.query;
  std::printf(
      "  %d GPU(s), %s, policy %s, optimizer state on %s, micro-batch %d x %d accumulations "
      "(global %lld x %d tokens), %s\n",
      q.gpus, stage_text(q).c_str(), q.policy.c_str(),
      std::string(state_policy_name(q.optimizer_state)).c_str(), q.model.batch, q.grad_accum,
      global_batch(q), q.model.seq, std::string(precision_name(q.precision)).c_str());
  if (!a.fits) {
    std::printf("    does not fit in %s: %s\n", gib(static_cast<double>(a.budget_bytes)).c_str(),
                a.why_not.c_str());
    return;
  }
  std::printf(
      "    peak per GPU %s of %s: parameters %s, gradients %s, optimizer state %s, "
      "activations %s, communication %s, fragmentation %s\n",
      gib(static_cast<double>(a.peak_reserved_bytes)).c_str(),
      gib(static_cast<double>(a.budget_bytes)).c_str(),
      gib(static_cast<double>(a.parameter_bytes)).c_str(),
      gib(static_cast<double>(a.gradient_bytes)).c_str(),
      gib(static_cast<double>(a.optimizer_state_bytes)).c_str(),
      gib(static_cast<double>(a.activation_bytes)).c_str(),
      gib(static_cast<double>(a.communication_bytes)).c_str(),
      gib(static_cast<double>(a.fragmentation_bytes)).c_str());
  if (a.host_state_slices + a.nvme_state_slices > 0) {
    std::printf(
        "    state slices: %d on the device, %d on the host (%s), %d on NVMe (%s); CPU step "
        "%.1f ms\n",
        a.device_state_slices, a.host_state_slices,
        gib(static_cast<double>(a.host_state_bytes)).c_str(), a.nvme_state_slices,
        gib(static_cast<double>(a.nvme_state_bytes)).c_str(), a.host_step_ms);
  }
  std::printf(
      "    step %.1f ms (compute %.1f, recompute %.1f, exposed transfers %.1f, exposed "
      "communication %.1f), %.0f tokens/s, MFU %.1f%%%s\n",
      a.step_ms, a.compute_ms, a.recompute_ms, a.exposed_transfer_ms, a.exposed_communication_ms,
      a.tokens_per_s, a.mfu * 100,
      a.planned ? "" : (q.policy == "keep" ? "" : " (no plan fits: dynamic eviction)"));
}

Result<std::pair<ChipSpec, HardwareModel>> read_chip(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(HardwareModel hw, read_hardware_model(path));
  Result<ChipSpec> chip = read_chip_spec(path);
  if (!chip.ok()) {
    return invalid_argument("--hw " + path + ": planning a configuration needs the chip object (" +
                            chip.status().message() + ")");
  }
  return std::make_pair(*chip, hw);
}

Result<ConfigQuery> query_of(const ConfigArgs& args) {
  ConfigQuery q;
  EBB_ASSIGN_OR_RETURN(train::ModelPreset preset, train::find_model_preset(args.model));
  train::ShapeOverrides given;
  if (args.seq > 0) given.seq = args.seq;
  q.model = train::apply_preset(preset, train::GptConfig{}, given);
  if (args.micro_batch < 1) {
    return invalid_argument("--micro-batch " + std::to_string(args.micro_batch) + ": at least 1");
  }
  if (args.gpus < 1)
    return invalid_argument("--gpus " + std::to_string(args.gpus) + ": at least 1");
  q.model.batch = args.micro_batch;
  q.gpus = args.gpus;
  q.grad_accum = args.grad_accum;
  if (args.global_batch > 0) {
    // The global batch's micro-batches are shared by the GPUs: each needs at least one.
    const long long micro_batches = args.global_batch / args.micro_batch;
    if (args.global_batch % args.micro_batch != 0 || micro_batches < args.gpus ||
        micro_batches % args.gpus != 0) {
      return invalid_argument(
          "--global-batch " + std::to_string(args.global_batch) + " has " +
          std::to_string(micro_batches) + " micro-batches of --micro-batch " +
          std::to_string(args.micro_batch) + ", which " +
          (micro_batches < args.gpus
               ? "is fewer than --gpus " + std::to_string(args.gpus)
               : "do not split evenly over --gpus " + std::to_string(args.gpus)) +
          ": every GPU needs the same whole number of micro-batches");
    }
    q.grad_accum = static_cast<int>(micro_batches / args.gpus);
  }
  if (q.grad_accum < 1) {
    return invalid_argument("--grad-accum " + std::to_string(q.grad_accum) + ": at least 1");
  }
  if (args.zero >= 0) q.zero_stage = args.zero;
  std::optional<Precision> p = precision_from_name(args.precision);
  if (!p.has_value()) {
    return invalid_argument("--precision " + args.precision + ": fp32 or bf16");
  }
  q.precision = *p;
  q.policy = args.policy;
  if (!args.budget.empty()) {
    EBB_ASSIGN_OR_RETURN(q.budget_bytes, parse_byte_size(args.budget, "--budget"));
  }
  if (!args.optimizer_state.empty()) {
    std::optional<StatePolicy> state = state_policy_from_name(args.optimizer_state);
    if (!state.has_value()) {
      return invalid_argument("--optimizer-state " + args.optimizer_state +
                              ": device, host, nvme or auto");
    }
    q.optimizer_state = *state;
  }
  if (!args.host_memory.empty()) {
    EBB_ASSIGN_OR_RETURN(q.host_memory_bytes, parse_byte_size(args.host_memory, "--host-memory"));
  }
  // --nvme-bandwidth is checked with the rest of the query (plan_configuration).
  q.nvme_bytes_per_s = args.nvme_gbps * 1e9;
  return q;
}

// --report, --chrome-trace: the configuration `answer` simulated once more, with its warm-up
// profile written to a temporary file (removed after), reported as `ebb train --report` reports a
// run: the profile, the plan the engine followed, and the simulated steps.
Status write_config_reports(const ConfigAnswer& answer, const ChipSpec& chip,
                            const HardwareModel& hardware, const report::ReportPaths& paths) {
  if (paths.empty()) return ok_status();
  if (!answer.fits) {
    return failed_precondition(
        "--report: no configuration fits, so none ran to report (a smaller model or more GPUs)");
  }
  train::TrainOptions o = train_options_of(answer.query, chip, hardware);
  const report::TemporaryProfile profile("plan");
  o.profile_out = profile.path();
  EBB_ASSIGN_OR_RETURN(train::TrainResult run, train::train(o));
  return report::write_train_reports(profile.path(), run, paths);
}

}  // namespace

int run_plan_config(const ConfigArgs& args) {
  Result<ConfigQuery> query = query_of(args);
  if (!query.ok()) return report_error(query.status());
  if (Status s = report::check_report_paths(args.reports); !s.ok()) return report_error(s);
  nlohmann::ordered_json out;
  out["model"] = args.model;
  out["parameters"] = train::parameter_count(query->model);
  if (args.compare_hw) {
    // Every chip of the directory, the best configuration that fits on N of it.
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(args.hw_dir, ec)) {
      if (entry.path().extension() == ".json") files.push_back(entry.path().string());
    }
    if (ec) {
      return report_error(not_found("--hw-dir " + args.hw_dir + ": " + ec.message()));
    }
    std::sort(files.begin(), files.end());
    if (!args.json) {
      std::printf("%s (%lld parameters) on %d GPUs of each chip, global batch %lld x %d tokens:\n",
                  args.model.c_str(), static_cast<long long>(train::parameter_count(query->model)),
                  query->gpus, global_batch(*query), query->model.seq);
      std::printf("%-16s %-58s %14s %7s\n", "chip", "best configuration", "tokens/s", "MFU");
    }
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const std::string& file : files) {
      // A profile without a chip object (a host link only) is not a chip to compare; a chip
      // object with a bad figure is an error, not a chip left out.
      Result<std::optional<ChipSpec>> has_chip = read_chip_spec_if_any(file);
      if (!has_chip.ok()) return report_error(has_chip.status());
      if (!has_chip->has_value()) continue;
      const ChipSpec& chip = **has_chip;
      Result<HardwareModel> link = read_hardware_model(file);
      if (!link.ok()) return report_error(link.status());
      Result<std::vector<ConfigAnswer>> found = search_configurations(*query, chip, *link);
      if (!found.ok()) return report_error(found.status());
      nlohmann::ordered_json row;
      row["chip"] = chip.name;
      ConfigAnswer& best = found->front();
      if (Status s = split_step_parts(best, chip, *link); !s.ok()) return report_error(s);
      row["best"] = answer_json(best);
      rows.push_back(row);
      if (args.json) continue;
      if (!best.fits) {
        std::printf("%-16s %-58s %14s %7s\n", chip.name.c_str(), "nothing fits", "-", "-");
        continue;
      }
      char config[96];
      std::snprintf(config, sizeof config, "%s, %s, state on %s, micro-batch %d x %d",
                    stage_text(best.query).c_str(), best.query.policy.c_str(),
                    std::string(state_policy_name(best.query.optimizer_state)).c_str(),
                    best.query.model.batch, best.query.grad_accum);
      std::printf("%-16s %-58s %14.0f %6.1f%%\n", chip.name.c_str(), config, best.tokens_per_s,
                  best.mfu * 100);
    }
    if (args.json) {
      out["compare_hw"] = rows;
      std::printf("%s\n", out.dump().c_str());
    }
    return 0;
  }
  if (args.hw_file.empty()) {
    return report_error(invalid_argument(
        "ebb plan --model needs --hw FILE, a hardware profile with a chip object (profiles/hw/)"));
  }
  Result<std::pair<ChipSpec, HardwareModel>> hw = read_chip(args.hw_file);
  if (!hw.ok()) return report_error(hw.status());
  out["chip"] = hw->first.name;
  if (args.search) {
    Result<std::vector<ConfigAnswer>> found = search_configurations(*query, hw->first, hw->second);
    if (!found.ok()) return report_error(found.status());
    for (std::size_t i = 0; i < std::min(found->size(), kShownConfigurations); ++i) {
      if (Status s = split_step_parts((*found)[i], hw->first, hw->second); !s.ok()) {
        return report_error(s);
      }
    }
    if (Status s = write_config_reports(found->front(), hw->first, hw->second, args.reports);
        !s.ok()) {
      return report_error(s);
    }
    if (args.json) {
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const ConfigAnswer& a : *found) list.push_back(answer_json(a));
      out["search"] = list;
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    const auto fitting = static_cast<std::size_t>(
        std::count_if(found->begin(), found->end(), [](const ConfigAnswer& a) { return a.fits; }));
    std::printf("%s on %d x %s: %zu of %zu configurations fit; the fastest:\n", args.model.c_str(),
                query->gpus, hw->first.name.c_str(), fitting, found->size());
    for (std::size_t i = 0; i < std::min(fitting, kShownConfigurations); ++i) {
      print_answer((*found)[i]);
    }
    return fitting > 0 ? 0 : 1;
  }
  Result<ConfigAnswer> answer = plan_configuration(*query, hw->first, hw->second);
  if (!answer.ok()) return report_error(answer.status());
  if (Status s = split_step_parts(*answer, hw->first, hw->second); !s.ok()) return report_error(s);
  nlohmann::ordered_json j = answer_json(*answer);
  // Not an error: the answer, and what would fit: the fastest configuration nearby on these
  // GPUs, else the fewest GPUs that hold it.
  std::optional<ConfigAnswer> would_fit;
  if (!answer->fits) {
    Result<std::vector<ConfigAnswer>> found = search_configurations(*query, hw->first, hw->second);
    if (!found.ok()) return report_error(found.status());
    if (found->front().fits) {
      would_fit = found->front();
    } else {
      Result<std::optional<ConfigAnswer>> more =
          fewest_gpus_that_fit(*query, hw->first, hw->second, kMostGpus);
      if (!more.ok()) return report_error(more.status());
      would_fit = *more;
    }
    if (would_fit.has_value()) {
      if (Status s = split_step_parts(*would_fit, hw->first, hw->second); !s.ok()) {
        return report_error(s);
      }
      j["would_fit"] = answer_json(*would_fit);
    }
  }
  if (Status s = write_config_reports(answer->fits ? *answer : would_fit.value_or(*answer),
                                      hw->first, hw->second, args.reports);
      !s.ok()) {
    return report_error(s);
  }
  if (args.json) {
    out["configuration"] = j;
    std::printf("%s\n", out.dump().c_str());
    return answer->fits ? 0 : 1;
  }
  std::printf("%s (%lld parameters) on %d x %s:\n", args.model.c_str(),
              static_cast<long long>(train::parameter_count(query->model)), query->gpus,
              hw->first.name.c_str());
  print_answer(*answer);
  if (!answer->fits) {
    if (would_fit.has_value()) {
      std::printf("what would fit:\n");
      print_answer(*would_fit);
    } else {
      std::printf(
          "nothing fits on up to %d GPUs with ZeRO stage 3: a shorter sequence or a "
          "smaller micro-batch\n",
          kMostGpus);
    }
  }
  return answer->fits ? 0 : 1;
}

}  // namespace ebb::cli
