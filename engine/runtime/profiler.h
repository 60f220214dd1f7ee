// Profiler: records the first `warmup_iterations` iterations of an Engine as Profiles
// (engine/schema/profile.h) and, once they are done, says whether they agree and hands out the last
// one.
//
// The engine calls the hooks below only while recording() is true, so after the warm-up the
// profiler costs one branch per call. What is recorded is the program's work: ops in run()
// order, the tensors they read and write, the tensors that exist when the iteration begins (or
// are made inside it by input()/parameter(); a profile has no producer-less tensor appearing
// mid-way, so those count as live from the start), and the frees the program asks for
// (release() after op k frees after op k; end_iteration frees after the last op). An in-place
// op (Engine::update) reads its inputs, then its targets, and has no outputs. A view is recorded
// as its base: the base is what the engine moves. Recompute replays and swaps are the engine's
// doing and are not ops of the profile.
//
// Ownership: owned by the Engine; keeps copies of tensor descriptions, never pointers into the
// engine's tables. Thread safety: not thread-safe; the engine's driving thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/runtime/tape.h"
#include "engine/schema/profile.h"
#include "kernels/status.h"

namespace ebb {

class Profiler {
 public:
  // `iterations` warm-up iterations to record (0 disables profiling); `device_name` goes into
  // Profile::device.
  Profiler(int iterations, std::string device_name);

  // Whether the hooks should be called (warm-up not finished).
  bool recording() const { return completed_ < iterations_; }
  // Records `iterations` more iterations as a new warm-up (the engine re-profiles after a loop
  // left its plans); profile() then answers for them. REQUIRES: !recording().
  void record_more(int iterations);

  // Hooks, called by the engine while recording().
  // begin_iteration: every live, unreleased tensor of `tensors` exists before the iteration.
  void on_begin_iteration(const TensorTable& tensors);
  // A producer-less tensor made inside the iteration (input(), parameter()).
  void on_tensor_created(const TensorTable& tensors, std::uint32_t slot);
  // run() launched tape[tape_index]; `reserved_bytes` is the allocator's reserved bytes now.
  void on_run(const TensorTable& tensors, const OpRecord& op, std::size_t tape_index,
              std::size_t reserved_bytes);
  // The measured duration of tape op `tape_index` (from the engine's OpTimer events).
  void on_timing(std::size_t tape_index, std::int64_t ns);
  // release() of the tensor in `slot` inside an iteration.
  void on_release(const TensorTable& tensors, std::uint32_t slot);
  // end_iteration, after the device was synchronized and every timing drained, before the
  // iteration's tensors are released. `ok` is false when the iteration failed: it is discarded
  // and does not count as a warm-up iteration.
  void on_end_iteration(const TensorTable& tensors, const std::vector<OpRecord>& tape, bool ok);

  // A warm-up whose iterations disagree is extended, one iteration at a time (the oldest one
  // dropped), up to kMaxWarmupExtension more iterations, so that a loop whose first iteration
  // differs from the rest (ZeRO's first step reduces at the step, later ones during backward,
  // as soon as each slice is final) is still profiled on the iterations that repeat.
  static constexpr int kMaxWarmupExtension = 2;

  // The last warm-up iteration's profile if every iteration of the warm-up window agrees with
  // it; the disagreement of the last window (kFailedPrecondition naming the iterations, counted
  // from the warm-up's start, and the op index) otherwise;
  // kFailedPrecondition saying how many iterations are left before the warm-up is complete.
  Result<Profile> profile() const;

 private:
  struct TensorEntry {
    std::uint64_t id = 0;   // the engine's tensor id
    ProfiledTensor tensor;  // id, producer and accesses are filled in by finish()
  };
  struct OpEntry {
    std::string name;
    std::vector<std::size_t> inputs;   // entry indices
    std::vector<std::size_t> outputs;  // entry indices
    std::vector<std::size_t> frees;    // entry indices
    std::vector<std::size_t> writes;   // entry indices (an in-place op's targets, also inputs)
    std::size_t tape_index = 0;
    std::size_t reserved_bytes = 0;
  };

  std::size_t entry_of(const TensorTable& tensors, std::uint32_t slot);
  void free_entry(std::size_t entry);
  Profile finish(const std::vector<OpRecord>& tape) const;

  int iterations_;
  const std::string device_name_;
  int completed_ = 0;
  int warmup_start_ = 0;  // completed_ when the current warm-up began (record_more)
  int extended_ = 0;      // iterations added to the current warm-up because it disagreed
  bool in_iteration_ = false;

  // The iteration being recorded.
  std::vector<TensorEntry> entries_;
  std::unordered_map<std::uint64_t, std::size_t> entry_by_id_;
  std::vector<OpEntry> ops_;
  std::vector<std::size_t> frees_before_first_op_;
  std::vector<bool> freed_;                                    // by entry index
  std::unordered_map<std::size_t, std::int64_t> measured_ns_;  // by tape index

  std::vector<Profile> profiles_;          // one per completed warm-up iteration, until the last
  std::optional<Result<Profile>> result_;  // set when the warm-up is complete
};

}  // namespace ebb
