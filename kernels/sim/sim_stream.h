// SimClock, SimStream and SimEvent: the sim backend's discrete-event model of time.
//
// There are no threads. Each stream has a timeline: the virtual time at which the last work
// enqueued on it ends (its ready time). Work enqueued on a stream starts at max(ready time, now),
// where `now` is the host-visible time: work cannot start before the host enqueued it, and the
// host's clock is `now`. A launch ends `cost` after it starts; a memset and a copy that uses no
// link (device-to-device, host-to-host) end when they start; a host-to-device or device-to-host
// copy occupies its direction's link (one per direction, shared by every stream, like a copy
// engine) for latency + bytes / bandwidth, in the earliest gap of the link at or after the
// stream's start. A record stamps the event with the stream's start time; a wait moves the
// stream's ready time to the event's time. `now` advances only when the host waits: to the
// stream's ready time, the event's time, or the latest end of all work (Device::synchronize).
//
// Thread safety: all three classes are thread-safe. SimClock's one mutex guards every timeline
// and link; SimEvent guards its time with its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "kernels/cpu/cpu_memory.h"
#include "kernels/device.h"

namespace ebb {

// The virtual time of one sim device: the host-visible clock, the timelines of its live streams
// and the busy intervals of its two copy links. Owned by the device; streams and events refer
// to it and must not outlive it.
class SimClock {
 public:
  using Duration = std::chrono::nanoseconds;

  SimClock(LinkModel host_to_device, LinkModel device_to_host);

  // Timelines, one per live stream, keyed by stream id; a new one starts at now().
  void add_stream(std::uint32_t stream);
  void remove_stream(std::uint32_t stream);
  std::size_t stream_count() const;

  // Enqueues work of `cost` on `stream`. REQUIRES: cost >= 0; `stream` added.
  void run(std::uint32_t stream, Duration cost);
  // Enqueues a copy of `bytes` of `kind` on `stream`.
  void copy(std::uint32_t stream, CopyKind kind, std::size_t bytes);
  // The time an event recorded on `stream` now takes: when the work enqueued so far has ended.
  Duration record(std::uint32_t stream);
  // Work enqueued on `stream` from now on starts no earlier than `time`.
  void wait(std::uint32_t stream, Duration time);

  // The host waits: now() becomes at least the stream's ready time, `time`, or the end of all
  // work ever enqueued (streams since destroyed included).
  void synchronize_stream(std::uint32_t stream);
  void synchronize_until(Duration time);
  void synchronize_all();
  // The host is busy for `duration`: now() advances by it. REQUIRES: duration >= 0.
  void advance(Duration duration);

  Duration now() const;
  // True when the host has waited past `time`: time <= now().
  bool reached(Duration time) const;
  // True when the stream's enqueued work has ended by now().
  bool stream_done(std::uint32_t stream) const;

 private:
  // One direction of the modelled link: a copy engine that carries one copy at a time.
  struct Link {
    LinkModel model;
    std::map<Duration, Duration> busy;  // start -> end, non-overlapping; pruned below now_
  };

  // The start of new work on `stream`: max(its ready time, now_). REQUIRES: mu_ held.
  Duration& start_of(std::uint32_t stream);
  // Books the earliest gap of `link` at or after `earliest` that fits `duration`; returns the
  // copy's end. REQUIRES: mu_ held.
  Duration book(Link& link, Duration earliest, Duration duration);

  mutable std::mutex mu_;
  Duration now_{0};                          // GUARDED_BY(mu_); host-visible time
  Duration latest_end_{0};                   // GUARDED_BY(mu_); end of all work ever enqueued
  std::map<std::uint32_t, Duration> ready_;  // GUARDED_BY(mu_); stream id -> ready time
  Link host_to_device_;                      // GUARDED_BY(mu_)
  Link device_to_host_;                      // GUARDED_BY(mu_)
};

// Owned by the caller of Device::create_event; must be destroyed before its device.
class SimEvent final : public Event {
 public:
  // `device` identifies the creating device, so that a stream rejects another device's event.
  SimEvent(const void* device, SimClock& clock) : device_(device), clock_(clock) {}

  const void* device() const { return device_; }
  // Makes `time` the event's latest record.
  void set_time(SimClock::Duration time);
  // The latest record's time; empty when the event was never recorded.
  std::optional<SimClock::Duration> time() const;

  Result<bool> query() override;
  Status synchronize() override;
  Result<double> elapsed_ms_since(Event& start) override;

 private:
  const void* const device_;
  SimClock& clock_;
  mutable std::mutex mu_;
  std::optional<SimClock::Duration> time_;  // GUARDED_BY(mu_)
};

// Owned by the device (the default stream, id 0) or by the caller of create_stream; must be
// destroyed before its device. Validates its arguments as CpuStream does, then only advances
// the clock.
class SimStream final : public Stream {
 public:
  // `device` identifies the owning device; `memory` and `clock` belong to it. Adds a timeline.
  SimStream(std::uint32_t id, const void* device, const CpuMemory& memory, SimClock& clock);
  ~SimStream() override;
  SimStream(const SimStream&) = delete;
  SimStream& operator=(const SimStream&) = delete;

  std::uint32_t id() const override { return id_; }
  Status copy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind) override;
  Status memset_async(void* dst, std::uint8_t value, std::size_t bytes) override;
  // Costs nothing: the closure is dropped unrun.
  Status launch(Kernel kernel) override;
  // Occupies the stream for `cost`; the closure is dropped unrun.
  Status launch(Kernel kernel, std::chrono::nanoseconds cost) override;
  Status record(Event& event) override;
  Status wait(Event& event) override;
  Status synchronize() override;
  Result<bool> query() override;

 private:
  const std::uint32_t id_;
  const void* const device_;
  const CpuMemory& memory_;
  SimClock& clock_;
};

}  // namespace ebb
