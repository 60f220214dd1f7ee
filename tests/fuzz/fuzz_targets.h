// The bodies of ebb's fuzz targets: one function per parser of outside input, fed arbitrary
// bytes. Each runs the parser on the bytes as they are (no file is read or written) and, where
// the parse succeeds, checks what a caller relies on next (a parsed profile writes and reads
// back, a parsed DTR log has figures). Bad input must come back as an error Result; a crash, a
// sanitizer report, a leak or an uncaught exception is a bug in the parser. A broken invariant
// of a parse that succeeded aborts, naming the target, so that the fuzzer keeps the input.
//
// libFuzzer drives them through one executable per target (fuzz_<name>.cc, built with
// -DEBB_FUZZ=ON by Clang); tests/fuzz/corpus_replay_test.cc replays every corpus file through
// them in the ordinary build, so the regression inputs run without Clang too.
//
// Thread safety: each call is independent; they share no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ebb::fuzz {

void fuzz_dtr_log(const std::uint8_t* data, std::size_t size);        // allocator/dtr_log.h
void fuzz_alloc_trace(const std::uint8_t* data, std::size_t size);    // allocator/alloc_trace.h
void fuzz_arena_csv(const std::uint8_t* data, std::size_t size);      // allocator/arena_csv.h
void fuzz_profile_json(const std::uint8_t* data, std::size_t size);   // a Profile's JSON
void fuzz_plan_json(const std::uint8_t* data, std::size_t size);      // a Plan's JSON
void fuzz_hardware_json(const std::uint8_t* data, std::size_t size);  // profiles/hw/*.json
void fuzz_token_file(const std::uint8_t* data, std::size_t size);     // llm.c token files
void fuzz_checkpoint_manifest(const std::uint8_t* data, std::size_t size);  // manifest.json
void fuzz_weights_file(const std::uint8_t* data, std::size_t size);         // weights files

// A target by the name of its corpus folder (tests/fuzz/corpus/<name>/).
struct FuzzTarget {
  std::string_view name;
  void (*run)(const std::uint8_t* data, std::size_t size);
};
// Every target above, in that order.
std::span<const FuzzTarget> fuzz_targets();

}  // namespace ebb::fuzz
