// Pager: where each tensor's bytes are, and how they move. It owns the device memory (a
// CachingAllocator under the budget), the pinned host tier, the NVMe tier and the transfer
// engine that moves bytes between them, and it keeps the residency fields of the tensor table
// true. It brings a tensor back when an op needs it (a copy back from host or NVMe, or a replay
// of its producer from the tape, recursively through dropped inputs), and evicts tensors when
// the allocator asks for room (dynamic eviction: swap out to the host tier, spill to NVMe when
// that is full, or drop; victims ranked by engine/residency/eviction.h). The executor (one layer
// up) moves tensors through the same calls: swap_out, drop_recoverable, prefetch.
//
// Streams. Closures and replays run on the compute stream. Every copy between the device and
// host or NVMe goes through the TransferEngine's lanes (one stream per direction): a swap-out is
// ordered after the compute stream's work (the tensor's writer) by an event, and its device
// block is freed with the device-to-host lane as its last use, so the allocator hands it to the
// compute stream only once the copy has completed. A copy back fills a block allocated on the
// compute stream, after the compute stream's work so far and after the swap-out that filled
// the host copy; the compute stream waits for it before the op that reads it (an op's wait
// issues it at once if it is still queued). The host copy is kept after a copy back as a clean
// copy (tensors are immutable), so evicting the tensor again costs no copy; clean copies are
// given back when the host tier runs short. A spill to NVMe is waited for before the device
// block is freed, so a tensor always has one complete copy.
//
// Ownership: owned by the Engine; references the device, the tensor table, the tape and the
// launcher, which outlive it. Destroying it returns every tensor's storage.
// Thread safety: not thread-safe; the engine's driving thread calls it (the allocator calls
// evict() back on that thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "allocator/caching_allocator.h"
#include "engine/residency/eviction.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/op_launcher.h"
#include "engine/runtime/tape.h"
#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/host_tier.h"
#include "offload/nvme_tier.h"
#include "offload/transfer_engine.h"

namespace ebb {

// Counters of the pager since it was created. Bytes are tensor bytes as the specs ask.
struct ResidencyStats {
  std::int64_t evictions = 0;           // tensors evicted (dropped or swapped out)
  std::int64_t drops = 0;               // evictions that dropped a tensor
  std::int64_t swap_outs = 0;           // evictions that copied (or kept) a host copy
  std::int64_t swapped_out_bytes = 0;   // bytes copied device -> host by swap-outs
  std::int64_t swapped_in_bytes = 0;    // bytes copied host -> device by copies back
  std::int64_t recomputed_ops = 0;      // producer replays
  std::int64_t recompute_ns = 0;        // estimated device time of those replays
  std::int64_t eviction_calls = 0;      // times the allocator asked for room
  std::int64_t nvme_spills = 0;         // swap-outs that went to the NVMe tier
  std::int64_t nvme_written_bytes = 0;  // tensor bytes written device -> NVMe
  std::int64_t nvme_read_bytes = 0;     // tensor bytes read NVMe -> device
  std::int64_t gathers = 0;             // gathered tensors brought back by their collective
  std::int64_t gathered_bytes = 0;      // their bytes
  std::int64_t gathers_at_use = 0;      // of those, started by the op that needed them
  // Exposed gather time: for each gather an op waited for, how long after the op asked for it
  // (an event on the compute stream) the gather completed, when it did after; summed. Counted
  // once the device has passed them (end of iteration).
  std::int64_t exposed_gather_ns = 0;
};

// One move of a tensor's bytes during an iteration, as Engine::set_residency_log records it.
struct ResidencyEvent {
  std::uint64_t tensor = 0;           // Tensor::id()
  std::size_t ops_launched = 0;       // ops of the iteration launched when it moved
  Residency to = Residency::kDevice;  // kDevice: back (copy back, prefetch, replay); else away
};

// What the layer above adds to dynamic eviction (the executor implements it while it follows a
// plan). Called on the driving thread, inside the allocator's eviction callback.
class EvictionHooks {
 public:
  virtual ~EvictionHooks() = default;
  // Frees, before dynamic eviction ranks victims, what the plan would evict after the op anyway;
  // returns the device block bytes freed.
  virtual std::size_t make_room(std::size_t bytes_needed) = 0;
  // Dynamic eviction evicted `tensors` tensors for one request.
  virtual void evicted_dynamically(std::int64_t tensors) = 0;
};

class Pager {
 public:
  // Creates the allocator (with the pager's eviction callback), the host tier, the NVMe tier
  // (when options.nvme_directories is not empty) and the transfer engine. Errors from them are
  // returned as they are.
  static Result<std::unique_ptr<Pager>> create(const EngineOptions& options, TensorTable& tensors,
                                               Tape& tape, OpLauncher& launcher);
  ~Pager();
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  // The allocator's category for a tensor of `kind` (AllocatorStats::category_bytes): 1 + the
  // kind, so that 0 stays the allocator's untagged default; except the gradients ops output
  // (`op_output`: an activation's gradient, a weight's before it is accumulated), which are
  // kOpGradientCategory, so that kGradient's bytes are the gradient buffers of the model state.
  static constexpr std::uint8_t kOpGradientCategory = 7;
  static std::uint8_t allocation_category(TensorKind kind, bool op_output = false) {
    if (op_output && kind == TensorKind::kGradient) return kOpGradientCategory;
    return static_cast<std::uint8_t>(1 + static_cast<int>(kind));
  }

  // A device block of `bytes` for a tensor of `kind` on the compute stream (`tag` goes into the
  // allocator's trace). When even evicting cannot make room: kOutOfMemory saying what
  // `describe()` names needs the bytes, what is resident and held, and the allocator's report.
  // `op_output`: the tensor is (or is rebuilt as) an op's output, not carried model state.
  template <typename Describe>
  Result<void*> allocate(std::size_t bytes, TensorKind kind, std::string_view tag,
                         Describe&& describe, bool op_output = false) {
    Result<void*> block =
        allocator_->allocate(bytes, launcher_.stream(), tag, allocation_category(kind, op_output));
    if (block.ok() || block.status().code() != StatusCode::kOutOfMemory) return block;
    return out_of_memory(out_of_memory_message(describe(), bytes, block.status()));
  }

  // Brings the tensor's bytes to the device if they are not there: a copy back from host or
  // NVMe, or a replay; waits (on the compute stream) for a prefetch that brought them.
  Status make_resident(std::uint32_t slot, std::string_view op);
  // Makes each slot resident and locks it, one by one, so that bringing one back cannot evict
  // another; on failure unlocks the ones it locked. REQUIRES: unlock(slots) after use.
  Status lock_resident(std::span<const std::uint32_t> slots, std::string_view op);
  void unlock(std::span<const std::uint32_t> slots);

  // The plan's moves. swap_out: copies a resident, unlocked tensor to the host tier (or NVMe)
  // and frees its block; false when it cannot. drop_recoverable: drops a resident, unlocked
  // tensor whose replay can rebuild it; false when it cannot. prefetch: starts the copy back of
  // a tensor on host (or a read of one on NVMe, on the transfer engine's I/O thread) into a block
  // taken from free room only (evicting for a prefetch ahead of its time would trade a tensor
  // needed sooner for one needed later), with `deadline` in the transfer engine's queue; when there
  // is no room it does nothing (the op that reads the tensor brings it back). `id` (> 0) is
  // reported by take_late_prefetches() if the op that reads the tensor had to wait for the copy.
  bool swap_out(std::uint32_t slot);
  // swap_out to the NVMe tier (a plan's swap to "nvme"): the write goes through the transfer
  // engine's I/O thread after the compute stream's work so far, and is waited for before the
  // block is given back (the thread reads the block). A tensor with a clean host copy keeps that
  // copy instead. False without an NVMe tier, when the tier is full, or when the write failed
  // (the failure is deferred to the next launch).
  bool swap_out_to_nvme(std::uint32_t slot);
  bool drop_recoverable(std::uint32_t slot);
  Result<bool> prefetch(std::uint32_t slot, TransferDeadline deadline, std::uint32_t id);
  // The ids of the prefetches since the last call that arrived after the op that read them
  // asked for them (measured with events once the device has passed them). REQUIRES: the
  // device synchronized since those ops.
  std::vector<std::uint32_t> take_late_prefetches();
  // Tensors a replay brought back since the last clear_rebuilt() (recorded while plans()).
  const std::vector<std::uint32_t>& rebuilt() const { return rebuilt_; }
  void clear_rebuilt() { rebuilt_.clear(); }

  // A plan may drop tensors (so released tensors that replays read keep their bytes, and
  // replays are recorded in rebuilt()); `hooks` (may be null; not owned) join dynamic eviction.
  void follow_plans(bool plans, EvictionHooks* hooks);

  // Before an in-place op (Engine::update) writes the tensors in `targets` (storage slots): every
  // wanted dropped tensor whose replay would read one of them is rebuilt now, while it would
  // still give the same bits; tape ops that read one are marked stale (their outputs can no
  // longer be rebuilt by replay); and the targets' clean host copies, which the write makes
  // out of date, are given back.
  Status prepare_write(std::span<const std::uint32_t> targets, std::string_view op);
  // Engine::discard: prepare_write's rebuilds, then every copy of the tensor is given back; its
  // next make_resident() allocates a block and fills it with zeros on the compute stream.
  Status discard(std::uint32_t slot, std::string_view op);

  // Gathered tensors (Engine::make_gathered). start_gather: when the tensor is discarded,
  // allocates its block (evicting if it must: a gather is never skipped, every rank runs the
  // same ones), locks its sources resident, and launches its recipe's collective on the
  // communication lane after the compute stream's work so far; the tensor is then resident with
  // its arrival pending (the next use waits for it). Nothing when it holds bytes.
  // settle_gathers_reading: the compute stream waits for every gather in flight that reads one
  // of `slots` (before an in-place write of them). settle_all_gathers: for every one.
  Status start_gather(std::uint32_t slot, std::string_view op, bool at_use = false);
  Status settle_gathers_reading(std::span<const std::uint32_t> slots);
  Status settle_all_gathers();
  // Adds the gathers waited for since the last call to stats().exposed_gather_ns. REQUIRES: the
  // device synchronized since those waits.
  void account_gather_waits();

  // Replaces a carried tensor's bytes with `bytes` bytes from `src` (host memory) and leaves it
  // on the host: the device block (or NVMe copy) is given back, the bytes go into the tensor's
  // host tier buffer, and the next use copies them in (or a prefetch() does, ahead of it), as
  // for a swapped tensor. For an update computed off the device (an optimizer step on the host):
  // the new values never take device memory until they are needed. REQUIRES: prepare_write()
  // for the slot first; not locked. kOutOfMemory naming the tensor when the host tier has no
  // room (the tensor is then unchanged).
  Status replace_on_host(std::uint32_t slot, const void* src, std::size_t bytes,
                         std::string_view op);

  // The program released the tensor: its bytes go now, unless a replay that can still happen
  // reads them and it cannot itself be rebuilt (then they go once no replay reads them). Under
  // a dropping policy without a plan, a released tensor without a producer stays while a live
  // tensor downstream of it may still be dropped and replayed, as DTR keeps constants; under
  // pressure while it is worth its bytes (worth_keeping()), and as a last resort not at all.
  void release(std::uint32_t slot);
  // A plan's hold (Plan::holds): the tensor's bytes stay after its release until end_hold(),
  // whatever the replays read now; then they go as release() would let them. end_holds() ends
  // every hold (an iteration that left its plan, or ended).
  void hold(std::uint32_t slot);
  void end_hold(std::uint32_t slot);
  void end_holds();
  // Returns every byte the tensor holds (device block, host copy, NVMe extent).
  void free_storage(std::uint32_t slot);
  // Waits for every copy of the lanes, queued or issued (not for the compute stream).
  Status synchronize_transfers();

  CachingAllocator& allocator() { return *allocator_; }
  HostTier& host_tier() { return *host_tier_; }
  NvmeTier* nvme_tier() { return nvme_.get(); }
  TransferEngine& transfers() { return *transfers_; }
  const ResidencyStats& stats() const { return stats_; }
  // Records every eviction, copy back, prefetch and replay from now on into `log` (not owned;
  // nullptr: stop), while `recording` says an iteration is running.
  void set_residency_log(std::vector<ResidencyEvent>* log) { residency_log_ = log; }
  void set_in_iteration(bool in_iteration);
  // Entries set_residency_log's log may hold before the pager stops recording and marks it
  // truncated: a multiple of the tape's ops and the tensors, so a thrashing iteration cannot
  // grow it without bound.
  std::size_t residency_log_limit() const;
  bool residency_log_truncated() const { return residency_log_truncated_; }

 private:
  // A prefetch an op waited for: `ready` was recorded on the compute stream right before the
  // wait; if the copy completed after it, the prefetch was late.
  struct ArrivalWait {
    Event* ready = nullptr;
    std::shared_ptr<Transfer> copy;
    std::uint32_t id = 0;
  };

  Pager(const EngineOptions& options, TensorTable& tensors, Tape& tape, OpLauncher& launcher);

  // Bringing back (pager.cc).
  Status copy_back(std::uint32_t slot, std::string_view op);
  Status refill_discarded(std::uint32_t slot, std::string_view op);
  Status read_back_from_nvme(std::uint32_t slot, std::string_view op);
  Status replay(std::uint32_t slot, std::string_view op);
  // Makes the compute stream wait for a copy back into `slot` it has not waited for yet;
  // `for_use`: the wait is for an op that reads it (timed for late-prefetch feedback).
  Status settle_arrival(std::uint32_t slot, bool for_use);
  // settle_arrival for a prefetch read from NVMe: the I/O thread writes the block, so the host
  // waits for it; then the NVMe copy is given back. A failed read leaves the tensor on NVMe.
  Status settle_nvme_arrival(std::uint32_t slot, bool for_use);
  // The bookkeeping of a copy back whose bytes are (or are on their way) in `block`.
  void arrived(std::uint32_t slot, void* block);
  std::string out_of_memory_message(const std::string& what, std::size_t bytes_needed,
                                    const Status& allocator_status) const;
  void log_residency(std::uint32_t slot, Residency to);
  // kOutOfMemory ("thrashed") when replaying an op of `cost_ns` would take this iteration's
  // recompute past options_.max_recompute_overhead times its base compute.
  Status check_thrash(std::int64_t cost_ns, std::string_view op, std::string_view tensor);

  // Evicting (pager_evict.cc). The allocator's callback: frees what the hooks and released
  // tensors allow, then evicts ranked victims.
  std::size_t evict(std::size_t bytes_needed);
  std::size_t evict_ranked(std::size_t bytes_needed);
  bool spill_to_nvme(std::uint32_t slot);
  void drop(std::uint32_t slot);
  // The bookkeeping of an eviction whose device block was given back: the bytes are now `to`.
  void left_device(std::uint32_t slot, Residency to);
  bool storage_releasable(std::uint32_t slot) const;
  // recoverable() with the pager's memo of proven answers (proven_), which chains_changed()
  // forgets; losing_bytes() calls it before a tensor gives up its bytes, unless the tensor was
  // proven recoverable or no op read it.
  bool recoverable_now(std::uint32_t slot) const;
  void chains_changed();
  void losing_bytes(std::uint32_t slot);
  bool held(std::uint32_t slot) const { return slot < held_.size() && held_[slot] != 0; }
  // Clears a hold without freeing anything; false when the slot was not held.
  bool unhold(std::uint32_t slot);
  // Dynamic eviction may drop tensors (policy recompute or both).
  bool drops_dynamically() const {
    return options_.policy == EvictionPolicy::kRecompute ||
           options_.policy == EvictionPolicy::kBoth;
  }
  // Frees the storage of released tensors that no replay of a dropped tensor reads and no hold
  // keeps; unless `last_resort`, not the released sources worth_keeping() either.
  std::size_t free_unread_released_storage(bool last_resort);
  // Under dynamic eviction, whether a released tensor without a producer is worth its bytes:
  // the resident, droppable outputs of the ops that read it (which freeing it would make
  // impossible to drop) are at least as large. `readers`: tape_readers().
  bool worth_keeping(std::uint32_t slot,
                     const std::vector<std::vector<std::uint32_t>>& readers) const;
  // Frees host copies of resident tensors (clean copies) until `bytes` fit in the host tier.
  void reclaim_clean_copies(std::size_t bytes);
  void free_host_copy(TensorRecord& r);
  void free_nvme_copy(TensorRecord& r);
  // Room for new copies below the device: the host tier's, plus the NVMe tier's.
  std::size_t offload_free_bytes() const;

  const EngineOptions& options_;
  TensorTable& tensors_;
  Tape& tape_;
  OpLauncher& launcher_;
  std::unique_ptr<HostTier> host_tier_;
  std::unique_ptr<NvmeTier> nvme_;
  // Declared after the tiers, so that it is destroyed (and stops touching them) first.
  std::unique_ptr<TransferEngine> transfers_;
  ResidencyStats stats_;
  std::vector<ResidencyEvent>* residency_log_ = nullptr;
  bool in_iteration_ = false;
  bool residency_log_truncated_ = false;
  // The thrash limit's figures for this iteration: recompute so far, the op time of the tape's
  // first `base_ops_counted_` ops, and the previous iteration's op time.
  std::int64_t iteration_recompute_ns_ = 0;
  std::int64_t base_ns_ = 0;
  std::size_t base_ops_counted_ = 0;
  std::int64_t previous_base_ns_ = 0;
  bool plans_ = false;
  EvictionHooks* hooks_ = nullptr;
  bool prefetching_ = false;  // prefetch() is allocating: evict() frees nothing for it
  std::vector<std::uint32_t> rebuilt_;
  // Per slot, the epoch in which it was proven recoverable (recoverable_now()).
  mutable std::vector<std::uint32_t> proven_;
  std::uint32_t proven_epoch_ = 1;
  std::vector<std::uint8_t> held_;         // per slot: a plan's hold (hold())
  std::vector<std::uint32_t> held_slots_;  // the slots held_ marks, in any order
  std::vector<ArrivalWait> arrival_waits_;
  std::vector<ArrivalWait> gather_waits_;  // id unused
  // Prefetches read from NVMe that were not done when their op asked for them (their ids).
  std::vector<std::uint32_t> late_nvme_prefetches_;
  // Last: destroyed first, returning every block before the streams and events go away.
  std::unique_ptr<CachingAllocator> allocator_;
};

}  // namespace ebb
