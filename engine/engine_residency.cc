// The Engine's residency machinery: bringing tensors back (swap-in, recompute), evicting them
// (swap-out, drop) when the allocator asks for room, and returning their storage.
//
// Stream protocol. Closures and swap-ins run on the compute stream; swap-outs copy on the copy
// stream: an event recorded on the compute stream after the tensor's last writer is waited for
// by the copy stream, which copies device -> host and records the tensor's host_event; the
// device block is then freed with the copy stream as its last use, so the allocator hands it to
// the compute stream only once that copy has completed. A swap-in allocates on the compute
// stream, waits for host_event, copies host -> device and records host_event again. The host
// copy is kept after a swap-in as a clean copy (tensors are immutable), so evicting the tensor
// again costs no copy; clean copies are given back when the host tier runs short.
#include <string>
#include <utility>

#include "engine/engine.h"

namespace ebb {
namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

void Engine::run_closure(const OpCode& code, std::span<void* const> all, std::size_t inputs,
                         const LaunchContext& context, ClosureErrors* errors) {
  const OpArgs args{std::span<const void* const>(all.data(), inputs), all.subspan(inputs), context};
  std::string failure;
  try {
    code.fn(args);
    return;
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "an exception not derived from std::exception";
  }
  std::lock_guard<std::mutex> lock(errors->mu);
  if (errors->first.ok()) {
    errors->first = internal_error("op " + quoted(code.name) + " threw: " + failure);
  }
  errors->any.store(true, std::memory_order_release);
}

Kernel Engine::closure_kernel(std::shared_ptr<const OpCode> code, std::span<void* const> pointers,
                              std::size_t inputs) {
  ClosureErrors* errors = closure_errors_.get();  // outlives the queued work (see ~Engine)
  return [code = std::move(code), pointers = LaunchPointers(pointers), inputs,
          errors](const LaunchContext& context) {
    run_closure(*code, pointers.all(), inputs, context, errors);
  };
}

Kernel Engine::tape_kernel(const OpRecord& op, std::span<void* const> pointers) {
  Launch launch{op.code.get(), LaunchPointers(pointers), op.inputs.size()};
  if (launches_used_ == launches_.size()) {
    launches_.push_back(std::make_unique<Launch>(std::move(launch)));
  } else {
    *launches_[launches_used_] = std::move(launch);
  }
  const Launch* slot = launches_[launches_used_++].get();
  ClosureErrors* errors = closure_errors_.get();  // outlives the queued work (see ~Engine)
  return [slot, errors](const LaunchContext& context) {
    run_closure(*slot->code, slot->pointers.all(), slot->inputs, context, errors);
  };
}

Status Engine::check_closure_outputs(const std::shared_ptr<const OpCode>& code,
                                     const std::vector<void*>& pointers, std::size_t inputs,
                                     const std::vector<TensorSpec>& outputs,
                                     const std::vector<std::size_t>& output_bytes,
                                     std::chrono::nanoseconds cost) {
  constexpr std::uint8_t kPatterns[2] = {0xA5, 0x5A};
  std::vector<std::vector<std::uint8_t>> copies[2];
  for (int run = 0; run < 2; ++run) {
    copies[run].resize(outputs.size());
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      EBB_RETURN_IF_ERROR(
          compute_.memset_async(pointers[inputs + i], kPatterns[run], output_bytes[i]));
    }
    EBB_RETURN_IF_ERROR(compute_.launch(closure_kernel(code, pointers, inputs), cost));
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      copies[run][i].resize(output_bytes[i]);
      EBB_RETURN_IF_ERROR(compute_.copy_async(copies[run][i].data(), pointers[inputs + i],
                                              output_bytes[i], CopyKind::kDeviceToHost));
    }
  }
  EBB_RETURN_IF_ERROR(compute_.synchronize());
  EBB_RETURN_IF_ERROR(take_closure_error());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::vector<std::uint8_t>& a = copies[0][i];
    const std::vector<std::uint8_t>& b = copies[1][i];
    std::size_t first = a.size();
    std::size_t differing = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
      if (a[k] != b[k]) {
        if (differing == 0) first = k;
        ++differing;
      }
    }
    if (differing > 0) {
      return failed_precondition(
          "op " + quoted(code->name) + " (check_outputs): output " + std::to_string(i) + " " +
          quoted(outputs[i].name) + " differs between two runs on poisoned outputs from byte " +
          std::to_string(first) + ", " + std::to_string(differing) + " of " +
          std::to_string(a.size()) +
          " bytes differ: the closure leaves them unwritten or is not deterministic");
    }
  }
  return ok_status();
}

Status Engine::make_resident(std::uint32_t slot, std::string_view op) {
  const TensorRecord& r = tensors_.at(slot);
  switch (r.residency) {
    case Residency::kDevice:
      return r.arrival_pending ? settle_arrival(slot, /*for_use=*/true) : ok_status();
    case Residency::kHost:
      return swap_in(slot, op);
    case Residency::kDropped:
      if (!r.has_producer()) {
        return failed_precondition(quoted(op) + ": tensor " + quoted(r.name) +
                                   " holds no bytes and has no producer to recompute it from");
      }
      return recompute(slot, op);
    case Residency::kNvme:
      return swap_in_from_nvme(slot, op);
  }
  return internal_error("unknown residency of tensor " + quoted(r.name));
}

Status Engine::swap_in(std::uint32_t slot, std::string_view op) {
  const std::size_t bytes = tensors_.at(slot).bytes;
  Result<void*> ptr = allocator_->allocate(bytes, compute_, tensors_.at(slot).name);
  if (!ptr.ok()) {
    if (ptr.status().code() != StatusCode::kOutOfMemory) return ptr.status();
    return out_of_memory(out_of_memory_message(
        quoted(op) + " (swapping in " + quoted(tensors_.at(slot).name) + ")", bytes, ptr.status()));
  }
  TensorRecord& r = tensors_.at(slot);
  Status s = compute_.wait(*r.host_event);
  if (s.ok()) s = compute_.copy_async(*ptr, r.host_ptr, bytes, CopyKind::kHostToDevice);
  if (s.ok()) s = compute_.record(*r.host_event);
  if (!s.ok()) {
    // The copy may be queued; the block is freed in compute-stream order after it.
    (void)allocator_->free(*ptr);
    return s;
  }
  r.device_ptr = *ptr;
  r.residency = Residency::kDevice;
  stats_.swapped_in_bytes += static_cast<std::int64_t>(bytes);
  log_residency(slot, Residency::kDevice);
  return ok_status();
}

Status Engine::recompute(std::uint32_t slot, std::string_view op) {
  // tape_ does not grow while run() brings inputs back, so `producer` stays valid.
  const auto producer = static_cast<std::size_t>(tensors_.at(slot).producer);
  const std::vector<std::uint32_t> inputs = tape_[producer].inputs;
  const std::vector<std::uint32_t> outputs = tape_[producer].outputs;
  std::vector<std::uint32_t> locked;
  std::vector<void*> pointers;
  pointers.reserve(inputs.size() + outputs.size());
  // The resident inputs are locked first, so that bringing the others back cannot evict them.
  for (std::uint32_t in : inputs) {
    if (tensors_.at(in).residency != Residency::kDevice) continue;
    // A prefetched input: the replay reads it only after its copy back.
    if (Status s = settle_arrival(in, /*for_use=*/true); !s.ok()) {
      unlock(locked);
      return s;
    }
    ++tensors_.at(in).lock_count;
    locked.push_back(in);
  }
  for (std::uint32_t in : inputs) {
    if (tensors_.at(in).residency == Residency::kDevice) continue;
    if (Status s = make_resident(in, op); !s.ok()) {
      unlock(locked);
      return s;
    }
    ++tensors_.at(in).lock_count;
    locked.push_back(in);
  }
  for (std::uint32_t in : inputs) {
    TensorRecord& r = tensors_.at(in);
    r.last_access = tick_;
    pointers.push_back(r.device_ptr);
  }
  // Every output needs a buffer for the replay. Dropped ones adopt theirs (locked until the
  // launch); the others (resident, on host, released) get scratch freed after the replay.
  std::vector<std::uint32_t> adopted;
  std::vector<void*> scratch;
  for (std::uint32_t out : outputs) {
    const TensorRecord& o = tensors_.at(out);
    const bool adopt = o.residency == Residency::kDropped && (out == slot || !o.released);
    Result<void*> ptr = allocator_->allocate(o.bytes, compute_, o.name);
    if (!ptr.ok()) {
      // Built while the replay's inputs are still locked, so the message tells them from the
      // pinned tensors.
      Status failed = ptr.status().code() != StatusCode::kOutOfMemory
                          ? ptr.status()
                          : out_of_memory(out_of_memory_message(
                                quoted(op) + " (recomputing " + quoted(tensors_.at(slot).name) +
                                    " by replaying " + quoted(tape_[producer].code->name) + ")",
                                tensors_.at(out).bytes, ptr.status()));
      for (void* p : scratch) (void)allocator_->free(p);
      for (std::uint32_t a : adopted) {
        TensorRecord& ar = tensors_.at(a);
        (void)allocator_->free(ar.device_ptr);
        ar.device_ptr = nullptr;
        ar.residency = Residency::kDropped;
        --ar.lock_count;
      }
      unlock(locked);
      return failed;
    }
    if (adopt) {
      if (!executor_.plans.empty()) rebuilt_.push_back(out);
      TensorRecord& a = tensors_.at(out);
      a.device_ptr = *ptr;
      a.residency = Residency::kDevice;
      a.last_access = tick_;
      ++a.lock_count;
      log_residency(out, Residency::kDevice);
      adopted.push_back(out);
    } else {
      scratch.push_back(*ptr);
    }
    pointers.push_back(*ptr);
  }
  Status launched = launch(producer, pointers, /*timed=*/false);
  for (void* p : scratch) (void)allocator_->free(p);  // in stream order, after the replay
  unlock(adopted);
  unlock(locked);
  if (!launched.ok()) return launched;
  ++stats_.recomputed_ops;
  stats_.recompute_ns += tape_[producer].cost_ns;
  // A released input was brought back only for this replay (or kept for it).
  for (std::uint32_t in : inputs) {
    const TensorRecord& r = tensors_.at(in);
    if (r.released && r.lock_count == 0 && r.residency != Residency::kDropped &&
        storage_releasable(in)) {
      free_storage(in);
    }
  }
  return ok_status();
}

Status Engine::launch(std::size_t op_index, std::span<void* const> pointers, bool timed) {
  const OpRecord& op = tape_[op_index];
  const OpTimer::Timing timing = timed ? timer_->begin(op_index) : OpTimer::Timing{};
  if (timing.start != nullptr) {
    if (Status s = compute_.record(*timing.start); !s.ok()) {
      timer_->abandon_last();
      return s;
    }
  }
  Status launched = compute_.launch(tape_kernel(op, pointers), op.given_cost);
  if (timing.end != nullptr) {
    Status recorded = launched.ok() ? compute_.record(*timing.end) : launched;
    if (!recorded.ok()) {
      // The start event may be recorded already; waiting for it keeps the pool consistent.
      (void)timing.start->synchronize();
      timer_->abandon_last();
      return recorded;
    }
  }
  return launched;
}

std::size_t Engine::evict(std::size_t bytes_needed) {
  // A prefetch ahead of its time takes only free room: evicting for it would trade a tensor
  // needed sooner for one needed later.
  if (prefetching_) return 0;
  ++stats_.eviction_calls;
  // What the plan keeps off the device but a replay of this op rebuilt goes first: the plan
  // drops it after the op anyway.
  std::size_t freed = drop_rebuilt_planned_off(bytes_needed);
  if (freed >= bytes_needed) return freed;
  const std::int64_t evictions_before = stats_.evictions;
  freed += evict_for(bytes_needed - freed);
  if (executor_.active >= 0 && !executor_.diverged) {
    executor_stats_.fallback_evictions += stats_.evictions - evictions_before;
  }
  return freed;
}

std::size_t Engine::evict_for(std::size_t bytes_needed) {
  std::size_t freed = free_unread_released_storage();
  // Ranked again after every drop: a drop changes what its neighbours cost, and whether their
  // replay chains can still run. A swap changes neither.
  while (freed < bytes_needed) {
    const EvictionContext context{
        .policy = options_.policy,
        .tick = tick_,
        .host_link_bytes_per_s = options_.host_link_bytes_per_s,
        .host_tier_free_bytes = offload_free_bytes(),
    };
    bool dropped = false;
    for (const EvictionCandidate& c : rank_eviction_candidates(tensors_, tape_, context)) {
      if (freed >= bytes_needed) break;
      const TensorRecord& r = tensors_.at(c.slot);
      if (r.residency != Residency::kDevice) continue;  // swapped earlier in this pass
      Result<std::size_t> block = allocator_->block_bytes(r.device_ptr);
      EBB_CHECK(block.ok(), "tensor " + quoted(r.name) +
                                " is resident without a live block: " + block.status().to_string());
      if (c.action == EvictionAction::kSwap) {
        if (!swap_out(c.slot)) continue;
      } else {
        drop(c.slot);
        dropped = true;
      }
      freed += *block;
      if (dropped) break;
    }
    if (!dropped) break;  // the ranking ran out (or only swaps were left): nothing more to gain
  }
  return freed;
}

bool Engine::storage_releasable(std::uint32_t slot) const {
  const TensorRecord& r = tensors_.at(slot);
  // A plan drops tensors too: a released tensor their replays read keeps its bytes.
  const bool may_recompute = options_.policy == EvictionPolicy::kRecompute ||
                             options_.policy == EvictionPolicy::kBoth || !executor_.plans.empty();
  if (!may_recompute || r.consumers == 0) return true;
  // Rebuilt by replay whenever a dropped tensor's replay needs it.
  std::vector<std::uint8_t> memo;
  if (recoverable(tensors_, tape_, slot, memo)) return true;
  return !replay_inputs(tensors_, tape_)[slot];
}

std::size_t Engine::free_unread_released_storage() {
  std::vector<std::uint32_t> holding;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.released && r.lock_count == 0 && r.residency != Residency::kDropped) {
      holding.push_back(slot);
    }
  }
  if (holding.empty()) return 0;
  // Freeing a tensor that no replay reads changes no replay chain: one marking serves them all.
  const std::vector<bool> read = replay_inputs(tensors_, tape_);
  std::size_t freed = 0;
  for (std::uint32_t slot : holding) {
    if (read[slot]) continue;
    const TensorRecord& r = tensors_.at(slot);
    if (r.residency == Residency::kDevice) {
      Result<std::size_t> block = allocator_->block_bytes(r.device_ptr);
      EBB_CHECK(block.ok(), "tensor " + quoted(r.name) +
                                " is resident without a live block: " + block.status().to_string());
      freed += *block;
    }
    free_storage(slot);
  }
  return freed;
}

bool Engine::swap_out(std::uint32_t slot) {
  if (!settle_arrival(slot, /*for_use=*/false).ok()) return false;
  TensorRecord& r = tensors_.at(slot);
  if (r.host_ptr == nullptr) {
    Result<void*> host = host_tier_->allocate(r.name, r.bytes);
    if (!host.ok()) {
      reclaim_clean_copies(r.bytes);
      host = host_tier_->allocate(r.name, r.bytes);
      if (!host.ok()) return spill_to_nvme(slot);  // the host tier is full: one tier down
    }
    if (r.host_event == nullptr) {
      Result<Event*> event = events_->acquire();
      if (!event.ok()) {
        (void)host_tier_->free(*host);
        return false;
      }
      r.host_event = *event;
    }
    Status s = compute_.record(*r.host_event);
    if (s.ok()) s = copy_->wait(*r.host_event);
    if (s.ok()) s = copy_->copy_async(*host, r.device_ptr, r.bytes, CopyKind::kDeviceToHost);
    if (!s.ok()) {
      // Nothing that reads the host buffer was queued (the copy is the last step).
      (void)host_tier_->free(*host);
      return false;
    }
    // Recorded after the copy: a swap-in waits for this, and so does freeing the host copy.
    EBB_CHECK(copy_->record(*r.host_event).ok(), "record on the copy stream failed");
    r.host_ptr = *host;
    Status freed = allocator_->free(r.device_ptr, *copy_);
    EBB_CHECK(freed.ok(), freed.to_string());
    stats_.swapped_out_bytes += static_cast<std::int64_t>(r.bytes);
  } else {
    // A clean copy: the device block's last use is on the compute stream.
    Status freed = allocator_->free(r.device_ptr);
    EBB_CHECK(freed.ok(), freed.to_string());
  }
  left_device(slot, Residency::kHost);
  return true;
}

void Engine::drop(std::uint32_t slot) {
  Status settled = settle_arrival(slot, /*for_use=*/false);
  EBB_CHECK(settled.ok(),
            "dropping " + quoted(tensors_.at(slot).name) + ": " + settled.to_string());
  TensorRecord& r = tensors_.at(slot);
  if (r.host_ptr != nullptr) {
    swap_out(slot);  // a clean copy: cheaper to keep than to recompute
    return;
  }
  Status freed = allocator_->free(r.device_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  left_device(slot, Residency::kDropped);
}

void Engine::left_device(std::uint32_t slot, Residency to) {
  TensorRecord& r = tensors_.at(slot);
  r.device_ptr = nullptr;
  r.residency = to;
  ++stats_.evictions;
  ++(to == Residency::kDropped ? stats_.drops : stats_.swap_outs);
  log_residency(slot, to);
}

void Engine::reclaim_clean_copies(std::size_t bytes) {
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const PinnedHostPoolStats host = host_tier_->stats();
    if (host.capacity_bytes - host.allocated_bytes >= bytes) return;
    TensorRecord& r = tensors_.at(slot);
    if (r.live && r.residency == Residency::kDevice && r.host_ptr != nullptr) free_host_copy(r);
  }
}

void Engine::free_host_copy(TensorRecord& r) {
  // A copy from or to the buffer may still be queued.
  Status done = r.host_event->synchronize();
  EBB_CHECK(done.ok(), "host copy of " + quoted(r.name) + ": " + done.to_string());
  Status freed = host_tier_->free(r.host_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  events_->release(r.host_event);
  r.host_ptr = nullptr;
  r.host_event = nullptr;
}

void Engine::free_storage(std::uint32_t slot) {
  Status settled = settle_arrival(slot, /*for_use=*/false);
  EBB_CHECK(settled.ok(), "freeing " + quoted(tensors_.at(slot).name) + ": " + settled.to_string());
  TensorRecord& r = tensors_.at(slot);
  if (r.device_ptr != nullptr) {
    Status freed = allocator_->free(r.device_ptr);
    EBB_CHECK(freed.ok(), "tensor " + quoted(r.name) + ": " + freed.to_string());
    r.device_ptr = nullptr;
  }
  if (r.host_ptr != nullptr) free_host_copy(r);
  if (r.nvme_extent != kNoExtent) free_nvme_copy(r);
  r.residency = Residency::kDropped;
}

}  // namespace ebb
