// The Pager's evictions: dynamic eviction when the allocator asks for room, the plan's swap-outs
// and drops, the spill to NVMe when the host tier is full, and giving storage back.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/residency/pager.h"

namespace ebb {

std::size_t Pager::evict(std::size_t bytes_needed) {
  if (prefetching_) return 0;  // see prefetch()
  ++stats_.eviction_calls;
  std::size_t freed = hooks_ != nullptr ? hooks_->make_room(bytes_needed) : 0;
  if (freed >= bytes_needed) return freed;
  const std::int64_t evictions_before = stats_.evictions;
  freed += evict_ranked(bytes_needed - freed);
  if (hooks_ != nullptr) hooks_->evicted_dynamically(stats_.evictions - evictions_before);
  return freed;
}

std::size_t Pager::evict_ranked(std::size_t bytes_needed) {
  std::size_t freed = free_unread_released_storage(/*last_resort=*/false);
  // Ranked again after every drop: a drop changes what its neighbours cost, and whether their
  // replay chains can still run. A swap changes neither. The tape does not change meanwhile,
  // so its reverse edges are built once for all the rankings.
  std::vector<std::vector<std::uint32_t>> readers;
  const bool walks = drops_dynamically();
  while (freed < bytes_needed) {
    if (walks && readers.empty()) readers = tape_readers(tensors_, tape_.ops());
    const EvictionContext context{
        .policy = options_.policy,
        .tick = tensors_.tick(),
        .host_link_bytes_per_s = options_.host_link_bytes_per_s,
        .host_tier_free_bytes = offload_free_bytes(),
    };
    EvictionRanking ranking(tensors_, tape_.ops(), context, walks ? &readers : nullptr);
    bool dropped = false;
    while (freed < bytes_needed) {
      const std::optional<EvictionCandidate> c = ranking.next();
      if (!c.has_value()) break;
      const TensorRecord& r = tensors_.at(c->slot);
      if (r.residency != Residency::kDevice) continue;  // swapped earlier in this pass
      Result<std::size_t> block = allocator_->block_bytes(r.device_ptr);
      EBB_CHECK(block.ok(), "tensor " + quote(r.name) +
                                " is resident without a live block: " + block.status().to_string());
      if (c->action == EvictionAction::kSwap) {
        if (!swap_out(c->slot)) continue;
      } else {
        drop(c->slot);
        dropped = true;
      }
      freed += *block;
      if (dropped) break;
    }
    if (!dropped) break;  // the ranking ran out (or only swaps were left): nothing more to gain
  }
  // Last, the released sources kept for replays that have not happened: what is downstream of
  // them can no longer be dropped, but it need not be.
  if (freed < bytes_needed) freed += free_unread_released_storage(/*last_resort=*/true);
  return freed;
}

bool Pager::swap_out(std::uint32_t slot) {
  {
    const TensorRecord& r = tensors_.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) return false;
  }
  if (!settle_arrival(slot, /*for_use=*/false).ok()) return false;
  TensorRecord& r = tensors_.at(slot);
  if (r.host_ptr == nullptr) {
    Result<void*> host = host_tier_->allocate(r.name, r.bytes);
    if (!host.ok()) {
      reclaim_clean_copies(r.bytes);
      host = host_tier_->allocate(r.name, r.bytes);
      if (!host.ok()) return spill_to_nvme(slot);  // the host tier is full: one tier down
    }
    // After the compute stream's work so far: the tensor's writer.
    Result<std::shared_ptr<Transfer>> out =
        transfers_->copy_to_host(*host, r.device_ptr, r.bytes, &launcher_.stream());
    if (!out.ok()) {
      (void)host_tier_->free(*host);
      return false;
    }
    r.host_ptr = *host;
    r.host_copy = std::move(*out);
    // Its last use is the copy: reusable on the compute stream once the lane is past it.
    Status freed = allocator_->free(r.device_ptr, transfers_->device_to_host_stream());
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

bool Pager::swap_out_to_nvme(std::uint32_t slot) {
  {
    const TensorRecord& r = tensors_.at(slot);
    if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0) return false;
  }
  if (!settle_arrival(slot, /*for_use=*/false).ok()) return false;
  if (tensors_.at(slot).host_ptr != nullptr) return swap_out(slot);  // a clean host copy
  return spill_to_nvme(slot);
}

bool Pager::drop_recoverable(std::uint32_t slot) {
  const TensorRecord& r = tensors_.at(slot);
  if (!r.live || r.residency != Residency::kDevice || r.lock_count > 0 || !droppable(r)) {
    return false;
  }
  if (!recoverable_now(slot)) return false;
  drop(slot);
  return true;
}

void Pager::drop(std::uint32_t slot) {
  Status settled = settle_arrival(slot, /*for_use=*/false);
  EBB_CHECK(settled.ok(), "dropping " + quote(tensors_.at(slot).name) + ": " + settled.to_string());
  TensorRecord& r = tensors_.at(slot);
  if (r.host_ptr != nullptr) {
    swap_out(slot);  // a clean copy: cheaper to keep than to recompute
    return;
  }
  Status freed = allocator_->free(r.device_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  left_device(slot, Residency::kDropped);
}

bool Pager::spill_to_nvme(std::uint32_t slot) {
  if (nvme_ == nullptr) return false;
  TensorRecord& r = tensors_.at(slot);
  Result<std::shared_ptr<Transfer>> spill = transfers_->device_to_nvme(
      r.name, r.device_ptr, r.bytes, &launcher_.stream(), TransferDeadline::now());
  Status written = spill.ok() ? (*spill)->wait() : spill.status();
  if (!written.ok()) {
    // A full tier is no error: the tensor stays and eviction looks elsewhere. A failed write is
    // one: the tensor stays resident (its only copy), and the next call returns the failure.
    if (written.code() != StatusCode::kOutOfMemory) {
      launcher_.defer_error(Status(
          written.code(), "spilling tensor " + quote(r.name) + " to NVMe: " + written.message()));
    }
    return false;
  }
  r.nvme_extent = (*spill)->extent();
  // The copy out has completed, and it was ordered after the compute stream's queued work.
  Status freed = allocator_->free(r.device_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  ++stats_.nvme_spills;
  stats_.nvme_written_bytes += static_cast<std::int64_t>(r.bytes);
  left_device(slot, Residency::kNvme);
  return true;
}

void Pager::left_device(std::uint32_t slot, Residency to) {
  if (to == Residency::kDropped) losing_bytes(slot);
  TensorRecord& r = tensors_.at(slot);
  r.device_ptr = nullptr;
  r.residency = to;
  ++stats_.evictions;
  ++(to == Residency::kDropped ? stats_.drops : stats_.swap_outs);
  log_residency(slot, to);
}

bool Pager::storage_releasable(std::uint32_t slot) const {
  const TensorRecord& r = tensors_.at(slot);
  if (held(slot)) return false;
  // A plan drops tensors too: a released tensor their replays read keeps its bytes.
  const bool dynamic_drops = drops_dynamically();
  if (!(dynamic_drops || plans_) || r.consumers == 0) return true;
  // Rebuilt by replay whenever a dropped tensor's replay needs it.
  if (recoverable_now(slot)) return true;
  // Nothing rebuilds it. Without a plan, what is downstream of it may be dropped later: keep it
  // while a replay may read it. A plan says what it keeps (hold()).
  if (dynamic_drops && !plans_ && !r.has_producer()) {
    return !replay_sources(tensors_, tape_.ops())[slot];
  }
  return !replay_inputs(tensors_, tape_.ops())[slot];
}

void Pager::release(std::uint32_t slot) {
  if (storage_releasable(slot)) free_storage(slot);
}

void Pager::hold(std::uint32_t slot) {
  if (held_.size() <= slot) held_.resize(tensors_.slot_count(), 0);
  if (held_[slot] != 0) return;
  held_[slot] = 1;
  held_slots_.push_back(slot);
}

bool Pager::unhold(std::uint32_t slot) {
  if (!held(slot)) return false;
  held_[slot] = 0;
  std::erase(held_slots_, slot);
  return true;
}

void Pager::end_hold(std::uint32_t slot) {
  if (!unhold(slot)) return;
  const TensorRecord& r = tensors_.at(slot);
  if (r.live && r.released && r.residency != Residency::kDropped && storage_releasable(slot)) {
    free_storage(slot);
  }
}

void Pager::end_holds() {
  while (!held_slots_.empty()) end_hold(held_slots_.back());
}

bool Pager::worth_keeping(std::uint32_t slot,
                          const std::vector<std::vector<std::uint32_t>>& readers) const {
  const TensorRecord& source = tensors_.at(slot);
  if (plans_ || source.has_producer() || !drops_dynamically()) return false;
  // What keeping it makes droppable, at least: the resident outputs of the ops that read it.
  std::size_t droppable_bytes = 0;
  for (std::uint32_t op : readers[slot]) {
    if (tape_[op].stale) continue;
    for (std::uint32_t out : tape_[op].outputs) {
      const TensorRecord& r = tensors_.at(out);
      if (r.live && !r.released && r.residency == Residency::kDevice && droppable(r)) {
        droppable_bytes += r.bytes;
      }
    }
  }
  return droppable_bytes >= source.bytes;
}

std::size_t Pager::free_unread_released_storage(bool last_resort) {
  std::vector<std::uint32_t> holding;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.released && r.lock_count == 0 && r.residency != Residency::kDropped &&
        !held(slot)) {
      holding.push_back(slot);
    }
  }
  if (holding.empty()) return 0;
  // Freeing a tensor that no replay reads changes no replay chain: one marking serves them all.
  const std::vector<bool> read = replay_inputs(tensors_, tape_.ops());
  // The readers index only when a released source is among them (worth_keeping()).
  std::vector<std::vector<std::uint32_t>> readers;
  const bool sources = !last_resort && !plans_ &&
                       std::any_of(holding.begin(), holding.end(), [&](std::uint32_t slot) {
                         return !read[slot] && !tensors_.at(slot).has_producer();
                       });
  if (sources) readers = tape_readers(tensors_, tape_.ops());
  std::size_t freed = 0;
  for (std::uint32_t slot : holding) {
    if (read[slot]) continue;
    if (sources && worth_keeping(slot, readers)) continue;
    const TensorRecord& r = tensors_.at(slot);
    if (r.residency == Residency::kDevice) {
      Result<std::size_t> block = allocator_->block_bytes(r.device_ptr);
      EBB_CHECK(block.ok(), "tensor " + quote(r.name) +
                                " is resident without a live block: " + block.status().to_string());
      freed += *block;
    }
    free_storage(slot);
  }
  return freed;
}

void Pager::reclaim_clean_copies(std::size_t bytes) {
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const PinnedHostPoolStats host = host_tier_->stats();
    if (host.capacity_bytes - host.allocated_bytes >= bytes) return;
    TensorRecord& r = tensors_.at(slot);
    // A copy back still in flight reads its host copy: it is not clean yet.
    if (r.live && r.residency == Residency::kDevice && r.host_ptr != nullptr &&
        !r.arrival_pending) {
      free_host_copy(r);
    }
  }
}

void Pager::free_host_copy(TensorRecord& r) {
  // A copy from or to the buffer may still be queued or running.
  if (r.host_copy != nullptr) (void)r.host_copy->wait();
  Status freed = host_tier_->free(r.host_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  r.host_ptr = nullptr;
  r.host_copy = nullptr;
}

void Pager::free_nvme_copy(TensorRecord& r) {
  Status freed = nvme_->free(r.nvme_extent);
  EBB_CHECK(freed.ok(), "NVMe copy of " + quote(r.name) + ": " + freed.to_string());
  r.nvme_extent = kNoExtent;
}

bool Pager::recoverable_now(std::uint32_t slot) const {
  return recoverable(tensors_, tape_.ops(), slot, proven_, proven_epoch_);
}

void Pager::chains_changed() {
  if (++proven_epoch_ == 0) {  // wrapped: no stale entry may match again
    std::fill(proven_.begin(), proven_.end(), 0);
    proven_epoch_ = 1;
  }
}

void Pager::losing_bytes(std::uint32_t slot) {
  // A chain through it now goes on to its producer's inputs: still valid if it was proven
  // recoverable; and no chain goes through a tensor no op read.
  const bool proven = slot < proven_.size() && proven_[slot] == proven_epoch_;
  if (!proven && tensors_.at(slot).consumers > 0) chains_changed();
}

void Pager::free_storage(std::uint32_t slot) {
  losing_bytes(slot);
  unhold(slot);
  Status settled = settle_arrival(slot, /*for_use=*/false);
  EBB_CHECK(settled.ok(), "freeing " + quote(tensors_.at(slot).name) + ": " + settled.to_string());
  TensorRecord& r = tensors_.at(slot);
  if (r.device_ptr != nullptr) {
    Status freed = allocator_->free(r.device_ptr);
    EBB_CHECK(freed.ok(), "tensor " + quote(r.name) + ": " + freed.to_string());
    r.device_ptr = nullptr;
  }
  if (r.host_ptr != nullptr) free_host_copy(r);
  if (r.nvme_extent != kNoExtent) free_nvme_copy(r);
  r.host_copy = nullptr;
  r.residency = Residency::kDropped;
}

std::size_t Pager::offload_free_bytes() const {
  return host_tier_->free_bytes() + (nvme_ != nullptr ? nvme_->free_bytes() : 0);
}

}  // namespace ebb
