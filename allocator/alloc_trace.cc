#include "allocator/alloc_trace.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "allocator/json_lines.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

// Reads the unsigned integer field `key`; `required` false means absent gives `fallback`.
Result<std::uint64_t> unsigned_field(const Json& object, const char* key, bool required,
                                     std::uint64_t fallback, std::uint64_t max) {
  auto it = object.find(key);
  if (it == object.end()) {
    if (required) return invalid_argument(std::string("missing field \"") + key + "\"");
    return fallback;
  }
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() > max) {
    return invalid_argument(std::string("field \"") + key + "\" = " + it->dump() +
                            " is not an integer in [0, " + std::to_string(max) + "]");
  }
  return it->get<std::uint64_t>();
}

}  // namespace

void AllocTraceBuffer::record(const AllocEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(event);
}

std::vector<AllocEvent> AllocTraceBuffer::take() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(events_, {});
}

Result<std::unique_ptr<AllocTraceWriter>> AllocTraceWriter::open(const std::string& path) {
  std::unique_ptr<AllocTraceWriter> writer(new AllocTraceWriter(path));
  writer->out_.open(path, std::ios::out | std::ios::trunc | std::ios::binary);
  if (!writer->out_) return io_error("cannot open alloc trace " + path + " for writing");
  return writer;
}

void AllocTraceWriter::record(const AllocEvent& event) {
  std::string line = alloc_event_to_json_line(event);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mu_);
  // A failed write sets the stream's error state, which close() reports.
  out_.write(line.data(), static_cast<std::streamsize>(line.size()));
}

Status AllocTraceWriter::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_.is_open()) return ok_status();
  out_.flush();
  bool failed = !out_;
  out_.close();
  if (failed || !out_) return io_error("error writing alloc trace " + path_);
  return ok_status();
}

std::string alloc_event_to_json_line(const AllocEvent& event) {
  nlohmann::ordered_json object;
  if (event.op == AllocEvent::Op::kAlloc) {
    object["op"] = "alloc";
    object["id"] = event.id;
    object["bytes"] = event.bytes;
    object["stream"] = event.stream;
    object["tag"] = event.tag;
  } else {
    object["op"] = "free";
    object["id"] = event.id;
    object["stream"] = event.stream;
  }
  object["t_ns"] = event.t_ns;
  return object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::vector<AllocEvent>> parse_alloc_trace(std::string_view text,
                                                  const std::string& source_name) {
  std::vector<AllocEvent> events;
  std::unordered_set<std::uint64_t> used_ids;
  std::unordered_set<std::uint64_t> live_ids;
  JsonLines lines(text, source_name);
  Json object;
  for (;;) {
    EBB_ASSIGN_OR_RETURN(bool more, lines.next(object));
    if (!more) break;
    auto fail = [&](std::string_view message) { return lines.error(message); };
    auto op = object.find("op");
    if (op == object.end()) return fail("missing field \"op\"");
    AllocEvent event;
    if (*op == "alloc") {
      event.op = AllocEvent::Op::kAlloc;
    } else if (*op == "free") {
      event.op = AllocEvent::Op::kFree;
    } else {
      return fail("unknown op " + op->dump() + " (expected \"alloc\" or \"free\")");
    }

    Result<std::uint64_t> id =
        unsigned_field(object, "id", true, 0, std::numeric_limits<std::uint64_t>::max());
    if (!id.ok()) return fail(id.status().message());
    event.id = *id;
    Result<std::uint64_t> stream =
        unsigned_field(object, "stream", false, 0, std::numeric_limits<std::uint32_t>::max());
    if (!stream.ok()) return fail(stream.status().message());
    event.stream = static_cast<std::uint32_t>(*stream);
    auto t = object.find("t_ns");
    if (t != object.end()) {
      if (!t->is_number_integer())
        return fail("field \"t_ns\" = " + t->dump() + " is not an integer");
      event.t_ns = t->get<std::int64_t>();
    }

    if (event.op == AllocEvent::Op::kAlloc) {
      auto bytes = object.find("bytes");
      if (bytes == object.end())
        return fail("missing field \"bytes\" of alloc " + std::to_string(event.id));
      if (!bytes->is_number_unsigned() || bytes->get<std::uint64_t>() == 0) {
        return fail("field \"bytes\" = " + bytes->dump() + " of alloc " + std::to_string(event.id) +
                    " is not a positive integer");
      }
      event.bytes = static_cast<std::size_t>(bytes->get<std::uint64_t>());
      auto tag = object.find("tag");
      if (tag != object.end()) {
        if (!tag->is_string()) return fail("field \"tag\" is not a string");
        event.tag = tag->get<std::string>();
      }
      if (!used_ids.insert(event.id).second) {
        return fail("alloc of id " + std::to_string(event.id) + ", which an earlier alloc used");
      }
      live_ids.insert(event.id);
    } else {
      if (live_ids.erase(event.id) == 0) {
        return fail("free of id " + std::to_string(event.id) + ", which is not live");
      }
    }
    events.push_back(std::move(event));
  }
  return events;
}

Result<std::vector<AllocEvent>> read_alloc_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open alloc trace " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error("error reading alloc trace " + path);
  return parse_alloc_trace(text.str(), path);
}

}  // namespace ebb
