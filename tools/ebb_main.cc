// The ebb binary: one CLI11 app with a subcommand per tool (see tools/commands.h).
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "allocator/dtr_log.h"
#include "tools/commands.h"
#include "tools/report/html_text.h"
#include "tools/version.h"

namespace ebb::cli {

Result<std::size_t> parse_byte_size(std::string_view text, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(std::string(what) + " \"" + std::string(text) + "\" " + why +
                            " (expected bytes with an optional unit, e.g. 4096, 512MiB, 4GiB)");
  };
  std::size_t number_end = 0;
  while (number_end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[number_end])) || text[number_end] == '.')) {
    ++number_end;
  }
  std::string_view number = text.substr(0, number_end);
  std::string unit(text.substr(number_end));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (number.empty() || number == ".") return bad("is not a byte size");

  struct Unit {
    const char* name;
    std::size_t bytes;
  };
  static const Unit kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", kKiB},
      {"kib", kKiB},
      {"kb", 1000},
      {"m", kMiB},
      {"mib", kMiB},
      {"mb", 1000 * 1000},
      {"g", kGiB},
      {"gib", kGiB},
      {"gb", 1000 * 1000 * 1000},
      {"t", kGiB * 1024},
      {"tib", kGiB * 1024},
      {"tb", std::size_t{1000} * 1000 * 1000 * 1000},
  };
  const Unit* match = nullptr;
  for (const Unit& u : kUnits) {
    if (unit == u.name) match = &u;
  }
  if (match == nullptr) return bad("has an unknown unit");

  std::size_t bytes = 0;
  if (number.find('.') == std::string_view::npos) {
    std::size_t value = 0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || end != number.data() + number.size() ||
        __builtin_mul_overflow(value, match->bytes, &bytes)) {
      return bad("is too large");
    }
  } else {
    char* end = nullptr;
    std::string copy(number);
    long double value = std::strtold(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return bad("is not a byte size");
    long double scaled = std::floor(value * static_cast<long double>(match->bytes));
    if (scaled >= static_cast<long double>(std::numeric_limits<std::size_t>::max())) {
      return bad("is too large");
    }
    bytes = static_cast<std::size_t>(scaled);
  }
  if (bytes == 0) return bad("is zero");
  return bytes;
}

std::string format_bytes(std::size_t bytes) { return report::human_bytes(bytes); }

Result<EvictionPolicy> parse_policy(std::string_view text) {
  if (text == "none") return EvictionPolicy::kNone;
  if (text == "swap") return EvictionPolicy::kSwap;
  if (text == "recompute") return EvictionPolicy::kRecompute;
  if (text == "both") return EvictionPolicy::kBoth;
  return invalid_argument("--policy \"" + std::string(text) +
                          "\" is not none, swap, recompute or both");
}

Result<BudgetArg> parse_budget(std::string_view text) {
  if (text.empty() || text.back() != '%') {
    EBB_ASSIGN_OR_RETURN(std::size_t bytes, parse_byte_size(text, "--budget"));
    return BudgetArg{.bytes = bytes};
  }
  const std::string number(text.substr(0, text.size() - 1));
  char* end = nullptr;
  const double percent = number.empty() ? 0 : std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !(percent > 0) ||
      !std::isfinite(percent)) {
    return invalid_argument("--budget \"" + std::string(text) +
                            "\" is not a positive percentage of the peak (e.g. 60%)");
  }
  return BudgetArg{.fraction = percent / 100};
}

Result<DeviceKind> parse_device_kind(std::string_view text) {
  if (text == "cpu") return DeviceKind::kCpu;
  if (text == "cuda") return DeviceKind::kCuda;
  if (text == "sim") return DeviceKind::kSim;
  return invalid_argument("--device \"" + std::string(text) + "\" is not cpu, cuda or sim");
}

Result<bool> file_is_dtr_log(const std::string& path, std::string_view other_format) {
  const std::string either = std::string(other_format) + " or DTR log";
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return invalid_argument(path + " is a directory, not a file (" + either + ")");
  }
  std::ifstream in(path);
  if (!in) return not_found("cannot open " + path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    return looks_like_dtr_log(line);
  }
  return invalid_argument(path + " is empty: no " + either + " lines");
}

int report_error(const Status& status) {
  std::fprintf(stderr, "ebb: %s\n", status.to_string().c_str());
  return 1;
}

}  // namespace ebb::cli

namespace {

int run_cli(int argc, char** argv) {
  CLI::App app{"ebb: train networks larger than device memory (keep, swap or recompute)"};
  app.set_version_flag("--version", ebb::cli::version_text,
                       "Print the version, the commit and the backends");
  app.require_subcommand(1);
  std::vector<ebb::cli::Command> commands = {
      ebb::cli::add_replay_command(app),     ebb::cli::add_bench_command(app),
      ebb::cli::add_simulate_command(app),   ebb::cli::add_train_command(app),
      ebb::cli::add_demo_command(app),       ebb::cli::add_arena_plan_command(app),
      ebb::cli::add_plan_command(app),       ebb::cli::add_iobench_command(app),
      ebb::cli::add_checkpoint_command(app), ebb::cli::add_arena_generate_command(app),
      ebb::cli::add_report_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;  // --help and --version exit 0; usage errors exit 2
  }
  for (const ebb::cli::Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Anything thrown (a failed allocation in the CLI's own bookkeeping, say) is reported, not
  // left to std::terminate.
  try {
    return run_cli(argc, argv);
  } catch (const std::exception& e) {
    return ebb::cli::report_error(ebb::internal_error(e.what()));
  } catch (...) {
    return ebb::cli::report_error(ebb::internal_error("an exception of unknown type"));
  }
}
