// AllocTrace: the record of every allocation and free an allocator served, and its JSON-lines
// file format, so that a run's allocation behaviour can be inspected and replayed
// (`ebb replay`).
//
// One JSON object per line:
//   {"op":"alloc","id":7,"bytes":4096,"stream":0,"tag":"attn.qkv","t_ns":1234}
//   {"op":"free","id":7,"stream":0,"t_ns":1300}
// id: the allocation's sequence number within the trace (a free names the alloc it ends);
// bytes: the size the caller requested; stream: Stream::id() of the allocating (alloc) or
// last-use (free) stream; tag: free text the caller attached, may be empty; t_ns: nanoseconds
// since the trace began.
//
// Thread safety: AllocTraceWriter is thread-safe; the rest are value types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/status.h"

namespace ebb {

struct AllocEvent {
  enum class Op : std::uint8_t { kAlloc, kFree };
  Op op = Op::kAlloc;
  std::uint64_t id = 0;
  std::size_t bytes = 0;  // requested bytes (alloc); 0 for a free
  std::uint32_t stream = 0;
  std::int64_t t_ns = 0;
  std::string tag;
};

// Receives every alloc and free of an allocator, in the order they were served.
class AllocTraceSink {
 public:
  virtual ~AllocTraceSink() = default;
  virtual void record(const AllocEvent& event) = 0;
};

// Keeps the events in memory.
class AllocTraceBuffer final : public AllocTraceSink {
 public:
  void record(const AllocEvent& event) override;
  std::vector<AllocEvent> take();

 private:
  std::mutex mu_;
  std::vector<AllocEvent> events_;
};

// Writes the events to a JSON-lines file, one line per event as it arrives.
class AllocTraceWriter final : public AllocTraceSink {
 public:
  // Creates or truncates the file; kIoError naming it when it cannot be opened.
  static Result<std::unique_ptr<AllocTraceWriter>> open(const std::string& path);
  void record(const AllocEvent& event) override;
  // Flushes and reports the first write error, naming the file.
  Status close();

 private:
  explicit AllocTraceWriter(std::string path) : path_(std::move(path)) {}
  std::mutex mu_;
  std::string path_;
  std::ofstream out_;
};

// One line of the format, without the newline. Tag bytes that are not UTF-8 are replaced.
std::string alloc_event_to_json_line(const AllocEvent& event);

// Reads a JSON-lines trace. Required fields: op ("alloc" or "free") and id (an unsigned
// integer), and for an alloc bytes (a positive integer); stream (default 0), t_ns (default 0)
// and tag (default "") may be left out; other fields are ignored, as are blank lines. A
// malformed line is kInvalidArgument naming the file and the line number: bad JSON, a missing
// or mistyped field, an unknown op, zero or negative bytes, an alloc of an id already used, a
// free of an id that is not live. A missing file is kNotFound.
Result<std::vector<AllocEvent>> read_alloc_trace(const std::string& path);
// The same from text in memory; source_name stands in for the path in messages.
Result<std::vector<AllocEvent>> parse_alloc_trace(std::string_view text,
                                                  const std::string& source_name);

}  // namespace ebb
