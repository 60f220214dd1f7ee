#include "tests/fuzz/fuzz_targets.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "allocator/alloc_trace.h"
#include "allocator/arena_csv.h"
#include "allocator/dtr_log.h"
#include "engine/schema/checkpoint.h"
#include "engine/schema/chip_spec.h"
#include "engine/schema/hardware_model.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "engine/schema/sharded_checkpoint.h"
#include "engine/schema/weights_file.h"
#include "tools/train/token_data.h"

namespace ebb::fuzz {
namespace {

// The name messages give the input: no file is read, but parsers name their source.
const std::string kSource = "fuzz-input";

std::string_view text_of(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A parse that succeeded broke a promise its header makes: a bug, not bad input.
[[noreturn]] void broken(const char* target, const std::string& what) {
  std::fprintf(stderr, "fuzz_%s: %s\n", target, what.c_str());
  std::abort();
}

// Check, named after the target, that a status a successful parse promises is ok.
void expect_ok(const char* target, const char* step, const Status& status) {
  if (!status.ok()) broken(target, std::string(step) + " failed: " + status.to_string());
}

}  // namespace

void fuzz_dtr_log(const std::uint8_t* data, std::size_t size) {
  Result<DtrLog> log = parse_dtr_log(text_of(data, size), kSource);
  if (!log.ok()) return;
  // dtr_log.h: these fail only for a log that parse_dtr_log would have rejected.
  expect_ok("dtr_log", "dtr_figures", dtr_figures(*log).status());
  expect_ok("dtr_log", "dtr_to_alloc_events", dtr_to_alloc_events(*log).status());
  // The importer may refuse a log (a profile cannot hold every log), but must not crash.
  (void)profile_from_dtr_log(*log);
}

void fuzz_alloc_trace(const std::uint8_t* data, std::size_t size) {
  (void)parse_alloc_trace(text_of(data, size), kSource);
}

void fuzz_arena_csv(const std::uint8_t* data, std::size_t size) {
  Result<ArenaProblem> problem = parse_arena_csv(text_of(data, size), kSource);
  if (!problem.ok()) return;
  // arena_csv.h's checks are check_plan_buffers' and more: a problem it read is a valid one.
  expect_ok("arena_csv", "check_plan_buffers", check_plan_buffers(problem->buffers));
  (void)plan_lower_bound_bytes(problem->buffers);
}

void fuzz_profile_json(const std::uint8_t* data, std::size_t size) {
  Result<Profile> profile = profile_from_json(text_of(data, size), kSource);
  if (!profile.ok()) return;
  // What was read validates, so it writes, and what is written reads back.
  expect_ok("profile_json", "reading back profile_to_json",
            profile_from_json(profile_to_json(*profile), kSource).status());
}

void fuzz_plan_json(const std::uint8_t* data, std::size_t size) {
  Result<Plan> plan = plan_from_json(text_of(data, size), kSource);
  if (!plan.ok()) return;
  expect_ok("plan_json", "reading back plan_to_json",
            plan_from_json(plan_to_json(*plan), kSource).status());
}

void fuzz_hardware_json(const std::uint8_t* data, std::size_t size) {
  // One file holds both: the host link and, optionally, the chip object.
  const std::string_view text = text_of(data, size);
  Result<HardwareModel> model = hardware_model_from_json(text, kSource);
  if (model.ok()) {
    expect_ok("hardware_json", "reading back hardware_model_to_json",
              hardware_model_from_json(hardware_model_to_json(*model), kSource).status());
  }
  (void)chip_spec_from_json(text, kSource);
}

void fuzz_token_file(const std::uint8_t* data, std::size_t size) {
  // GPT-2's vocabulary, and one token: the smallest stream a step could read.
  constexpr int kVocab = 50257;
  Result<train::TokenData> tokens =
      train::TokenData::from_bytes(text_of(data, size), kSource, kVocab, /*min_tokens=*/1);
  if (!tokens.ok()) return;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> targets;
  for (std::int64_t step = 0; step < 3; ++step) tokens->batch(step, 2, 3, inputs, targets);
}

void fuzz_checkpoint_manifest(const std::uint8_t* data, std::size_t size) {
  // A checkpoint's manifest.json and a sharded checkpoint's sharded-manifest.json: both JSON
  // objects read before any payload file is touched.
  const std::string_view text = text_of(data, size);
  (void)parse_checkpoint_manifest(text, kSource);
  (void)parse_sharded_manifest(text, kSource);
}

void fuzz_weights_file(const std::uint8_t* data, std::size_t size) {
  (void)parse_weights_file(text_of(data, size), kSource);
}

std::span<const FuzzTarget> fuzz_targets() {
  static constexpr std::array<FuzzTarget, 9> kTargets{{
      {"dtr_log", fuzz_dtr_log},
      {"alloc_trace", fuzz_alloc_trace},
      {"arena_csv", fuzz_arena_csv},
      {"profile_json", fuzz_profile_json},
      {"plan_json", fuzz_plan_json},
      {"hardware_json", fuzz_hardware_json},
      {"token_file", fuzz_token_file},
      {"checkpoint_manifest", fuzz_checkpoint_manifest},
      {"weights_file", fuzz_weights_file},
  }};
  return kTargets;
}

}  // namespace ebb::fuzz
