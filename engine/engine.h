// Engine: what a training loop runs its operators through. It owns the device memory of the
// loop (a CachingAllocator under a budget), the tensors (parameters, inputs, activations,
// gradients, ...) and the op tape of the current iteration, and it makes a loop that does not
// fit in the budget run anyway, with exactly the same bits, by dynamic eviction: when an
// allocation would pass the budget, the allocator calls back into the engine, which swaps
// resident tensors to a pinned host tier (spilling to an NVMe tier when the host tier is full)
// or drops them (see engine/residency/eviction.h for the victim choice); an evicted tensor is
// brought back when an op needs it, by a copy back or by replaying its producer from the tape
// (recursively, through dropped inputs). After the warm-up it can follow a Plan instead
// (set_plan, or EngineOptions::planner), and falls back to dynamic eviction where the plan does
// not hold.
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
// Structure: the Engine is a facade over its sub-layers (docs/ARCHITECTURE.md): the tensor table
// and the tape (engine/runtime/tape.h), the launcher that runs closures on the compute stream
// (engine/runtime/op_launcher.h), the profiler, the pager that owns every byte and moves it
// (engine/residency/pager.h) and the executor that follows plans
// (engine/executor/plan_executor.h). run() orchestrates them; each owns its own state.
//
// Ownership: the Engine references the Device (which must outlive it) and owns the sub-layers;
// the pager owns the allocator, the host tier, the NVMe tier (when asked for) and the transfer
// engine with its two copy streams. Two engines are independent (they share only the device,
// and its default stream when given the same device).
//
// Thread safety: not thread-safe; one thread drives an engine. Closures run on the compute
// stream's thread (cpu) and touch only their own arguments.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "allocator/caching_allocator.h"
#include "engine/executor/plan_executor.h"
#include "engine/residency/eviction.h"
#include "engine/residency/pager.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/op_launcher.h"
#include "engine/runtime/profiler.h"
#include "engine/runtime/tape.h"
#include "engine/runtime/tensor.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/host_tier.h"
#include "offload/nvme_tier.h"

namespace ebb {

// Counters since the engine was created: the pager's (evictions, copies, replays) and the ops
// run() launched.
struct EngineStats : ResidencyStats {
  std::int64_t ops_run = 0;  // run() calls that launched their op
};

class Engine {
 public:
  // After the warm-up, one run in this many of each op name is timed (see run()).
  static constexpr std::uint64_t kTimingSamplePeriod = OpLauncher::kTimingSamplePeriod;

  // Creates the sub-layers: the allocator (with the pager's eviction callback), the pinned host
  // tier, the NVMe tier when asked for, the transfer engine's copy streams, and the launcher on
  // the device's default stream (the compute stream).
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

  // Runs an op that changes tensors in place: `fn` reads `inputs` (OpArgs::inputs) and reads and
  // writes `targets` (OpArgs::outputs). For model state: gradients accumulated into their
  // buffers, an optimizer's update of parameters and moments. A target must not have been made
  // by an op of this iteration (so no replay depends on it: parameters, gradient buffers,
  // optimizer state, inputs, or views of them). Before the write, every dropped tensor a replay
  // would rebuild from a target's old bytes is rebuilt; afterwards the ops that read them are
  // not replayed again, and the targets' clean host copies are dropped. The op is recorded on the
  // tape and in the profile (its inputs, then its targets) like any other, and is never replayed.
  // Errors as run(); kInvalidArgument for a target an op of this iteration made.
  Status update(std::string_view name, std::span<const Tensor> inputs,
                std::span<const Tensor> targets, OpFn fn,
                std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
  Status update(std::string_view name, std::initializer_list<Tensor> inputs,
                std::initializer_list<Tensor> targets, OpFn fn,
                std::chrono::nanoseconds cost = std::chrono::nanoseconds(0)) {
    return update(name, std::span<const Tensor>(inputs.begin(), inputs.size()),
                  std::span<const Tensor>(targets.begin(), targets.size()), std::move(fn), cost);
  }

  // A tensor that names `spec`'s elements of `base`'s bytes from `byte_offset` (a parameter in a
  // flat model-state buffer): no bytes of its own, always where its base is. Ops read and write
  // views like any tensor; what the engine moves, profiles and plans is the base. Views are of
  // carried tensors and are carried; a base cannot be released while a view of it lives. A view
  // of a view is a view of the same base. kInvalidArgument for a base that is not carried, a
  // range past the base's bytes, or an offset that is not a multiple of the element size.
  // spec.kind kActivation (the default) takes the base's kind.
  Result<Tensor> view(const Tensor& base, std::size_t byte_offset, TensorSpec spec);

  // Copies `bytes` (at most the tensor's) to `host`, bringing the tensor back first if it was
  // evicted; returns when the copy is done.
  Status read(const Tensor& tensor, void* host, std::size_t bytes);

  // Copies `bytes` (at most the tensor's) from `host` into the tensor's first bytes, as an
  // in-place write (update()'s rules: not a tensor an op of this iteration made); returns when
  // the copy is done. Outside an iteration only (it is not an op of any profile): for loading
  // model state, a checkpoint's, say. kFailedPrecondition inside an iteration.
  Status write(const Tensor& tensor, const void* host, std::size_t bytes);

  // Model state updated off the device (engine/optim/offload_step.cc) moves with these three.
  // read_async: starts copying the first `bytes` of a tensor no op of this iteration made (a
  // gradient buffer) to `host` on the device-to-host lane, after the compute stream's work so
  // far; the tensor stays on the device until its copy is done, and an update() that writes it
  // later waits for the copy. A read_async whose tensor does not fit beside those held by
  // running copies waits for them first. wait_reads() waits for every such copy
  // (end_iteration() does too); `host` must stay valid until then.
  Status read_async(const Tensor& tensor, void* host, std::size_t bytes);
  Status wait_reads();
  // replace_on_host: the tensor's bytes become `bytes` (all of them) from `host`, kept on the
  // host tier: its device block is given back, and its next use copies the new bytes in, or a
  // prefetch() does, ahead of it, as for a swapped tensor. An in-place write (update()'s rules),
  // inside an iteration or outside. kInvalidArgument for a view or a partial size; kOutOfMemory
  // naming the tensor when the host tier has no room (the tensor is then unchanged).
  Status replace_on_host(const Tensor& tensor, const void* host, std::size_t bytes);
  // Starts bringing a tensor that is on the host back to the device on the host-to-device lane,
  // into free room only; its next use waits for the copy. Returns whether a copy started (false:
  // already there, or no room yet; the use brings it back then).
  Result<bool> prefetch(const Tensor& tensor);
  // Releases a tensor now; the handle is invalid afterwards.
  Status release(const Tensor& tensor);
  // Gives a carried tensor's bytes back without keeping them anywhere (ZeRO stage 2's gradient
  // buffers once reduced, engine/zero/): its next use finds zeros, as a freshly made tensor.
  // Dropped tensors whose replay would read it are rebuilt first, as before an update().
  // Inside an iteration or outside. kInvalidArgument for a view or a tensor that is not carried.
  Status discard(const Tensor& tensor);
  // Carries a tensor of the current iteration into the next ones.
  Status keep(const Tensor& tensor);

  // Gathered tensors: ZeRO stage 3's full parameters (engine/zero/), whose bytes live split
  // across the ranks. make_gathered: `tensor` (carried, not a view) becomes gathered: once
  // discard()ed, its bytes come back not as zeros but by the collective `make` returns (from
  // the new block and the device pointers of `sources`, carried tensors that are not views,
  // locked while it runs), launched on the transfer engine's communication lane
  // (offload/transfer_engine.h): by gather(), ahead of its use, or by the op that needs it.
  // Either way the op waits for it on the device, as for a prefetched copy. A gathered tensor
  // that holds bytes is like any other (eviction may swap it; it is never dropped, as carried
  // tensors are not); its bytes are let go only by discard(). Collectives must run in the same
  // order on every rank: gather() and discard() calls, and the uses, follow the program, so the
  // order is the program's. An update() that writes a source waits for the gathers reading it.
  // A null `make` makes the tensor ordinary again (when discarded, its next use finds zeros).
  // kInvalidArgument for a view or a tensor that is not carried, among the tensor or sources.
  using GatherKernelFactory = std::function<Kernel(void* dst, const std::vector<void*>& sources)>;
  Status make_gathered(const Tensor& tensor, std::span<const Tensor> sources,
                       GatherKernelFactory make,
                       std::chrono::nanoseconds cost = std::chrono::nanoseconds(0));
  // Starts gathering a discarded gathered tensor now (nothing when it holds bytes).
  Status gather(const Tensor& tensor);
  // The compute stream waits for every gather in flight (their errors are returned).
  Status wait_gathers();
  // Called by run() and update() first of all, with the index the op will have in the
  // iteration's tape and the tensors it reads (update(): its inputs, then its targets), inside
  // an iteration only: where a ZeRO stage 3 schedule starts and ends gathers. The hook may call
  // gather() and discard(), not run() or update(). Null: none.
  using OpHook = std::function<Status(std::size_t op_index, std::span<const Tensor> reads)>;
  void set_op_hook(OpHook hook) { op_hook_ = std::move(hook); }

  Status begin_iteration();
  // Releases the iteration's tensors that are not carried, clears the tape and waits for the
  // device. Returns the first error the iteration's work raised.
  Status end_iteration();
  bool in_iteration() const { return in_iteration_; }
  // Waits for all work of the engine (compute and copies); returns a closure error or a stream
  // error.
  Status synchronize();

  const EngineOptions& options() const { return options_; }
  EngineStats stats() const;
  CachingAllocator& allocator() { return pager_->allocator(); }
  HostTier& host_tier() { return pager_->host_tier(); }
  // The NVMe tier; nullptr when options().nvme_directories is empty.
  NvmeTier* nvme_tier() { return pager_->nvme_tier(); }
  // The transfer engine every device<->host and device<->NVMe copy goes through.
  TransferEngine& transfers() { return pager_->transfers(); }
  Stream& compute_stream() { return launcher_->stream(); }
  Device& device() { return options_.device; }
  // The tape of the current iteration and the tensor table, for the profiler and for tests.
  const std::vector<OpRecord>& tape() const { return tape_.ops(); }
  const TensorTable& tensors() const { return tensors_; }
  // The profile of the warm-up iterations: the last one's if they all agree (Profiler).
  // kFailedPrecondition while the warm-up is running (saying how many iterations are left) or
  // when the iterations disagree (naming the op index and how).
  Result<Profile> profile() const { return profiler_->profile(); }
  // Where a live tensor's bytes are now (a view's: its base's); kInvalidArgument for a released
  // or foreign tensor.
  Result<Residency> residency(const Tensor& tensor) const;
  // Device bytes held by tensors of `kind` (the allocator's blocks, as rounded), now and at their
  // peak since the allocator's peaks were last reset. kGradient counts the gradient buffers made
  // outside iterations (the model state's); the gradients ops output (an activation's, a
  // weight's before it is accumulated) are op_gradient_memory().
  StatCounter memory_by_kind(TensorKind kind);
  StatCounter op_gradient_memory();

  // Executor (engine/executor/plan_executor.h). Adds `plan`, made for `profile`, to the plans
  // the engine follows from the next iteration on (replacing one made for the same profile
  // key). The plan is checked against the profile (validate_plan) and against the engine's
  // budget; a refused plan is kInvalidArgument naming the field, and the engine keeps running
  // as it did (dynamic eviction, or the plans it had).
  Status set_plan(const Plan& plan, const Profile& profile);
  // Forgets every plan: later iterations run under dynamic eviction alone.
  void clear_plans() { executor_->clear_plans(); }
  // The plan the current (or next) iteration follows; nullptr when none.
  const Plan* active_plan() const { return executor_->active_plan(); }
  ExecutorStats executor_stats() const { return executor_->stats(); }
  // Records every eviction, copy back, prefetch and replay of the iterations from now on into
  // `log` (not owned; nullptr: stop), in the order they happen. Program frees are not moves.
  void set_residency_log(std::vector<ResidencyEvent>* log) { pager_->set_residency_log(log); }
  // The iteration moved more than the log's bound (Pager::residency_log_limit) and it stopped.
  bool residency_log_truncated() const { return pager_->residency_log_truncated(); }

  // For Tensor's accessors. REQUIRES: a live tensor of this engine.
  const TensorRecord& record(const Tensor& tensor) const;

 private:
  explicit Engine(EngineOptions options);

  Result<Tensor> create_filled(TensorSpec spec, const void* host_data, TensorKind default_kind);
  // The slot of `tensor` for `op` (error message context), or why it cannot be used.
  Result<std::uint32_t> usable_slot(const Tensor& tensor, std::string_view op,
                                    std::string_view role) const;
  // The checks every op's arguments pass (`call` is "run" or "update", for messages).
  Status check_op(std::string_view call, std::string_view name, const OpFn& fn,
                  std::chrono::nanoseconds cost) const;
  // run()'s checks of its arguments; fills run_output_bytes_.
  Status check_run(std::string_view name, const std::vector<TensorSpec>& outputs, const OpFn& fn,
                   std::chrono::nanoseconds cost);
  // Appends the slots of `tensors` as named to run_views_ and their storage slots (a view's
  // base) to `storage`; `role` ("input", "target") names them in errors.
  Status resolve(std::string_view name, std::string_view role, std::span<const Tensor> tensors,
                 std::vector<std::uint32_t>& storage);
  // Blocks for run()'s outputs, appended to run_pointers_ (after the inputs'), and with
  // options().check_outputs the closure checked on them; on failure the blocks are freed.
  Status prepare_outputs(const std::shared_ptr<const OpCode>& code,
                         const std::vector<TensorSpec>& outputs, std::chrono::nanoseconds cost);
  // Registers the op on the tape (reading `input_slots`, writing `writes` in place) and its
  // outputs in the table; returns their handles.
  std::vector<Tensor> record_op(std::shared_ptr<const OpCode> code,
                                std::vector<std::uint32_t> input_slots,
                                std::vector<std::uint32_t> writes, std::vector<TensorSpec>& outputs,
                                std::chrono::nanoseconds cost);
  // Launches the op just recorded with run_pointers_, unlocks what it locked, and lets the
  // executor and the profiler see it.
  Status launch_recorded(std::size_t op_index);
  // Carried tensors that are dropped lose their producer at the end of the iteration: they are
  // rebuilt now, while the tape lasts.
  Status rebuild_carried();
  // Frees the iteration's tensors that are not carried, and forgets the producers of the rest.
  void retire_iteration();
  Status poll_timings(bool wait);
  // Makes the compute stream wait for read_async() copies of any of `slots` (storage slots).
  Status order_after_reads(std::span<const std::uint32_t> slots);
  // Unlocks the read_async() copies that are done (with `wait`: every one, after waiting).
  Status reap_reads(bool wait);
  // Waits for the read_async() copy of storage slot `slot`, if one is running.
  Status wait_read_of(std::uint32_t slot);
  // read() and read_async(): the tensor's slot, after the launcher's error and a size check.
  Result<std::uint32_t> readable_slot(const Tensor& tensor, const char* what, std::size_t bytes);

  EngineOptions options_;
  TensorTable tensors_;
  Tape tape_;
  std::unique_ptr<OpLauncher> launcher_;
  std::unique_ptr<Profiler> profiler_;
  std::unique_ptr<Pager> pager_;
  std::unique_ptr<PlanExecutor> executor_;
  // run()'s launch pointers (inputs, then outputs) and output sizes, kept to save allocations
  // per op. Only run() uses them, and run() is not re-entered.
  std::vector<void*> run_pointers_;
  std::vector<std::size_t> run_output_bytes_;
  // The op's inputs (and targets) as named, views included, for their device pointers.
  std::vector<std::uint32_t> run_views_;
  // read_async() copies not yet waited for: the tensor's storage slot (locked) and the copy.
  std::vector<std::pair<std::uint32_t, std::shared_ptr<Transfer>>> pending_reads_;
  std::int64_t ops_run_ = 0;
  bool in_iteration_ = false;
  OpHook op_hook_;
  bool in_op_hook_ = false;
  // Calls op_hook_ (not re-entered).
  Status call_op_hook(std::span<const Tensor> reads);

  friend class IterationScope;
};

// begin_iteration() on construction, end_iteration() on destruction. An error from the
// destructor's end_iteration is returned by the engine's next call; call end() to see it at
// once.
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
