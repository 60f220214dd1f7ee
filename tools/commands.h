// The ebb command-line subcommands. Each lives in its own tools/<name>_command.cc and registers
// itself on the top-level CLI11 app; ebb_main.cc runs the one the user chose.
//
// Thread safety: used from main's thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "engine/residency/eviction.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace ebb::train {
struct TrainOptions;
}  // namespace ebb::train

namespace ebb::cli {

// A registered subcommand: its CLI11 app (set when the user chose it) and what runs it. run
// returns the process exit code; it prints its own errors.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_replay_command(CLI::App& parent);
Command add_arena_plan_command(CLI::App& parent);
Command add_arena_generate_command(CLI::App& parent);
Command add_bench_command(CLI::App& parent);
Command add_simulate_command(CLI::App& parent);
Command add_train_command(CLI::App& parent);
Command add_demo_command(CLI::App& parent);
Command add_plan_command(CLI::App& parent);
Command add_iobench_command(CLI::App& parent);
Command add_checkpoint_command(CLI::App& parent);
Command add_report_command(CLI::App& parent);

// Adds the model-shape, step, optimizer and data options that `ebb train` and `ebb demo` share
// (--layers --d-model --heads --seq --batch --vocab --steps --lr --seed --data).
void add_model_options(CLI::App& app, train::TrainOptions& options);

// Parses a byte count: a number with an optional unit, e.g. "4096", "512MiB", "1.5GiB", "4G".
// Units (case-insensitive): B; K, KiB, M, MiB, G, GiB, T, TiB (powers of 1024); KB, MB, GB, TB
// (powers of 1000). Zero, negative, unparsable and overflowing values are kInvalidArgument
// naming `what` (e.g. "--budget") and the text.
Result<std::size_t> parse_byte_size(std::string_view text, std::string_view what);

// Parses --policy: "none", "swap", "recompute" or "both".
Result<EvictionPolicy> parse_policy(std::string_view text);

// A --budget: a byte size (see parse_byte_size), or a percentage of a peak that the command
// measures ("60%": fraction 0.6). Exactly one of the fields is non-zero.
struct BudgetArg {
  std::size_t bytes = 0;
  double fraction = 0;
};
// kInvalidArgument for zero, negative, unparsable and (as a percentage) non-finite values.
Result<BudgetArg> parse_budget(std::string_view text);

// "1.50 GiB": a byte count for people (report::human_bytes, one formatting for the CLI and the
// reports).
std::string format_bytes(std::size_t bytes);

// Parses --device: "cpu", "cuda" or "sim".
Result<DeviceKind> parse_device_kind(std::string_view text);

// Tells a DTR log from the other format a command reads (`other_format`, e.g. "alloc trace") by
// the file's first non-blank line. A directory, an unreadable or an empty file is an error
// naming the path.
Result<bool> file_is_dtr_log(const std::string& path, std::string_view other_format);

// Prints "ebb: <status>" to stderr and returns exit code 1.
int report_error(const Status& status);

}  // namespace ebb::cli
