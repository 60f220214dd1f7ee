#include "allocator/dtr_log.h"

#include <charconv>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "allocator/json_lines.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

// Where a message points: "file:line".
std::string at(const std::string& source, std::size_t line) {
  return source + ":" + std::to_string(line);
}

// Field readers. Each returns a message (without the file:line prefix) on failure.
Result<std::string> string_field(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return invalid_argument(std::string("missing field ") + key);
  if (!it->is_string()) return invalid_argument(std::string("field ") + key + " is not a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> string_array_field(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return invalid_argument(std::string("missing field ") + key);
  if (!it->is_array()) return invalid_argument(std::string("field ") + key + " is not an array");
  std::vector<std::string> out;
  for (const Json& item : *it) {
    if (!item.is_string()) {
      return invalid_argument(std::string("field ") + key + " holds a non-string element");
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// A non-negative integer written as a JSON string, e.g. "388497408".
Result<std::int64_t> count_field(const Json& object, const char* key) {
  EBB_ASSIGN_OR_RETURN(std::string text, string_field(object, key));
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < 0) {
    return invalid_argument(std::string("field ") + key + " = \"" + text +
                            "\" is not a non-negative integer");
  }
  return value;
}

// ALIAS: "-1" or an argument index.
Result<int> alias_field(const Json& object) {
  EBB_ASSIGN_OR_RETURN(std::string text, string_field(object, "ALIAS"));
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < -1) {
    return invalid_argument("field ALIAS = \"" + text + "\" is not -1 or an argument index");
  }
  return value;
}

Result<std::vector<int>> mutate_field(const Json& object) {
  auto it = object.find("MUTATE");
  if (it == object.end()) return invalid_argument("missing field MUTATE");
  if (!it->is_array()) return invalid_argument("field MUTATE is not an array");
  std::vector<int> out;
  for (const Json& item : *it) {
    if (!item.is_number_integer() || item.get<std::int64_t>() < 0 ||
        item.get<std::int64_t>() > 1'000'000) {
      return invalid_argument("field MUTATE holds an element that is not an argument index");
    }
    out.push_back(item.get<int>());
  }
  return out;
}

// Reads one instruction line (not MEMORY/ALIAS) into an instruction.
Result<DtrInstruction> parse_instruction(const Json& object, const std::string& kind) {
  DtrInstruction ins;
  if (kind == "CONSTANT") {
    ins.op = DtrOp::kConstant;
    EBB_ASSIGN_OR_RETURN(ins.name, string_field(object, "NAME"));
  } else if (kind == "CALL" || kind == "MUTATE") {
    ins.op = kind == "CALL" ? DtrOp::kCall : DtrOp::kMutate;
    EBB_ASSIGN_OR_RETURN(ins.name, string_field(object, "NAME"));
    EBB_ASSIGN_OR_RETURN(ins.args, string_array_field(object, "ARGS"));
    EBB_ASSIGN_OR_RETURN(ins.time_ns, count_field(object, "TIME"));
    if (ins.op == DtrOp::kCall) {
      EBB_ASSIGN_OR_RETURN(std::vector<std::string> names, string_array_field(object, "RESULT"));
      for (std::string& n : names) ins.results.push_back(DtrResult{std::move(n), 0, -1});
    } else {
      EBB_ASSIGN_OR_RETURN(ins.mutated, mutate_field(object));
    }
  } else if (kind == "COPY" || kind == "COPY_FROM") {
    ins.op = kind == "COPY" ? DtrOp::kCopy : DtrOp::kCopyFrom;
    EBB_ASSIGN_OR_RETURN(ins.dst, string_field(object, "DST"));
    EBB_ASSIGN_OR_RETURN(ins.src, string_field(object, "SRC"));
  } else if (kind == "RELEASE") {
    ins.op = DtrOp::kRelease;
    EBB_ASSIGN_OR_RETURN(ins.name, string_field(object, "NAME"));
  } else if (kind == "ANNOTATE") {
    ins.op = DtrOp::kAnnotate;
    EBB_ASSIGN_OR_RETURN(ins.annotation, string_field(object, "ANNOTATION"));
  } else {
    return invalid_argument("unknown INSTRUCTION \"" + kind + "\"");
  }
  return ins;
}

// What the parser waits for after a CONSTANT or CALL: the MEMORY (and for a CALL the ALIAS)
// line of result `result` of the last instruction.
struct Pending {
  bool active = false;
  std::size_t result = 0;
  bool want_alias = false;  // MEMORY of this result seen, its ALIAS next
};

std::string expected_line(const DtrInstruction& ins, const Pending& pending) {
  const std::string& name =
      ins.op == DtrOp::kConstant ? ins.name : ins.results[pending.result].name;
  return std::string(pending.want_alias ? "ALIAS" : "MEMORY") + " line for " + name + " of " +
         std::string(dtr_op_name(ins.op)) + " at line " + std::to_string(ins.line);
}

// Folds a MEMORY or ALIAS line into the pending instruction.
Status fold_memory_or_alias(const Json& object, const std::string& kind, DtrInstruction& ins,
                            Pending& pending) {
  EBB_ASSIGN_OR_RETURN(std::string name, string_field(object, "NAME"));
  const std::string& want =
      ins.op == DtrOp::kConstant ? ins.name : ins.results[pending.result].name;
  if (kind != (pending.want_alias ? "ALIAS" : "MEMORY") || name != want) {
    return invalid_argument(kind + " for " + name + " where the " + expected_line(ins, pending) +
                            " was expected");
  }
  if (kind == "MEMORY") {
    EBB_ASSIGN_OR_RETURN(std::int64_t bytes, count_field(object, "MEMORY"));
    if (ins.op == DtrOp::kConstant) {
      ins.memory_bytes = static_cast<std::size_t>(bytes);
      pending.active = false;
    } else {
      ins.results[pending.result].memory_bytes = static_cast<std::size_t>(bytes);
      pending.want_alias = true;
    }
    return ok_status();
  }
  EBB_ASSIGN_OR_RETURN(int alias, alias_field(object));
  if (alias >= static_cast<int>(ins.args.size())) {
    return invalid_argument("ALIAS " + std::to_string(alias) + " for " + name + " but " + ins.name +
                            " has " + std::to_string(ins.args.size()) + " arguments");
  }
  ins.results[pending.result].alias = alias;
  pending.want_alias = false;
  pending.active = ++pending.result < ins.results.size();
  return ok_status();
}

// Follows handles, tensors and storages through a log and reports each storage's creation and
// destruction to `visit`. Every semantic error of a log is found here, so read_dtr_log runs it
// once to validate. Not thread-safe; one walk per object.
class StorageWalk {
 public:
  // Visitor (each call names the instruction, an index into log.instructions):
  //   void created(size_t instruction, size_t storage, size_t bytes, const string& handle,
  //                int64 t_ns)
  //   void read(size_t instruction, size_t storage)     a CALL/MUTATE argument's storage
  //   void freed(size_t instruction, size_t storage, int64 t_ns)
  template <typename Visitor>
  Status run(const DtrLog& log, Visitor& visit) {
    for (index_ = 0; index_ < log.instructions.size(); ++index_) {
      const DtrInstruction& ins = log.instructions[index_];
      Status s = step(ins, visit);
      if (!s.ok()) return invalid_argument(at(log.path, ins.line) + ": " + s.message());
    }
    return ok_status();
  }

 private:
  struct Storage {
    std::size_t bytes = 0;
    std::size_t handles = 0;  // live handles to any tensor in this storage
  };

  Result<std::size_t> live(const std::string& name, const char* role) const {
    auto it = handles_.find(name);
    if (it == handles_.end()) {
      return invalid_argument(std::string(role) + " " + name + ", which is not a live handle");
    }
    return it->second;
  }
  Status define(const std::string& name) {
    if (!defined_.insert(name).second) return invalid_argument("name " + name + " is reused");
    return ok_status();
  }
  template <typename Visitor>
  std::size_t create(std::size_t bytes, const std::string& handle, Visitor& visit) {
    storages_.push_back(Storage{bytes, 0});
    visit.created(index_, storages_.size() - 1, bytes, handle, clock_ns_);
    return storages_.size() - 1;
  }
  void bind(const std::string& name, std::size_t storage) {
    handles_[name] = storage;
    ++storages_[storage].handles;
  }
  template <typename Visitor>
  void drop(std::size_t storage, Visitor& visit) {
    if (--storages_[storage].handles == 0) visit.freed(index_, storage, clock_ns_);
  }

  template <typename Visitor>
  Status step(const DtrInstruction& ins, Visitor& visit) {
    switch (ins.op) {
      case DtrOp::kConstant: {
        EBB_RETURN_IF_ERROR(define(ins.name));
        bind(ins.name, create(ins.memory_bytes, ins.name, visit));
        return ok_status();
      }
      case DtrOp::kCall: {
        std::vector<std::size_t> args;
        for (const std::string& a : ins.args) {
          EBB_ASSIGN_OR_RETURN(std::size_t s, live(a, ("CALL " + ins.name + " reads").c_str()));
          args.push_back(s);
          visit.read(index_, s);
        }
        clock_ns_ += ins.time_ns;
        for (const DtrResult& r : ins.results) {
          EBB_RETURN_IF_ERROR(define(r.name));
          if (r.alias >= static_cast<int>(args.size())) {
            return invalid_argument("result " + r.name + " aliases argument " +
                                    std::to_string(r.alias) + " of " + std::to_string(args.size()));
          }
          std::size_t s = r.alias < 0 ? create(r.memory_bytes, r.name, visit)
                                      : args[static_cast<std::size_t>(r.alias)];
          bind(r.name, s);
        }
        return ok_status();
      }
      case DtrOp::kMutate: {
        for (const std::string& a : ins.args) {
          EBB_ASSIGN_OR_RETURN(std::size_t s, live(a, ("MUTATE " + ins.name + " reads").c_str()));
          visit.read(index_, s);
        }
        clock_ns_ += ins.time_ns;
        for (int m : ins.mutated) {
          if (m < 0 || m >= static_cast<int>(ins.args.size())) {
            return invalid_argument("MUTATE index " + std::to_string(m) + " but " + ins.name +
                                    " has " + std::to_string(ins.args.size()) + " arguments");
          }
          const std::string& name = ins.args[static_cast<std::size_t>(m)];
          std::size_t old = handles_.at(name);
          std::size_t fresh = create(storages_[old].bytes, name, visit);
          bind(name, fresh);  // rebinding: handles_[name] now names the fresh storage
          drop(old, visit);
        }
        return ok_status();
      }
      case DtrOp::kCopy: {
        EBB_ASSIGN_OR_RETURN(std::size_t s, live(ins.src, "COPY source"));
        EBB_RETURN_IF_ERROR(define(ins.dst));
        bind(ins.dst, s);
        return ok_status();
      }
      case DtrOp::kCopyFrom: {
        EBB_ASSIGN_OR_RETURN(std::size_t s, live(ins.src, "COPY_FROM source"));
        EBB_ASSIGN_OR_RETURN(std::size_t old, live(ins.dst, "COPY_FROM destination"));
        bind(ins.dst, s);
        drop(old, visit);
        return ok_status();
      }
      case DtrOp::kRelease: {
        EBB_ASSIGN_OR_RETURN(std::size_t s, live(ins.name, "RELEASE of"));
        handles_.erase(ins.name);
        drop(s, visit);
        return ok_status();
      }
      case DtrOp::kAnnotate:
        return ok_status();
    }
    return invalid_argument("instruction of unknown kind");
  }

  std::unordered_map<std::string, std::size_t> handles_;  // live handle -> storage
  std::unordered_set<std::string> defined_;               // every name ever defined
  std::vector<Storage> storages_;
  std::int64_t clock_ns_ = 0;
  std::size_t index_ = 0;  // the instruction being walked
};

// Visitors for StorageWalk.
// Visitors for StorageWalk. The others derive from NoVisit for the callbacks they ignore.
struct NoVisit {
  void created(std::size_t, std::size_t, std::size_t, const std::string&, std::int64_t) {}
  void read(std::size_t, std::size_t) {}
  void freed(std::size_t, std::size_t, std::int64_t) {}
};

struct FigureVisit : NoVisit {
  DtrFigures figures;
  std::vector<std::size_t> bytes;  // per storage
  std::size_t live_bytes = 0;
  void created(std::size_t, std::size_t, std::size_t b, const std::string&, std::int64_t) {
    bytes.push_back(b);
    live_bytes += b;
    if (live_bytes > figures.peak_live_bytes) figures.peak_live_bytes = live_bytes;
  }
  void freed(std::size_t, std::size_t storage, std::int64_t) { live_bytes -= bytes[storage]; }
};

struct EventVisit : NoVisit {
  explicit EventVisit(const DtrLog& log) : log(log) {}
  const DtrLog& log;
  std::vector<AllocEvent> events;
  std::vector<std::size_t> bytes;  // per storage
  void created(std::size_t instruction, std::size_t storage, std::size_t b,
               const std::string& handle, std::int64_t t_ns) {
    bytes.push_back(b);
    if (b == 0) return;  // an allocator refuses 0-byte requests; they add nothing to the peak
    const DtrInstruction& ins = log.instructions[instruction];
    std::string tag =
        (ins.op == DtrOp::kConstant ? std::string("constant") : ins.name) + ":" + handle;
    events.push_back(AllocEvent{AllocEvent::Op::kAlloc, storage, b, 0, t_ns, std::move(tag)});
  }
  void freed(std::size_t, std::size_t storage, std::int64_t t_ns) {
    if (bytes[storage] == 0) return;
    events.push_back(AllocEvent{AllocEvent::Op::kFree, storage, 0, 0, t_ns, {}});
  }
};

// Forwards a walk to a public DtrStorageVisitor.
struct ForwardVisit {
  DtrStorageVisitor& to;
  void created(std::size_t instruction, std::size_t storage, std::size_t b,
               const std::string& handle, std::int64_t) {
    to.created(instruction, storage, b, handle);
  }
  void read(std::size_t instruction, std::size_t storage) { to.read(instruction, storage); }
  void freed(std::size_t instruction, std::size_t storage, std::int64_t) {
    to.freed(instruction, storage);
  }
};

}  // namespace

std::string_view dtr_op_name(DtrOp op) {
  switch (op) {
    case DtrOp::kConstant:
      return "CONSTANT";
    case DtrOp::kCall:
      return "CALL";
    case DtrOp::kMutate:
      return "MUTATE";
    case DtrOp::kCopy:
      return "COPY";
    case DtrOp::kCopyFrom:
      return "COPY_FROM";
    case DtrOp::kRelease:
      return "RELEASE";
    case DtrOp::kAnnotate:
      return "ANNOTATE";
  }
  return "UNKNOWN";
}

bool looks_like_dtr_log(std::string_view first_line) {
  return first_line.find("\"INSTRUCTION\"") != std::string_view::npos;
}

Result<DtrLog> parse_dtr_log(std::string_view text, const std::string& source_name) {
  DtrLog log;
  log.path = source_name;
  Pending pending;
  JsonLines lines(text, source_name);
  Json object;
  // The sum of TIME over CALL and MUTATE so far: the op-time clock of dtr_figures and
  // dtr_to_alloc_events, which must not overflow.
  std::int64_t total_time_ns = 0;
  for (;;) {
    EBB_ASSIGN_OR_RETURN(bool more, lines.next(object));
    if (!more) break;
    auto fail = [&](const std::string& message) { return lines.error(message); };
    Result<std::string> kind = string_field(object, "INSTRUCTION");
    if (!kind.ok()) return fail(kind.status().message());

    if (*kind == "MEMORY" || *kind == "ALIAS") {
      if (!pending.active) {
        Result<std::string> name = string_field(object, "NAME");
        return fail(*kind + " for " + (name.ok() ? *name : std::string("?")) +
                    ", which no CONSTANT or CALL just produced");
      }
      Status s = fold_memory_or_alias(object, *kind, log.instructions.back(), pending);
      if (!s.ok()) return fail(s.message());
      continue;
    }
    if (pending.active) {
      return fail(*kind + " where the " + expected_line(log.instructions.back(), pending) +
                  " was expected");
    }
    Result<DtrInstruction> ins = parse_instruction(object, *kind);
    if (!ins.ok()) return fail(ins.status().message());
    if (ins->time_ns > std::numeric_limits<std::int64_t>::max() - total_time_ns) {
      return fail("TIME " + std::to_string(ins->time_ns) +
                  " brings the log's total op time past 2^63 ns");
    }
    total_time_ns += ins->time_ns;
    ins->line = lines.line_number();
    pending = Pending{};
    pending.active = ins->op == DtrOp::kConstant || !ins->results.empty();
    log.instructions.push_back(std::move(ins).value());
  }
  if (pending.active) {
    return lines.error_at(lines.line_number() + 1,
                          "end of file where the " +
                              expected_line(log.instructions.back(), pending) + " was expected");
  }

  StorageWalk walk;
  NoVisit visit;
  EBB_RETURN_IF_ERROR(walk.run(log, visit));
  return log;
}

Result<DtrLog> read_dtr_log(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open DTR log " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error("error reading DTR log " + path);
  return parse_dtr_log(text.str(), path);
}

Result<DtrFigures> dtr_figures(const DtrLog& log) {
  StorageWalk walk;
  FigureVisit visit;
  EBB_RETURN_IF_ERROR(walk.run(log, visit));
  DtrFigures& f = visit.figures;
  f.final_live_bytes = visit.live_bytes;
  f.storages = visit.bytes.size();
  for (const DtrInstruction& ins : log.instructions) {
    if (ins.op == DtrOp::kCall || ins.op == DtrOp::kMutate) f.total_op_time_ns += ins.time_ns;
    if (ins.op == DtrOp::kCall) ++f.calls;
    if (ins.op == DtrOp::kMutate) ++f.mutates;
    if (ins.op == DtrOp::kConstant) f.constant_bytes += ins.memory_bytes;
  }
  return f;
}

Result<std::vector<AllocEvent>> dtr_to_alloc_events(const DtrLog& log) {
  StorageWalk walk;
  EventVisit visit(log);
  EBB_RETURN_IF_ERROR(walk.run(log, visit));
  return std::move(visit.events);
}

Status walk_dtr_storages(const DtrLog& log, DtrStorageVisitor& visitor) {
  StorageWalk walk;
  ForwardVisit visit{visitor};
  return walk.run(log, visit);
}

}  // namespace ebb
