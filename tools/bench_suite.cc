// `ebb bench suite` (tools/bench_suite.h): the matrix, its CSV, JSON and SVG plots.
#include "tools/bench_suite.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "engine/runtime/engine_options.h"
#include "engine/schema/atomic_file.h"
#include "engine/schema/profile.h"
#include "tools/commands.h"
#include "tools/plan_eval.h"
#include "tools/svg_plot.h"

namespace ebb::cli {
namespace {

constexpr std::size_t kBudgetCount = std::size(kSuiteBudgetPercents);
constexpr std::size_t kPolicyCount = std::size(kSuitePolicies);

struct SuiteWorkload {
  std::string name;  // the file's name, made unique within the suite
  std::string path;
  Profile profile;
  ProfileFigures figures;
};

// One cell of the matrix. status is "ok", "out of memory" (the policy cannot fit the budget),
// "thrashed" (past the thrash limit) or "failed" (any other error); reason is the error's text.
struct SuiteCell {
  std::size_t workload = 0;  // index into the workloads
  int budget_percent = 0;
  std::size_t budget_bytes = 0;
  std::string policy;
  std::string status;
  std::string reason;
  double slowdown = 0;                // simulated step / the workload's op time
  double extra_compute_fraction = 0;  // recompute time / the workload's op time
  double simulated_s = 0;
  std::size_t peak_reserved_bytes = 0;
  std::int64_t swapped_bytes = 0;  // out + in
  std::int64_t evictions = 0;
  std::int64_t recomputed_ops = 0;
  double wall_s = 0;  // this machine's time running the cell
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

Result<std::vector<SuiteWorkload>> load_workloads(const std::vector<std::string>& paths) {
  std::vector<SuiteWorkload> workloads;
  for (const std::string& path : paths) {
    Result<Profile> profile = load_profile_or_dtr_log(path);
    if (!profile.ok()) {
      return Status(profile.status().code(),
                    "--workload " + path + ": " + profile.status().message());
    }
    SuiteWorkload w;
    w.path = path;
    w.name = std::filesystem::path(path).filename().string();
    const std::string base = w.name;
    for (int n = 2; std::any_of(workloads.begin(), workloads.end(),
                                [&](const SuiteWorkload& o) { return o.name == w.name; });
         ++n) {
      w.name = base + "#" + std::to_string(n);
    }
    w.figures = profile_figures(*profile);
    if (w.figures.peak_live_bytes == 0 || w.figures.total_op_time_ns <= 0) {
      return invalid_argument("--workload " + path + ": no live bytes or no op time to run");
    }
    w.profile = std::move(*profile);
    workloads.push_back(std::move(w));
  }
  return workloads;
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

SuiteCell run_cell(const SuiteWorkload& w, int percent, const char* policy,
                   const HardwareModel& hardware, double max_overhead) {
  SuiteCell cell;
  cell.budget_percent = percent;
  cell.policy = policy;
  cell.budget_bytes = std::max<std::size_t>(
      1, static_cast<std::size_t>(
             std::floor(static_cast<double>(w.figures.peak_live_bytes) * percent / 100.0)));
  const auto start = std::chrono::steady_clock::now();
  Result<Evaluation> e =
      evaluate_policy(w.profile, policy, cell.budget_bytes, hardware, true, max_overhead);
  cell.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!e.ok()) {
    cell.status = is_thrash_error(e.status())                     ? "thrashed"
                  : e.status().code() == StatusCode::kOutOfMemory ? "out of memory"
                                                                  : "failed";
    cell.reason = e.status().message();
    return cell;
  }
  const SimulationResult& r = e->sim;
  const double base_s = static_cast<double>(w.figures.total_op_time_ns) * 1e-9;
  cell.status = "ok";
  cell.simulated_s = std::chrono::duration<double>(r.simulated).count();
  cell.slowdown = cell.simulated_s / base_s;
  cell.extra_compute_fraction = static_cast<double>(r.stats.recompute_ns) * 1e-9 / base_s;
  cell.peak_reserved_bytes = r.peak_reserved_bytes;
  cell.swapped_bytes = r.stats.swapped_out_bytes + r.stats.swapped_in_bytes;
  cell.evictions = r.stats.evictions;
  cell.recomputed_ops = r.stats.recomputed_ops;
  return cell;
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
    std::printf("[%zu/%zu] %s %d%% %s: ok, step %.3fx the op time, extra compute %.3f (%.2f s)\n",
                done, total, w.name.c_str(), c.budget_percent, c.policy.c_str(), c.slowdown,
                c.extra_compute_fraction, c.wall_s);
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
      "workload,ops,peak_live_bytes,base_compute_s,budget_percent,budget_bytes,policy,status,"
      "slowdown,extra_compute_fraction,simulated_s,peak_reserved_bytes,swapped_bytes,evictions,"
      "recomputed_ops,wall_s,reason\n";
  for (const SuiteCell& c : cells) {
    const SuiteWorkload& w = workloads[c.workload];
    const bool ok = c.status == "ok";
    auto figure = [&](const std::string& text) { return ok ? text : std::string(); };
    csv += csv_field(w.name) + "," + std::to_string(w.profile.ops.size()) + "," +
           std::to_string(w.figures.peak_live_bytes) + "," +
           format_double(static_cast<double>(w.figures.total_op_time_ns) * 1e-9) + "," +
           std::to_string(c.budget_percent) + "," + std::to_string(c.budget_bytes) + "," +
           c.policy + "," + csv_field(c.status) + "," + figure(format_double(c.slowdown)) + "," +
           figure(format_double(c.extra_compute_fraction)) + "," +
           figure(format_double(c.simulated_s)) + "," +
           figure(std::to_string(c.peak_reserved_bytes)) + "," +
           figure(std::to_string(c.swapped_bytes)) + "," + figure(std::to_string(c.evictions)) +
           "," + figure(std::to_string(c.recomputed_ops)) + "," + format_double(c.wall_s) + "," +
           csv_field(c.reason) + "\n";
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
                  {"ops", w.profile.ops.size()},
                  {"peak_live_bytes", w.figures.peak_live_bytes},
                  {"base_compute_s", static_cast<double>(w.figures.total_op_time_ns) * 1e-9}});
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
      j["simulated_s"] = c.simulated_s;
      j["peak_reserved_bytes"] = c.peak_reserved_bytes;
      j["swapped_bytes"] = c.swapped_bytes;
      j["evictions"] = c.evictions;
      j["recomputed_ops"] = c.recomputed_ops;
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
  PlotSpec spec;
  char title[256];
  std::snprintf(title, sizeof title, "%s: %zu ops, peak %s, op time %.3f s", w.name.c_str(),
                w.profile.ops.size(), format_bytes(w.figures.peak_live_bytes).c_str(),
                static_cast<double>(w.figures.total_op_time_ns) * 1e-9);
  spec.title = title;
  spec.x_label = "budget (% of the peak live bytes)";
  spec.y_label = "simulated step / op time";
  spec.x_descending = true;
  spec.y_floor = 1;
  for (int percent : kSuiteBudgetPercents) spec.xs.push_back(percent);
  spec.notes = {"sim device, " + hardware.name, "no point: out of memory or past the",
                "thrash limit (" + format_double(max_overhead) + "x the op time)"};
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
  if (options.device != "sim") {
    return report_error(invalid_argument(
        "--device " + options.device +
        ": ebb bench suite runs its matrix on the sim device only (ops costed at their "
        "profiled time, so a workload may be larger than this machine); use --device sim"));
  }
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
  Result<std::vector<SuiteWorkload>> workloads = load_workloads(paths);
  if (!workloads.ok()) return report_error(workloads.status());
  if (Status s = prepare_out_dir(options.out_dir); !s.ok()) return report_error(s);

  const std::string started = utc_now();
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  const std::size_t total = workloads->size() * kBudgetCount * kPolicyCount;
  std::printf(
      "ebb bench suite: %zu workloads x %zu budgets x %zu policies on the sim device (%s)\n",
      workloads->size(), kBudgetCount, kPolicyCount, hardware->name.c_str());
  std::vector<SuiteCell> cells;
  cells.reserve(total);
  for (std::size_t i = 0; i < workloads->size(); ++i) {
    const SuiteWorkload& w = (*workloads)[i];
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
  if (Status s = write_file_atomically(dir + "/results.csv", results_csv(*workloads, cells));
      !s.ok()) {
    return report_error(s);
  }
  if (Status s = write_file_atomically(
          dir + "/results.json", results_json(options, *hardware, started, *workloads, cells));
      !s.ok()) {
    return report_error(s);
  }
  for (std::size_t i = 0; i < workloads->size(); ++i) {
    const std::string path = dir + "/" + plot_file_name((*workloads)[i].name);
    if (Status s = write_file_atomically(
            path, workload_plot((*workloads)[i], i, cells, *hardware, options.max_overhead));
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
      workloads->size());
  return 0;
}

}  // namespace ebb::cli
