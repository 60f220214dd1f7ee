#include "allocator/planned_arena.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

namespace ebb {

Result<std::unique_ptr<PlannedArena>> PlannedArena::create(CachingAllocator& allocator,
                                                           Stream& stream,
                                                           const std::vector<PlanBuffer>& buffers,
                                                           const ArenaPlan& plan) {
  EBB_RETURN_IF_ERROR(validate_plan(buffers, plan));
  std::unique_ptr<PlannedArena> arena(new PlannedArena(allocator, stream));
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    if (!arena->slots_.emplace(buffers[i].id, Slot{plan.offsets[i], buffers[i].size_bytes})
             .second) {
      return invalid_argument("planned arena: buffers share plan id " +
                              std::to_string(buffers[i].id));
    }
  }
  if (plan.height_bytes > 0) {
    EBB_ASSIGN_OR_RETURN(void* base, allocator.allocate(plan.height_bytes, stream, "arena"));
    arena->base_ = static_cast<char*>(base);
  }
  arena->stats_.arena_bytes = plan.height_bytes;
  return arena;
}

PlannedArena::~PlannedArena() {
  // Errors cannot be returned from here; each pointer is one the allocator handed out.
  for (const auto& [ptr, bytes] : fallback_live_) (void)allocator_.free(ptr);
  if (base_ != nullptr) (void)allocator_.free(base_);
}

bool PlannedArena::slot_free(const Slot& slot) const {
  // The live allocation starting at or below the slot, and the first one above it.
  auto above = live_.lower_bound(slot.offset);
  if (above != live_.end() && above->first < slot.offset + slot.bytes) return false;
  if (above == live_.begin()) return true;
  return std::prev(above)->second.end <= slot.offset;
}

Result<void*> PlannedArena::allocate(std::uint64_t plan_id, std::size_t bytes, Stream& stream) {
  auto slot = slots_.find(plan_id);
  if (bytes > 0 && slot != slots_.end() && bytes <= slot->second.bytes &&
      stream.id() == stream_.id() && slot_free(slot->second)) {
    live_.emplace(slot->second.offset, Live{slot->second.offset + slot->second.bytes, bytes});
    ++stats_.planned_allocs;
    stats_.planned_bytes.increase(static_cast<std::int64_t>(bytes));
    return static_cast<void*>(base_ + slot->second.offset);
  }
  EBB_ASSIGN_OR_RETURN(void* ptr, allocator_.allocate(bytes, stream, "arena fallback"));
  fallback_live_.emplace(ptr, bytes);
  ++stats_.fallback_allocs;
  stats_.fallback_bytes.increase(static_cast<std::int64_t>(bytes));
  return ptr;
}

Status PlannedArena::free(void* ptr) {
  char* p = static_cast<char*>(ptr);
  if (base_ != nullptr && p >= base_ && p < base_ + stats_.arena_bytes) {
    auto it = live_.find(static_cast<std::size_t>(p - base_));
    if (it == live_.end()) {
      return invalid_argument("planned arena: free of " + std::to_string(p - base_) +
                              " bytes into the arena, which is no live allocation");
    }
    stats_.planned_bytes.decrease(static_cast<std::int64_t>(it->second.requested_bytes));
    live_.erase(it);
    return ok_status();
  }
  auto it = fallback_live_.find(ptr);
  if (it == fallback_live_.end()) {
    return invalid_argument("planned arena: free of a pointer it did not allocate");
  }
  EBB_RETURN_IF_ERROR(allocator_.free(ptr));
  stats_.fallback_bytes.decrease(static_cast<std::int64_t>(it->second));
  fallback_live_.erase(it);
  return ok_status();
}

Result<PlannedReplayResult> replay_planned(const std::vector<AllocEvent>& events,
                                           const std::vector<PlanBuffer>& buffers,
                                           const ArenaPlan& plan, Device& device,
                                           const CachingAllocatorOptions& options) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].stream != 0) {
      return invalid_argument("event " + std::to_string(i) + " is on stream " +
                              std::to_string(events[i].stream) +
                              "; the planned replay serves stream 0 only");
    }
  }
  Stream& stream = device.default_stream();
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<CachingAllocator> allocator,
                       CachingAllocator::create(device, options));
  PlannedReplayResult result;
  {
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<PlannedArena> arena,
                         PlannedArena::create(*allocator, stream, buffers, plan));
    std::unordered_map<std::uint64_t, std::pair<void*, std::size_t>> live;  // id -> (ptr, bytes)
    std::size_t live_bytes = 0;
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < events.size(); ++i) {
      const AllocEvent& e = events[i];
      const std::string where = "event " + std::to_string(i) + " (id " + std::to_string(e.id) + ")";
      if (e.op == AllocEvent::Op::kAlloc) {
        Result<void*> p = arena->allocate(e.id, e.bytes, stream);
        if (!p.ok()) return Status(p.status().code(), where + ": " + p.status().message());
        if (!live.emplace(e.id, std::make_pair(*p, e.bytes)).second) {
          return invalid_argument(where + ": the id is already live");
        }
        live_bytes += e.bytes;
        result.replay.peak_live_bytes = std::max(result.replay.peak_live_bytes, live_bytes);
        ++result.replay.allocs;
      } else {
        auto it = live.find(e.id);
        if (it == live.end()) return invalid_argument(where + ": the id is not live");
        Status status = arena->free(it->second.first);
        if (!status.ok()) return Status(status.code(), where + ": " + status.message());
        live_bytes -= it->second.second;
        live.erase(it);
        ++result.replay.frees;
      }
    }
    result.replay.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.arena = arena->stats();
    for (const auto& [id, entry] : live) EBB_RETURN_IF_ERROR(arena->free(entry.first));
  }
  result.replay.streams = events.empty() ? 0 : 1;
  result.replay.stats = allocator->stats();
  result.replay.peak_reserved_bytes =
      static_cast<std::size_t>(result.replay.stats.all.reserved_bytes.peak);
  if (result.replay.peak_live_bytes > 0) {
    result.replay.reserved_over_live = static_cast<double>(result.replay.peak_reserved_bytes) /
                                       static_cast<double>(result.replay.peak_live_bytes);
  }
  return result;
}

}  // namespace ebb
