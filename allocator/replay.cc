#include "allocator/replay.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

namespace ebb {
namespace {

std::string describe(std::size_t index, const AllocEvent& event) {
  std::string what = "event " + std::to_string(index) + " (" +
                     (event.op == AllocEvent::Op::kAlloc ? "alloc" : "free") + " of id " +
                     std::to_string(event.id);
  if (event.op == AllocEvent::Op::kAlloc) what += ", " + std::to_string(event.bytes) + " bytes";
  what += ", stream " + std::to_string(event.stream);
  if (!event.tag.empty()) what += ", tag " + event.tag;
  return what + ")";
}

// The replay loop's view of the trace: each event's id mapped to a dense slot, so the timed
// loop indexes vectors instead of hashing ids.
struct Plan {
  std::vector<std::size_t> slot;  // per event
  std::size_t slots = 0;
};

Result<Plan> plan_slots(const std::vector<AllocEvent>& events) {
  Plan plan;
  plan.slot.resize(events.size());
  std::unordered_map<std::uint64_t, std::size_t> live;  // id -> slot
  live.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    const AllocEvent& e = events[i];
    if (e.op == AllocEvent::Op::kAlloc) {
      if (e.bytes == 0) return invalid_argument(describe(i, e) + ": 0 bytes");
      if (!live.emplace(e.id, plan.slots).second) {
        return invalid_argument(describe(i, e) + ": the id is already live");
      }
      plan.slot[i] = plan.slots++;
    } else {
      auto it = live.find(e.id);
      if (it == live.end()) return invalid_argument(describe(i, e) + ": the id is not live");
      plan.slot[i] = it->second;
      live.erase(it);
    }
  }
  return plan;
}

}  // namespace

std::size_t events_peak_live_bytes(const std::vector<AllocEvent>& events) {
  std::unordered_map<std::uint64_t, std::size_t> live;
  std::size_t live_bytes = 0;
  std::size_t peak_bytes = 0;
  for (const AllocEvent& e : events) {
    if (e.op == AllocEvent::Op::kAlloc) {
      live[e.id] = e.bytes;
      live_bytes += e.bytes;
      peak_bytes = std::max(peak_bytes, live_bytes);
    } else if (auto it = live.find(e.id); it != live.end()) {
      live_bytes -= it->second;
      live.erase(it);
    }
  }
  return peak_bytes;
}

Result<ReplayResult> replay(const std::vector<AllocEvent>& events, Device& device,
                            const CachingAllocatorOptions& options) {
  EBB_ASSIGN_OR_RETURN(Plan plan, plan_slots(events));

  // Streams first: they must outlive the allocator, which is declared after them.
  std::map<std::uint32_t, Stream*> streams;
  std::vector<std::unique_ptr<Stream>> owned_streams;
  for (const AllocEvent& e : events) {
    if (streams.count(e.stream)) continue;
    if (e.stream == 0) {
      streams[0] = &device.default_stream();
      continue;
    }
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<Stream> stream, device.create_stream());
    streams[e.stream] = stream.get();
    owned_streams.push_back(std::move(stream));
  }
  std::vector<Stream*> event_stream(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) event_stream[i] = streams[events[i].stream];

  EBB_ASSIGN_OR_RETURN(std::unique_ptr<CachingAllocator> allocator,
                       CachingAllocator::create(device, options));

  ReplayResult result;
  result.streams = streams.size();
  std::vector<void*> ptr(plan.slots, nullptr);
  std::vector<std::uint32_t> alloc_stream(plan.slots, 0);
  std::vector<std::size_t> slot_bytes(plan.slots, 0);
  std::size_t live_bytes = 0;

  auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const AllocEvent& e = events[i];
    std::size_t s = plan.slot[i];
    if (e.op == AllocEvent::Op::kAlloc) {
      Result<void*> p = allocator->allocate(e.bytes, *event_stream[i], e.tag);
      if (!p.ok()) {
        return Status(p.status().code(), describe(i, e) + ": " + p.status().message());
      }
      ptr[s] = *p;
      alloc_stream[s] = e.stream;
      slot_bytes[s] = e.bytes;
      live_bytes += e.bytes;
      result.peak_live_bytes = std::max(result.peak_live_bytes, live_bytes);
      ++result.allocs;
    } else {
      Status status = e.stream == alloc_stream[s] ? allocator->free(ptr[s])
                                                  : allocator->free(ptr[s], *event_stream[i]);
      if (!status.ok()) return Status(status.code(), describe(i, e) + ": " + status.message());
      ptr[s] = nullptr;
      live_bytes -= slot_bytes[s];
      ++result.frees;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  result.stats = allocator->stats();
  result.peak_reserved_bytes = static_cast<std::size_t>(result.stats.all.reserved_bytes.peak);
  if (result.peak_live_bytes > 0) {
    result.reserved_over_live = static_cast<double>(result.peak_reserved_bytes) /
                                static_cast<double>(result.peak_live_bytes);
  }
  // The iteration's outputs are still live; hand them back before the allocator goes.
  for (void* p : ptr) {
    if (p != nullptr) EBB_RETURN_IF_ERROR(allocator->free(p));
  }
  return result;
}

}  // namespace ebb
