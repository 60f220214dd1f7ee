// Engine: what a training loop runs its operators through. It owns the device memory of the
// loop (a CachingAllocator under a budget), the tensors (parameters, inputs, activations,
// gradients, ...) and the op tape of the current iteration, and it makes a loop that does not
// fit in the budget run anyway, with exactly the same bits, by dynamic eviction: when an
// allocation would pass the budget, the allocator calls back into the engine, which swaps
// resident tensors to a pinned host tier (spilling to an NVMe tier when the host tier is full)
// or drops them (see eviction.h for the victim choice);
// an evicted tensor is brought back when an op needs it, by a copy back or by replaying its
// producer from the tape (recursively, through dropped inputs).
//
// A loop looks like:
//   auto engine = Engine::create({.device = *device, .budget_bytes = 512 * kMiB,
//                                 .policy = EvictionPolicy::kBoth}).value();
//   Tensor w = engine->parameter({"w", {n, n}}, host_w).value();
//   for (...) {
//     IterationScope iteration(*engine);
//     Tensor x = engine->input({"x", {b, n}, DType::kF32, TensorKind::kInput}, host_x).value();
//     Tensor y = engine->run("matmul", {{x, w}}, {{"y", {b, n}}}, matmul_fn).value()[0];
//     ...
//     EBB_RETURN_IF_ERROR(engine->read(loss, &host_loss, sizeof(float)));
//   }
//
// Lifetimes: parameters and optimizer state, and every tensor created outside an iteration,
// are carried from one iteration to the next; everything else created inside an iteration is
// released at end_iteration unless keep() marks it. Carried tensors are made resident (or
// stay swapped) at end_iteration and lose their tape entry: a carried tensor is never dropped
// across an iteration boundary, which is what lets the tape be cleared.
//
// Errors: every failure is returned as a Status naming the op and the tensor; after a failed
// run() nothing of that op is registered, and the engine stays usable. A closure that throws
// (on cpu it runs on the stream's thread) is reported by the next run(), read(), synchronize()
// or end_iteration(), naming the op.
//
// Ownership: the Engine references the Device (which must outlive it) and owns the allocator,
// the host tier, the NVMe tier and its transfer engine (when asked for), the copy stream and
// its events. Two engines are independent (they share only
// the device, and its default stream when given the same device).
//
// Thread safety: not thread-safe; one thread drives an engine. Closures run on the compute
// stream's thread (cpu) and touch only their own arguments.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "allocator/caching_allocator.h"
#include "allocator/pinned_host_pool.h"
#include "engine/eviction.h"
#include "engine/executor.h"
#include "engine/op_timer.h"
#include "engine/plan.h"
#include "engine/profile.h"
#include "engine/profiler.h"
#include "engine/tape.h"
#include "engine/tensor.h"
#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/host_tier.h"
#include "offload/nvme_tier.h"
#include "offload/transfer_engine.h"

namespace ebb {

struct EngineOptions {
  Device& device;  // not owned; must outlive the engine
  // Ceiling on device memory the engine's allocator reserves; 0 = the device's capacity.
  std::size_t budget_bytes = 0;
  bool expandable_segments = true;
  // Capacity of the pinned host tier that swapped tensors live in.
  std::size_t host_tier_bytes = kGiB;
  EvictionPolicy policy = EvictionPolicy::kBoth;
  // Iterations the profiler records (engine/profiler.h) before a plan is made; 0 = none.
  int warmup_iterations = 2;
  // Device<->host bandwidth assumed for swap-in estimates; 0 = 10 GB/s.
  double host_link_bytes_per_s = 0;
  // Debugging closures: the first run of every op (not a recompute replay) runs its closure
  // twice, once on outputs filled with 0xA5 and once on outputs filled with 0x5A, and compares
  // the results; a byte that differs was left unwritten by the closure (or the closure is not
  // deterministic), and run() fails with kFailedPrecondition naming the op, the output, the
  // first differing byte offset and how many bytes differ (the op's outputs are freed, nothing
  // is registered). The checked first run costs about three runs of the op (the two checked
  // runs, then the recorded one), two device->host copies of its outputs and a synchronize; it
  // is for debugging closures only. kInvalidArgument on a sim device, which does not run
  // closures.
  bool check_outputs = false;
  // Makes a plan from a profile (say, engine/planner.h's make_plan, checked on the sim). The
  // engine calls it when the warm-up's profile is complete, and again for the profile of an
  // iteration that matched no cached plan; what it returns is given to set_plan. An error (an
  // infeasible budget) is counted in ExecutorStats and leaves the engine on dynamic eviction.
  // Empty: the engine plans nothing by itself; set_plan still works.
  std::function<Result<Plan>(const Profile&)> planner = nullptr;
  // The NVMe tier below the host tier (offload/nvme_tier.h): directories for its files, striped
  // over them; empty = no NVMe tier. A swap-out that does not fit the host tier spills there,
  // from the device through staging buffers, and comes back the same way.
  std::vector<std::string> nvme_directories = {};
  std::size_t nvme_tier_bytes = 4 * kGiB;  // reserved on disk up front, over all directories
  std::size_t nvme_block_bytes = kMiB;     // request size and stripe unit
  unsigned nvme_queue_depth = 32;          // requests in flight
  FaultInjector* nvme_faults = nullptr;    // tests: fails chosen NVMe requests; not owned
};

// Counters since the engine was created. Bytes are tensor bytes as the specs ask.
// One move of a tensor's bytes during an iteration, as Engine::set_residency_log records it.
struct ResidencyEvent {
  std::uint64_t tensor = 0;           // Tensor::id()
  std::size_t ops_launched = 0;       // ops of the iteration launched when it moved
  Residency to = Residency::kDevice;  // kDevice: back (swap-in, prefetch, replay); else away
};

struct EngineStats {
  std::int64_t ops_run = 0;             // run() calls that launched their op
  std::int64_t evictions = 0;           // tensors evicted (dropped or swapped out)
  std::int64_t drops = 0;               // evictions that dropped a tensor
  std::int64_t swap_outs = 0;           // evictions that copied (or kept) a host copy
  std::int64_t swapped_out_bytes = 0;   // bytes copied device -> host by swap-outs
  std::int64_t swapped_in_bytes = 0;    // bytes copied host -> device by swap-ins
  std::int64_t recomputed_ops = 0;      // producer replays
  std::int64_t recompute_ns = 0;        // estimated device time of those replays
  std::int64_t eviction_calls = 0;      // times the allocator asked the engine for room
  std::int64_t nvme_spills = 0;         // swap-outs that went to the NVMe tier
  std::int64_t nvme_written_bytes = 0;  // tensor bytes written device -> NVMe
  std::int64_t nvme_read_bytes = 0;     // tensor bytes read NVMe -> device
};

class Engine {
 public:
  // After the warm-up, one run in this many of each op name is timed (see run()).
  static constexpr std::uint64_t kTimingSamplePeriod = 16;

  // Creates the allocator (with the engine's eviction callback), the pinned host tier, the
  // compute stream (the device's default stream) and one copy stream.
  static Result<std::unique_ptr<Engine>> create(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Resident tensors filled from host memory (nullptr: zeros); the call returns once the bytes
  // are copied, so `host_data` may be reused at once. input() and parameter() differ only in
  // the default kind (kInput / kParameter) applied when spec.kind is kActivation.
  Result<Tensor> input(TensorSpec spec, const void* host_data);
  Result<Tensor> parameter(TensorSpec spec, const void* host_data);

  // Runs one op: makes every input resident, allocates the outputs, launches `fn` on the compute
  // stream and records the op on the tape. Returns the output tensors in spec order.
  // Timing: during the profiler's warm-up iterations every op is timed with a pair of device
  // events (the profile records every op's duration). Afterwards an op is timed on the first
  // run of its name and then on every kTimingSamplePeriod-th run of that name; the others take
  // the last measured cost of their name as cost_ns (what eviction and recompute estimates
  // use), which keeps two event records per op off the steady-state path.
  // `cost` (0 = unknown) is the time the op is modelled to take: it is given to
  // Stream::launch(kernel, cost) on every launch of the op, the first and each recompute replay
  // (a sim device advances its clock by it instead of running `fn`; cpu and cuda ignore it), and
  // when > 0 it is the op's cost for eviction and recompute estimates, in place of a measurement.
  // kInvalidArgument for a negative cost.
  Result<std::vector<Tensor>> run(std::string_view name, std::span<const Tensor> inputs,
                                  std::vector<TensorSpec> outputs, OpFn fn,
                                  std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
  Result<std::vector<Tensor>> run(std::string_view name, std::initializer_list<Tensor> inputs,
                                  std::vector<TensorSpec> outputs, OpFn fn,
                                  std::chrono::nanoseconds cost = std::chrono::nanoseconds(0)) {
    return run(name, std::span<const Tensor>(inputs.begin(), inputs.size()), std::move(outputs),
               std::move(fn), cost);
  }

  // Copies `bytes` (at most the tensor's) to `host`, bringing the tensor back first if it was
  // evicted; returns when the copy is done.
  Status read(const Tensor& tensor, void* host, std::size_t bytes);

  // Releases a tensor now; the handle is invalid afterwards.
  Status release(const Tensor& tensor);
  // Carries a tensor of the current iteration into the next ones.
  Status keep(const Tensor& tensor);

  Status begin_iteration();
  // Releases the iteration's tensors that are not carried, clears the tape and waits for the
  // device. Returns the first error the iteration's work raised.
  Status end_iteration();
  bool in_iteration() const { return in_iteration_; }
  // Waits for all work of the engine; returns a closure error or a stream error.
  Status synchronize();

  const EngineOptions& options() const { return options_; }
  EngineStats stats() const { return stats_; }
  CachingAllocator& allocator() { return *allocator_; }
  HostTier& host_tier() { return *host_tier_; }
  // The NVMe tier; nullptr when options().nvme_directories is empty.
  NvmeTier* nvme_tier() { return nvme_.get(); }
  Stream& compute_stream() { return compute_; }
  Device& device() { return device_; }
  // The tape of the current iteration and the tensor table, for the profiler and for tests.
  const std::vector<OpRecord>& tape() const { return tape_; }
  const TensorTable& tensors() const { return tensors_; }
  // The profile of the warm-up iterations: the last one's if they all agree (Profiler).
  // kFailedPrecondition while the warm-up is running (saying how many iterations are left) or
  // when the iterations disagree (naming the op index and how).
  Result<Profile> profile() const { return profiler_->profile(); }
  // Where a live tensor's bytes are now; kInvalidArgument for a released or foreign tensor.
  Result<Residency> residency(const Tensor& tensor) const;

  // Executor (engine_plan.cc; see engine/executor.h). Adds `plan`, made for `profile`, to the
  // plans the engine follows from the next iteration on (replacing one made for the same
  // profile key). The plan is checked against the profile (validate_plan) and against the
  // engine's budget; a refused plan is kInvalidArgument naming the field, and the engine keeps
  // running as it did (dynamic eviction, or the plans it had).
  Status set_plan(const Plan& plan, const Profile& profile);
  // Forgets every plan: later iterations run under dynamic eviction alone.
  void clear_plans();
  // The plan the current (or next) iteration follows; nullptr when none.
  const Plan* active_plan() const;
  ExecutorStats executor_stats() const { return executor_stats_; }
  // Records every eviction, swap-in, prefetch and replay of the iterations from now on into
  // `log` (not owned; nullptr: stop), in the order they happen. Program frees are not moves.
  void set_residency_log(std::vector<ResidencyEvent>* log) { residency_log_ = log; }

  // For Tensor's accessors. REQUIRES: a live tensor of this engine.
  const TensorRecord& record(const Tensor& tensor) const;

 private:
  // First error a closure raised on a stream thread; shared with the launched kernels.
  struct ClosureErrors {
    std::mutex mu;
    std::atomic<bool> any{false};
    Status first;  // GUARDED_BY(mu)
  };

  Engine(EngineOptions options, Device& device);

  Result<Tensor> create_filled(TensorSpec spec, const void* host_data, TensorKind default_kind);
  // The record of `tensor` for `op` (error message context), or why it cannot be used.
  Result<std::uint32_t> usable_slot(const Tensor& tensor, std::string_view op,
                                    std::string_view role) const;
  Status take_closure_error();

  // Residency (engine_residency.cc).
  void log_residency(std::uint32_t slot, Residency to) {
    if (residency_log_ != nullptr && in_iteration_) {
      residency_log_->push_back({tensors_.id_of(slot), tape_.size(), to});
    }
  }
  // The bookkeeping of an eviction whose device block was given back: the bytes are now `to`.
  void left_device(std::uint32_t slot, Residency to);
  Status make_resident(std::uint32_t slot, std::string_view op);
  Status swap_in(std::uint32_t slot, std::string_view op);
  Status recompute(std::uint32_t slot, std::string_view op);
  // Launches tape_[op_index]'s closure on the compute stream with `pointers` (inputs, then
  // outputs); `timed` records a pair of events around it.
  Status launch(std::size_t op_index, std::span<void* const> pointers, bool timed);
  // The kernel that runs `code` on `pointers` (inputs, then outputs) and reports a throw.
  // Runs `code` on `all` (inputs, then outputs) and records a throw in `errors`, naming the op:
  // the body of every kernel the engine launches.
  static void run_closure(const OpCode& code, std::span<void* const> all, std::size_t inputs,
                          const LaunchContext& context, ClosureErrors* errors);
  Kernel closure_kernel(std::shared_ptr<const OpCode> code, std::span<void* const> pointers,
                        std::size_t inputs);
  // The kernel for a launch of tape op `op` on `pointers` (inputs, then outputs). It captures
  // only a pointer into launches_ (so std::function holds it without allocating, and the stream's
  // thread frees nothing the host allocated), and reads the op's OpCode through the tape.
  // REQUIRES: `op` stays on the tape until the compute stream has run the kernel.
  Kernel tape_kernel(const OpRecord& op, std::span<void* const> pointers);
  // check_outputs: runs `code` twice on `pointers` (inputs, then outputs), on outputs poisoned
  // with two patterns, and compares. On success the outputs hold the second run's bits.
  Status check_closure_outputs(const std::shared_ptr<const OpCode>& code,
                               const std::vector<void*>& pointers, std::size_t inputs,
                               const std::vector<TensorSpec>& outputs,
                               const std::vector<std::size_t>& output_bytes,
                               std::chrono::nanoseconds cost);
  std::size_t evict(std::size_t bytes_needed);
  // evict()'s work: releases unread released storage, then evicts ranked victims.
  std::size_t evict_for(std::size_t bytes_needed);
  // Executor hooks (engine_plan.cc). Before op `op_index` is run on these inputs: follows or
  // leaves the plan, maps profile tensors to slots, starts the prefetches due.
  Status plan_before_op(std::size_t op_index, std::string_view name,
                        const std::vector<std::uint32_t>& input_slots);
  // After op `op_index` was launched: the plan's swap-outs and drops, and drops again of tensors
  // that a replay rebuilt inside their planned interval.
  void plan_after_op(std::size_t op_index);
  void plan_begin_iteration();
  // A tensor made by input()/parameter() inside the iteration, or live at its start.
  void plan_tensor_created(std::uint32_t slot);
  // Drops, until `bytes_needed` are freed, the tensors a replay of the current op rebuilt that
  // the plan keeps off the device (plan_after_op would drop them after the op); the bytes freed.
  std::size_t drop_rebuilt_planned_off(std::size_t bytes_needed);
  // Whether the plan keeps `slot` off the device at op `op_index` (it was rebuilt inside an
  // interval of its eviction, before the op from which the plan keeps it).
  bool kept_off(std::uint32_t slot, std::size_t op_index) const;
  // Drops a resident, unlocked tensor the plan evicts by recompute, if a replay can bring it
  // back; whether it did.
  bool drop_planned(std::uint32_t slot);
  // After the device was synchronized: late-prefetch feedback, counters, re-planning.
  Status plan_end_iteration(bool ok, bool profile_completed);
  // Starts the copy back of the swapped tensor in `slot` on the prefetch stream.
  Status prefetch(std::uint32_t slot, std::size_t eviction);
  // Makes the compute stream wait for a copy back into `slot` it has not waited for yet;
  // `for_use`: the wait is for an op that reads it (timed for late-prefetch feedback).
  Status settle_arrival(std::uint32_t slot, bool for_use);
  std::uint32_t& planned_off(std::uint32_t slot);
  // Whether a released tensor may give its storage back now: no replay that can still happen
  // reads it, or it can be rebuilt by replay when one does.
  bool storage_releasable(std::uint32_t slot) const;
  // Gives back the storage of released tensors that no replay of a dropped tensor reads;
  // returns the device block bytes freed.
  std::size_t free_unread_released_storage();
  bool swap_out(std::uint32_t slot);
  void drop(std::uint32_t slot);
  // Frees host copies of resident tensors (clean copies) until `bytes` fit in the host tier.
  void reclaim_clean_copies(std::size_t bytes);
  void free_host_copy(TensorRecord& r);
  // NVMe tier (engine_offload.cc). Creates the tier and its transfer engine when asked for.
  Status create_nvme_tier();
  // Spills a resident tensor to NVMe, device -> staging -> disk, and frees its device block once
  // every byte is written. False when there is no tier or no room in it, or when the write
  // failed: then the tensor stays resident and the I/O error is returned by the next call.
  bool spill_to_nvme(std::uint32_t slot);
  // Brings a spilled tensor back to a new device block through staging; its extent is freed.
  Status swap_in_from_nvme(std::uint32_t slot, std::string_view op);
  void free_nvme_copy(TensorRecord& r);
  // Room for new copies below the device: the host tier's, plus the NVMe tier's.
  std::size_t offload_free_bytes() const;
  // Returns every byte a tensor holds (device block and host copy).
  void free_storage(std::uint32_t slot);
  void unlock(const std::vector<std::uint32_t>& slots);
  std::string out_of_memory_message(std::string_view op, std::size_t bytes_needed,
                                    const Status& allocator_status) const;
  Status poll_timings(bool wait);
  // An empty slot list, from spare_slot_lists_ when there is one.
  std::vector<std::uint32_t> take_slot_list();
  // The id of op name `name` in op_names_, interned on first use.
  std::uint32_t intern_op_name(std::string_view name);

  EngineOptions options_;
  Device& device_;
  Stream& compute_;
  std::unique_ptr<Stream> copy_;
  // Copies back to the device that a plan starts ahead of their use (the other direction from
  // copy_'s swap-outs, so that the two overlap).
  std::unique_ptr<Stream> prefetch_;
  std::unique_ptr<HostTier> host_tier_;
  // The NVMe tier and the transfer engine that reaches it (engine_offload.cc); null without
  // one. transfers_ is declared after nvme_ so that it is destroyed first.
  std::unique_ptr<NvmeTier> nvme_;
  std::unique_ptr<TransferEngine> transfers_;
  std::unique_ptr<EventPool> events_;
  std::unique_ptr<OpTimer> timer_;
  std::unique_ptr<Profiler> profiler_;
  std::shared_ptr<ClosureErrors> closure_errors_;

  TensorTable tensors_;
  std::vector<OpRecord> tape_;
  // Per op name, by interned id (OpRecord::name_id): what timing and cost estimates need.
  struct OpNameStats {
    std::int64_t last_cost_ns = 0;  // last measured duration; 0 = never measured
    std::uint64_t runs = 0;         // run() calls of this name that launched (for sampling)
  };
  // Transparent, so that run() looks a name up by string_view without building a string.
  struct NameHash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard name
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::uint32_t, NameHash, std::equal_to<>> op_name_ids_;
  std::vector<OpNameStats> op_names_;
  // run()'s launch pointers (inputs, then outputs), kept to save an allocation per op. Only
  // run() uses it, and run() is not re-entered (eviction and recompute use their own).
  std::vector<void*> run_pointers_;
  // run()'s output sizes, kept for the same reason.
  std::vector<std::size_t> run_output_bytes_;
  // Emptied slot lists of the tapes of past iterations, which run() reuses for its tape entry's
  // inputs and outputs: a steady loop then allocates no slot list per op.
  std::vector<std::vector<std::uint32_t>> spare_slot_lists_;
  // What a tape_kernel reads when it runs. launches_[0, launches_used_) may still be read by
  // queued kernels; synchronize() recycles them all once the compute stream has drained, so a
  // steady loop allocates none.
  struct Launch {
    const OpCode* code;
    LaunchPointers pointers;
    std::size_t inputs;
  };
  std::vector<std::unique_ptr<Launch>> launches_;
  std::size_t launches_used_ = 0;
  // Names of the tensors released by the last end_iteration, for the use-after-release message.
  std::unordered_map<std::uint64_t, std::string> retired_names_;
  std::uint64_t tick_ = 0;
  std::vector<ResidencyEvent>* residency_log_ = nullptr;
  bool in_iteration_ = false;
  std::string current_op_;  // the op being run, for the eviction callback's messages
  Status deferred_error_;   // from an IterationScope's destructor, returned by the next call
  EngineStats stats_;
  ExecutorState executor_;
  ExecutorStats executor_stats_;
  bool prefetching_ = false;  // prefetch() is allocating: evict() frees nothing for it
  // Slots a recompute replay brought back during the current op (for plan_after_op).
  std::vector<std::uint32_t> rebuilt_;
  // Prefetches waited for by an op in this iteration: `ready` is recorded on the compute stream
  // right before its wait on `arrival`; a positive time from ready to arrival means it was late.
  struct ArrivalWait {
    Event* ready = nullptr;
    Event* arrival = nullptr;
    int plan = 0;
    std::size_t eviction = 0;
  };
  std::vector<ArrivalWait> arrival_waits_;

  // Last: destroyed first, returning every block before the streams and events go away.
  std::unique_ptr<CachingAllocator> allocator_;

  friend class IterationScope;
};

// begin_iteration() on construction, end_iteration() on destruction. An error from the
// destructor's end_iteration is returned by the engine's next begin_iteration(); call end()
// to see it at once.
class IterationScope {
 public:
  explicit IterationScope(Engine& engine);
  ~IterationScope();
  IterationScope(const IterationScope&) = delete;
  IterationScope& operator=(const IterationScope&) = delete;
  // Status of begin_iteration.
  const Status& status() const { return begin_status_; }
  Status end();

 private:
  Engine& engine_;
  Status begin_status_;
  bool ended_ = false;
};

}  // namespace ebb
