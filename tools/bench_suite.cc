// `ebb bench suite` (tools/bench_suite.h): the matrix, its CSV, JSON and SVG plots.
#include "tools/bench_suite.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "engine/planner/planner.h"
#include "engine/runtime/engine_options.h"
#include "engine/schema/atomic_file.h"
#include "engine/schema/profile.h"
#include "kernels/statistics.h"
#include "tools/commands.h"
#include "tools/plan_eval.h"
#include "tools/svg_plot.h"
#include "tools/train/trainer.h"

namespace ebb::cli {
namespace {

constexpr std::size_t kBudgetCount = std::size(kSuiteBudgetPercents);
constexpr std::size_t kPolicyCount = std::size(kSuitePolicies);

// A workload: a profile (or DTR log) run on the sim device, or the reference trainer run on a
// real one. Its cells' budgets are percentages of peak_bytes and their slowdowns are over base_s.
struct SuiteWorkload {
  std::string name;    // the file's name (the trainer: its shape), made unique within the suite
  std::string path;    // the file; empty for the trainer
  std::string device;  // where its cells run: sim for a profile, the suite's device for the trainer
  std::size_t ops = 0;         // ops per iteration (the trainer: per step)
  std::size_t peak_bytes = 0;  // profile: its peak live bytes; trainer: the unconstrained run's
                               // peak reserved bytes (what `ebb train --budget P%` takes P% of)
  double base_s = 0;           // profile: the sum of its op times; trainer: the unconstrained run's
                               // measured steady-state step (median)
  std::optional<Profile> profile;
  std::optional<train::TrainOptions> trainer;  // unconstrained; a cell sets budget and policy
  std::vector<float> reference_parameters;     // the trainer's, after the unconstrained run
};

// One cell of the matrix. status is "ok", "out of memory" (the policy cannot fit the budget),
// "thrashed" (past the thrash limit), "plan refused" (the trainer: the engine refused the
// planner's plan and fell back to dynamic eviction, so the policy did not run) or "failed" (any
// other error); reason is the error's text.
struct SuiteCell {
  std::size_t workload = 0;  // index into the workloads
  int budget_percent = 0;
  std::size_t budget_bytes = 0;
  std::string policy;
  std::string status;
  std::string reason;
  double slowdown = 0;                // step / the workload's base_s
  double extra_compute_fraction = 0;  // recompute time / the workload's base_s
  double step_s = 0;                  // simulated (profile) or measured (trainer, median)
  std::size_t peak_reserved_bytes = 0;
  // Per iteration: a profile's one; the trainer's mean over its steps.
  std::int64_t swapped_bytes = 0;  // out + in
  std::int64_t evictions = 0;
  std::int64_t recomputed_ops = 0;
  std::optional<bool> bitwise;  // trainer: final parameters bit for bit the unconstrained run's
  double wall_s = 0;            // this machine's time running the cell
};

// The bundled workloads: the small mlp4 step as a DTR log and as a profile JSON (both formats the
// suite reads) for --quick; the full run adds the DTR logs README's figures use (unet, resnet32,
// lstm), where they are present.
std::vector<std::string> bundled_workloads(const BenchSuiteOptions& options) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths = {options.profiles_dir + "/workloads/mlp4_train.dtr.log",
                                    options.profiles_dir + "/workloads/mlp4_train.profile.json"};
  if (options.quick) return paths;
  for (const char* log : {"unet.log", "resnet32.log", "lstm.log"}) {
    const std::string path = options.dtr_logs_dir + "/" + log;
    std::error_code ec;
    if (!options.dtr_logs_dir.empty() && fs::is_regular_file(path, ec)) {
      paths.push_back(path);
    } else {
      std::fprintf(stderr, "ebb bench suite: %s not found, not in the matrix\n", path.c_str());
    }
  }
  return paths;
}

// `name`, or name#2, name#3... where another workload already has it.
std::string unique_name(const std::string& name, const std::vector<SuiteWorkload>& workloads) {
  std::string unique = name;
  for (int n = 2; std::any_of(workloads.begin(), workloads.end(),
                              [&](const SuiteWorkload& o) { return o.name == unique; });
       ++n) {
    unique = name + "#" + std::to_string(n);
  }
  return unique;
}

// Appends the profiles and DTR logs at `paths` to `workloads`.
Status load_workloads(const std::vector<std::string>& paths,
                      std::vector<SuiteWorkload>& workloads) {
  for (const std::string& path : paths) {
    Result<Profile> profile = load_profile_or_dtr_log(path);
    if (!profile.ok()) {
      return Status(profile.status().code(),
                    "--workload " + path + ": " + profile.status().message());
    }
    SuiteWorkload w;
    w.path = path;
    w.device = "sim";
    w.name = unique_name(std::filesystem::path(path).filename().string(), workloads);
    const ProfileFigures figures = profile_figures(*profile);
    if (figures.peak_live_bytes == 0 || figures.total_op_time_ns <= 0) {
      return invalid_argument("--workload " + path + ": no live bytes or no op time to run");
    }
    w.ops = profile->ops.size();
    w.peak_bytes = figures.peak_live_bytes;
    w.base_s = static_cast<double>(figures.total_op_time_ns) * 1e-9;
    w.profile = std::move(*profile);
    workloads.push_back(std::move(w));
  }
  return ok_status();
}

// The reference trainer on a real device: small enough that its 42 cells take about a minute
// here (--quick: seconds), large enough that its ops take measurable time. Two warm-up steps,
// the plan made at their end, then the steady steps (3, --quick; 7) whose median is the cell's
// step time.
train::TrainOptions suite_trainer_options(DeviceKind device, bool quick, double link_gbps) {
  train::TrainOptions o;
  o.device = device;
  o.model =
      quick ? train::GptConfig{.layers = 2,
                               .d_model = 64,
                               .heads = 4,
                               .seq = 64,
                               .batch = 4,
                               .vocab = 256}
            : train::GptConfig{
                  .layers = 4, .d_model = 128, .heads = 4, .seq = 128, .batch = 8, .vocab = 256};
  o.steps = quick ? 6 : 10;
  // The cpu device's host link is modelled (as the sim's is); a GPU's is its own.
  if (device == DeviceKind::kCpu) o.link_gbps = link_gbps;
  return o;
}

// The trainer's workload: its unconstrained run, measured.
Result<SuiteWorkload> trainer_workload(DeviceKind device, const BenchSuiteOptions& options) {
  SuiteWorkload w;
  w.device = options.device;
  w.trainer = suite_trainer_options(device, options.quick, options.link_gbps);
  const train::GptConfig& m = w.trainer->model;
  w.name = "gpt-" + std::to_string(m.layers) + "x" + std::to_string(m.d_model) + "-b" +
           std::to_string(m.batch) + "t" + std::to_string(m.seq);
  // Twice: the first run pays the process's first touches (the device's pages, the kernels'
  // thread pool), which no cell pays after it; the second is the reference.
  Result<train::TrainResult> run = train::train(*w.trainer);
  if (run.ok()) run = train::train(*w.trainer);
  if (!run.ok()) {
    return Status(run.status().code(),
                  "the trainer's unconstrained run (" + w.name + "): " + run.status().message());
  }
  if (!(run->steady_ms_median > 0) || run->peak_reserved_bytes == 0) {
    return Status(StatusCode::kInternal,
                  "the trainer's unconstrained run (" + w.name + ") measured no steady step");
  }
  w.ops = static_cast<std::size_t>(run->engine.ops_run / w.trainer->steps);
  w.peak_bytes = run->peak_reserved_bytes;
  w.base_s = run->steady_ms_median * 1e-3;
  w.reference_parameters = std::move(run->final_parameters);
  return w;
}

// DIR exists (made if missing) and takes a file, before any cell runs.
Status prepare_out_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(StatusCode::kIoError, "--out " + dir + ": " + ec.message());
  const std::string probe = dir + "/.ebb-bench-suite-probe";
  Status written = write_file_atomically(probe, "");
  if (!written.ok()) {
    return Status(written.code(), "--out " + dir + " is not writable: " + written.message());
  }
  std::filesystem::remove(probe, ec);
  return ok_status();
}

// A cell's budget: `percent` of the workload's peak bytes, rounded down, at least a byte.
std::size_t cell_budget_bytes(const SuiteWorkload& w, int percent) {
  return std::max<std::size_t>(
      1, static_cast<std::size_t>(std::floor(static_cast<double>(w.peak_bytes) * percent / 100.0)));
}

// A failed run's status: the budget does not fit, the thrash limit, or anything else.
void set_failure(SuiteCell& cell, const Status& status) {
  cell.status = is_thrash_error(status)                     ? "thrashed"
                : status.code() == StatusCode::kOutOfMemory ? "out of memory"
                                                            : "failed";
  cell.reason = status.message();
}

SuiteCell run_profile_cell(const SuiteWorkload& w, int percent, const char* policy,
                           const HardwareModel& hardware, double max_overhead) {
  SuiteCell cell;
  cell.budget_percent = percent;
  cell.policy = policy;
  cell.budget_bytes = cell_budget_bytes(w, percent);
  const auto start = std::chrono::steady_clock::now();
  Result<Evaluation> e =
      evaluate_policy(*w.profile, policy, cell.budget_bytes, hardware, true, max_overhead);
  cell.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!e.ok()) {
    set_failure(cell, e.status());
    return cell;
  }
  const SimulationResult& r = e->sim;
  cell.status = "ok";
  cell.step_s = std::chrono::duration<double>(r.simulated).count();
  cell.slowdown = cell.step_s / w.base_s;
  cell.extra_compute_fraction = static_cast<double>(r.stats.recompute_ns) * 1e-9 / w.base_s;
  cell.peak_reserved_bytes = r.peak_reserved_bytes;
  cell.swapped_bytes = r.stats.swapped_out_bytes + r.stats.swapped_in_bytes;
  cell.evictions = r.stats.evictions;
  cell.recomputed_ops = r.stats.recomputed_ops;
  return cell;
}

// One training run of the trainer under the cell's budget and policy: a planner's name follows
// its plan after the warm-up with dynamic eviction (recompute and swap) under it, as `ebb train
// --policy NAME` does, except keep, which evicts nothing (as on the sim device); "dynamic" is
// that dynamic eviction alone. The engine's thrash limit is the suite's.
SuiteCell run_trainer_cell(const SuiteWorkload& w, int percent, const char* policy,
                           double max_overhead) {
  SuiteCell cell;
  cell.budget_percent = percent;
  cell.policy = policy;
  cell.budget_bytes = cell_budget_bytes(w, percent);
  train::TrainOptions o = *w.trainer;
  o.budget_bytes = cell.budget_bytes;
  o.plan_policy = plan_policy_from_name(policy);
  o.policy = o.plan_policy == PlanPolicy::kKeep ? EvictionPolicy::kNone : EvictionPolicy::kBoth;
  o.max_recompute_overhead = max_overhead;
  if (const std::size_t floor = train::minimum_budget_bytes(o); cell.budget_bytes < floor) {
    cell.status = "out of memory";
    cell.reason = "the budget is below the " + std::to_string(floor) +
                  " B one step needs at once (its largest op's working set and the model state)";
    return cell;
  }
  const auto start = std::chrono::steady_clock::now();
  Result<train::TrainResult> r = train::train(o);
  cell.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!r.ok()) {
    set_failure(cell, r.status());
    return cell;
  }
  // A planner whose plan the engine refused (infeasible at the budget, or not what the step
  // did) left the run to dynamic eviction: what ran is not the policy.
  if (o.plan_policy.has_value() && r->executor.planned_iterations == 0) {
    cell.status = "plan refused";
    cell.reason =
        r->executor.last_refusal.empty() ? "no step followed the plan" : r->executor.last_refusal;
    return cell;
  }
  // The steady steps: those after the warm-up and the step the plan was made in.
  std::vector<double> recompute_ms;
  for (const train::StepStats& st : r->steps) {
    if (st.step > o.warmup_iterations + 1) recompute_ms.push_back(st.recompute_ms);
  }
  cell.step_s = r->steady_ms_median * 1e-3;
  cell.slowdown = cell.step_s / w.base_s;
  cell.extra_compute_fraction =
      recompute_ms.empty() ? 0 : median(std::move(recompute_ms)) * 1e-3 / w.base_s;
  cell.peak_reserved_bytes = r->peak_reserved_bytes;
  const std::int64_t steps = o.steps;
  cell.swapped_bytes = (r->engine.swapped_out_bytes + r->engine.swapped_in_bytes) / steps;
  cell.evictions = r->engine.evictions / steps;
  cell.recomputed_ops = r->engine.recomputed_ops / steps;
  cell.bitwise = r->final_parameters.size() == w.reference_parameters.size() &&
                 std::memcmp(r->final_parameters.data(), w.reference_parameters.data(),
                             r->final_parameters.size() * sizeof(float)) == 0;
  cell.status = "ok";
  return cell;
}

SuiteCell run_cell(const SuiteWorkload& w, int percent, const char* policy,
                   const HardwareModel& hardware, double max_overhead) {
  return w.profile.has_value() ? run_profile_cell(w, percent, policy, hardware, max_overhead)
                               : run_trainer_cell(w, percent, policy, max_overhead);
}

// A terminal gets one bar redrawn in place; anything else one line per cell.
void report_progress(bool terminal, std::size_t done, std::size_t total, const SuiteWorkload& w,
                     const SuiteCell& c) {
  if (terminal) {
    constexpr int kBarWidth = 30;
    const int filled = static_cast<int>(kBarWidth * done / total);
    std::printf("\r[%s%s] %zu/%zu %-16.16s %3d%% %-13s", std::string(filled, '#').c_str(),
                std::string(kBarWidth - filled, '.').c_str(), done, total, w.name.c_str(),
                c.budget_percent, c.policy.c_str());
    if (done == total) std::printf("\n");
  } else if (c.status == "ok") {
    std::printf(
        "[%zu/%zu] %s %d%% %s: ok, step %.3fx the unconstrained, extra compute %.3f%s (%.2f s)\n",
        done, total, w.name.c_str(), c.budget_percent, c.policy.c_str(), c.slowdown,
        c.extra_compute_fraction,
        !c.bitwise.has_value() ? ""
        : *c.bitwise           ? ", bitwise identical"
                               : ", NOT bitwise identical",
        c.wall_s);
  } else {
    std::printf("[%zu/%zu] %s %d%% %s: %s (%.2f s)\n", done, total, w.name.c_str(),
                c.budget_percent, c.policy.c_str(), c.status.c_str(), c.wall_s);
  }
  std::fflush(stdout);
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string format_double(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

std::string results_csv(const std::vector<SuiteWorkload>& workloads,
                        const std::vector<SuiteCell>& cells) {
  std::string csv =
      "workload,device,ops,peak_bytes,base_step_s,budget_percent,budget_bytes,policy,status,"
      "slowdown,extra_compute_fraction,step_s,peak_reserved_bytes,swapped_bytes,evictions,"
      "recomputed_ops,bitwise,wall_s,reason\n";
  for (const SuiteCell& c : cells) {
    const SuiteWorkload& w = workloads[c.workload];
    const bool ok = c.status == "ok";
    auto figure = [&](const std::string& text) { return ok ? text : std::string(); };
    const std::string bitwise = !c.bitwise.has_value() ? "" : *c.bitwise ? "yes" : "no";
    csv += csv_field(w.name) + "," + w.device + "," + std::to_string(w.ops) + "," +
           std::to_string(w.peak_bytes) + "," + format_double(w.base_s) + "," +
           std::to_string(c.budget_percent) + "," + std::to_string(c.budget_bytes) + "," +
           c.policy + "," + csv_field(c.status) + "," + figure(format_double(c.slowdown)) + "," +
           figure(format_double(c.extra_compute_fraction)) + "," + figure(format_double(c.step_s)) +
           "," + figure(std::to_string(c.peak_reserved_bytes)) + "," +
           figure(std::to_string(c.swapped_bytes)) + "," + figure(std::to_string(c.evictions)) +
           "," + figure(std::to_string(c.recomputed_ops)) + "," + figure(bitwise) + "," +
           format_double(c.wall_s) + "," + csv_field(c.reason) + "\n";
  }
  return csv;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

std::string results_json(const BenchSuiteOptions& options, const HardwareModel& hardware,
                         const std::string& started, const std::vector<SuiteWorkload>& workloads,
                         const std::vector<SuiteCell>& cells) {
  nlohmann::ordered_json out;
  out["started_utc"] = started;
  out["host"] = host_name();
  out["cpus"] = std::thread::hardware_concurrency();
  out["device"] = options.device;
  out["hardware"] = hardware.name;
  out["host_to_device_gbps"] = hardware.host_to_device_bytes_per_s * 1e-9;
  out["max_overhead"] = options.max_overhead;
  out["quick"] = options.quick;
  out["budget_percents"] = kSuiteBudgetPercents;
  nlohmann::ordered_json policies = nlohmann::ordered_json::array();
  for (const char* p : kSuitePolicies) policies.push_back(p);
  out["policies"] = policies;
  nlohmann::ordered_json ws = nlohmann::ordered_json::array();
  for (const SuiteWorkload& w : workloads) {
    ws.push_back({{"name", w.name},
                  {"path", w.path},
                  {"device", w.device},
                  {"ops", w.ops},
                  {"peak_bytes", w.peak_bytes},
                  {"peak_bytes_are", w.profile.has_value() ? "peak live bytes of the profile"
                                                           : "peak reserved bytes, unconstrained"},
                  {"base_step_s", w.base_s}});
  }
  out["workloads"] = ws;
  nlohmann::ordered_json cs = nlohmann::ordered_json::array();
  for (const SuiteCell& c : cells) {
    nlohmann::ordered_json j;
    j["workload"] = workloads[c.workload].name;
    j["budget_percent"] = c.budget_percent;
    j["budget_bytes"] = c.budget_bytes;
    j["policy"] = c.policy;
    j["status"] = c.status;
    if (c.status == "ok") {
      j["slowdown"] = c.slowdown;
      j["extra_compute_fraction"] = c.extra_compute_fraction;
      j["step_s"] = c.step_s;
      j["peak_reserved_bytes"] = c.peak_reserved_bytes;
      j["swapped_bytes"] = c.swapped_bytes;
      j["evictions"] = c.evictions;
      j["recomputed_ops"] = c.recomputed_ops;
      if (c.bitwise.has_value()) j["bitwise"] = *c.bitwise;
    } else {
      j["reason"] = c.reason;
    }
    j["wall_s"] = c.wall_s;
    cs.push_back(std::move(j));
  }
  out["cells"] = cs;
  return out.dump(2) + "\n";
}

std::string plot_file_name(const std::string& workload) {
  std::string name = workload;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  return name + ".svg";
}

std::string workload_plot(const SuiteWorkload& w, std::size_t index,
                          const std::vector<SuiteCell>& cells, const HardwareModel& hardware,
                          double max_overhead) {
  const bool simulated = w.profile.has_value();
  PlotSpec spec;
  char title[256];
  std::snprintf(title, sizeof title, "%s: %zu ops, peak %s, %s %.3f s", w.name.c_str(), w.ops,
                format_bytes(w.peak_bytes).c_str(), simulated ? "op time" : "step", w.base_s);
  spec.title = title;
  spec.x_label = simulated ? "budget (% of the peak live bytes)"
                           : "budget (% of the unconstrained peak reserved bytes)";
  spec.y_label = simulated ? "simulated step / op time" : "step / unconstrained step (measured)";
  spec.x_descending = true;
  spec.y_floor = 1;
  for (int percent : kSuiteBudgetPercents) spec.xs.push_back(percent);
  spec.notes = {
      simulated ? "sim device, " + hardware.name : w.device + " device, median of the steady steps",
      "no point: out of memory or past the",
      "thrash limit (" + format_double(max_overhead) + "x " +
          (simulated ? "the op time)" : "the unconstrained step)")};
  std::vector<PlotSeries> series;
  for (const char* policy : kSuitePolicies) {
    PlotSeries s;
    s.name = policy;
    for (int percent : kSuiteBudgetPercents) {
      auto it = std::find_if(cells.begin(), cells.end(), [&](const SuiteCell& c) {
        return c.workload == index && c.budget_percent == percent && c.policy == policy;
      });
      s.ys.push_back(it != cells.end() && it->status == "ok" ? std::optional(it->slowdown)
                                                             : std::nullopt);
    }
    series.push_back(std::move(s));
  }
  return render_line_plot_svg(spec, series);
}

}  // namespace

int run_bench_suite(const BenchSuiteOptions& options) {
  Result<DeviceKind> device = parse_device_kind(options.device);
  if (!device.ok()) return report_error(device.status());
  if (!(options.max_overhead > 0) || !std::isfinite(options.max_overhead)) {
    return report_error(invalid_argument(
        "--max-overhead must be a finite multiple of the op time > 0 (every cell needs a thrash "
        "limit)"));
  }
  if (options.out_dir.empty()) return report_error(invalid_argument("--out DIR is required"));
  Result<HardwareModel> hardware = hardware_from_args(options.hw_file, options.link_gbps);
  if (!hardware.ok()) return report_error(hardware.status());

  std::vector<std::string> paths = bundled_workloads(options);
  paths.insert(paths.end(), options.workloads.begin(), options.workloads.end());
  std::vector<SuiteWorkload> workloads;
  if (Status s = load_workloads(paths, workloads); !s.ok()) return report_error(s);
  if (Status s = prepare_out_dir(options.out_dir); !s.ok()) return report_error(s);
  // On a real device the trainer comes first, its unconstrained run measured before any cell.
  if (*device != DeviceKind::kSim) {
    std::printf("ebb bench suite: the trainer's unconstrained run on the %s device\n",
                options.device.c_str());
    std::fflush(stdout);
    Result<SuiteWorkload> trainer = trainer_workload(*device, options);
    if (!trainer.ok()) return report_error(trainer.status());
    trainer->name = unique_name(trainer->name, workloads);
    workloads.insert(workloads.begin(), std::move(*trainer));
  }

  const std::string started = utc_now();
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  const std::size_t total = workloads.size() * kBudgetCount * kPolicyCount;
  std::printf(
      "ebb bench suite: %zu workloads x %zu budgets x %zu policies: profiles on the sim device "
      "(%s)%s\n",
      workloads.size(), kBudgetCount, kPolicyCount, hardware->name.c_str(),
      *device == DeviceKind::kSim ? ""
                                  : (", the trainer on the " + options.device + " device").c_str());
  std::vector<SuiteCell> cells;
  cells.reserve(total);
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    const SuiteWorkload& w = workloads[i];
    for (int percent : kSuiteBudgetPercents) {
      for (const char* policy : kSuitePolicies) {
        SuiteCell cell = run_cell(w, percent, policy, *hardware, options.max_overhead);
        cell.workload = i;
        cells.push_back(std::move(cell));
        report_progress(terminal, cells.size(), total, w, cells.back());
      }
    }
  }

  // Each file whole or not at all (written to a temporary file and renamed).
  const std::string dir = options.out_dir;
  if (Status s = write_file_atomically(dir + "/results.csv", results_csv(workloads, cells));
      !s.ok()) {
    return report_error(s);
  }
  if (Status s = write_file_atomically(dir + "/results.json",
                                       results_json(options, *hardware, started, workloads, cells));
      !s.ok()) {
    return report_error(s);
  }
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    const std::string path = dir + "/" + plot_file_name(workloads[i].name);
    if (Status s = write_file_atomically(
            path, workload_plot(workloads[i], i, cells, *hardware, options.max_overhead));
        !s.ok()) {
      return report_error(s);
    }
  }
  const auto ok_cells = std::count_if(cells.begin(), cells.end(),
                                      [](const SuiteCell& c) { return c.status == "ok"; });
  std::printf(
      "ebb bench suite: %zu cells (%lld ran, %lld could not), wrote %s/results.csv, "
      "results.json and %zu plots\n",
      cells.size(), static_cast<long long>(ok_cells),
      static_cast<long long>(cells.size()) - static_cast<long long>(ok_cells), dir.c_str(),
      workloads.size());
  return 0;
}

}  // namespace ebb::cli
