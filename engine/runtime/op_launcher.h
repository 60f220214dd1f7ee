// OpLauncher: launches the closures of tape ops on the compute stream, times them with device
// events, checks a closure's outputs when asked, and collects the errors that surface after
// run() has returned (a closure that throws on the stream's thread; a failure of deferred work).
//
// A launch's kernel captures only a pointer to a launch record (the closure, its pointers), so
// that std::function holds it without allocating and the stream's thread frees nothing the host
// allocated; the records are recycled once the compute stream has drained (recycle()), so a
// steady loop allocates none, and launch() drains it itself past launch_record_limit(), so
// replays without end cannot grow them.
//
// Ownership: owned by the Engine; references the Device and the compute stream, which outlive
// it. Owns the event pool that timings (and the engine's other waits) take events from.
// Thread safety: not thread-safe; the engine's driving thread calls it. Launched kernels run on
// the stream's thread and touch only their record and the shared error slot (locked).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "engine/runtime/op_timer.h"
#include "engine/runtime/tape.h"
#include "engine/runtime/tensor.h"
#include "kernels/device.h"
#include "kernels/event_pool.h"
#include "kernels/status.h"

namespace ebb {

class OpLauncher {
 public:
  // After the warm-up, one run in this many of each op name is timed (see Engine::run).
  static constexpr std::uint64_t kTimingSamplePeriod = 16;

  OpLauncher(Device& device, Stream& compute);
  ~OpLauncher();
  OpLauncher(const OpLauncher&) = delete;
  OpLauncher& operator=(const OpLauncher&) = delete;

  Stream& stream() { return compute_; }
  EventPool& events() { return events_; }

  // Launches tape[op_index]'s closure with `pointers` (inputs, then outputs); `timed` records a
  // pair of events around it. REQUIRES: the op stays on the tape until the kernel has run.
  Status launch(const Tape& tape, std::size_t op_index, std::span<void* const> pointers,
                bool timed);
  // Engine::check_outputs: runs `code` twice on `pointers` (inputs, then outputs), on outputs
  // poisoned with two patterns, and compares; kFailedPrecondition naming the op, the output and
  // the first differing byte. On success the outputs hold the second run's bits.
  Status check_outputs(const std::shared_ptr<const OpCode>& code, std::span<void* const> pointers,
                       std::size_t inputs, std::span<const TensorSpec> outputs,
                       std::span<const std::size_t> output_bytes, std::chrono::nanoseconds cost);
  // Reports each completed timing as sink(op_index, nanoseconds), in launch order; with `wait`,
  // waits for all of them.
  template <typename Sink>
  Status drain_timings(Sink&& sink, bool wait) {
    return timer_.drain_completed(std::forward<Sink>(sink), wait);
  }

  // The first error since the last call, and clears it: one set by defer_error(), else the first
  // closure that threw ("op 'NAME' threw: WHAT").
  Status take_error();
  // Keeps `error` (the first one) for the next take_error().
  void defer_error(Status error);
  // The compute stream has drained: every launch record may be reused.
  void recycle() { launches_used_ = 0; }
  // Launch records held before launch() waits for the stream to reuse them: twice the ops of a
  // tape of `tape_ops`, plus slack for a short one. A steady iteration launches each op once
  // (and replays a few), so it never waits; a thrashing one waits once per that many launches.
  static std::size_t launch_record_limit(std::size_t tape_ops) { return 2 * tape_ops + 4096; }
  // Launch records allocated so far (bounded by launch_record_limit of the largest tape).
  std::size_t launch_records() const { return launches_.size(); }

 private:
  // First error a closure raised on a stream thread; shared with the launched kernels.
  struct ClosureErrors {
    std::mutex mu;
    std::atomic<bool> any{false};
    Status first;  // GUARDED_BY(mu)
  };
  // What a launched kernel reads when it runs.
  struct Launch {
    const OpCode* code;
    LaunchPointers pointers;
    std::size_t inputs;
  };

  // Runs `code` on `all` (inputs, then outputs) and records a throw in `errors`, naming the op:
  // the body of every kernel the engine launches.
  static void run_closure(const OpCode& code, std::span<void* const> all, std::size_t inputs,
                          const LaunchContext& context, ClosureErrors* errors);
  Kernel closure_kernel(std::shared_ptr<const OpCode> code, std::span<void* const> pointers,
                        std::size_t inputs);
  Kernel tape_kernel(const OpRecord& op, std::span<void* const> pointers);

  Stream& compute_;
  EventPool events_;
  OpTimer timer_;
  std::shared_ptr<ClosureErrors> closure_errors_;
  Status deferred_;
  // launches_[0, launches_used_) may still be read by queued kernels.
  std::vector<std::unique_ptr<Launch>> launches_;
  std::size_t launches_used_ = 0;
};

}  // namespace ebb
