// The Profile's JSON form (profiles/README.md, "The profile format") and its atomic file I/O.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "engine/schema/atomic_file.h"
#include "engine/schema/json_fields.h"
#include "engine/schema/profile.h"

namespace ebb {
namespace {

using Json = nlohmann::json;
// Written with keys in schema order (id first), read in any order.
using OrderedJson = nlohmann::ordered_json;

OrderedJson optional_index(const std::optional<std::size_t>& i) {
  return i ? OrderedJson(*i) : OrderedJson(nullptr);
}

OrderedJson tensor_json(const ProfiledTensor& t) {
  return OrderedJson{{"id", t.id},
                     {"name", t.name},
                     {"bytes", t.bytes},
                     {"kind", tensor_kind_name(t.kind)},
                     {"dtype", dtype_name(t.dtype)},
                     {"shape", t.shape},
                     {"producer", optional_index(t.producer)},
                     {"accesses", t.accesses}};
}

OrderedJson op_json(const ProfiledOp& op) {
  OrderedJson j{{"index", op.index},
                {"name", op.name},
                {"inputs", op.inputs},
                {"outputs", op.outputs},
                {"duration_ns", op.duration_ns},
                {"frees", op.frees}};
  if (!op.writes.empty()) j["writes"] = op.writes;
  return j;
}

OrderedJson memory_json(const MemoryPoint& m) {
  return OrderedJson{{"live_bytes", m.live_bytes}, {"reserved_bytes", m.reserved_bytes}};
}

// `"key": [` then one element per line, then `]`.
template <typename T, typename ToJson>
void append_array(std::string& out, const char* key, const std::vector<T>& items, ToJson to_json,
                  bool last) {
  out += "\"" + std::string(key) + "\": [";
  for (std::size_t i = 0; i < items.size(); ++i) {
    out += (i ? ",\n  " : "\n  ") + to_json(items[i]).dump();
  }
  out += items.empty() ? "]" : "\n]";
  out += last ? "\n" : ",\n";
}

// Reads a profile's objects (fields by JsonFieldReader, naming each by its path on failure).
class Reader : public JsonFieldReader {
 public:
  using JsonFieldReader::JsonFieldReader;

  Result<ProfiledTensor> tensor(const Json& j, const std::string& at) const {
    if (!j.is_object()) return fail(at, "expected an object");
    std::string p = at + ".";
    ProfiledTensor t;
    EBB_ASSIGN_OR_RETURN(t.id, unsigned_field(j, p, "id"));
    EBB_ASSIGN_OR_RETURN(t.name, string_field(j, p, "name"));
    EBB_ASSIGN_OR_RETURN(t.bytes, unsigned_field(j, p, "bytes"));
    EBB_ASSIGN_OR_RETURN(std::string kind, string_field(j, p, "kind"));
    std::optional<TensorKind> k = tensor_kind_from_name(kind);
    if (!k) return fail(p + "kind", "unknown tensor kind \"" + kind + "\"");
    t.kind = *k;
    EBB_ASSIGN_OR_RETURN(std::string dtype, string_field(j, p, "dtype"));
    std::optional<DType> d = dtype_from_name(dtype);
    if (!d) return fail(p + "dtype", "unknown dtype \"" + dtype + "\"");
    t.dtype = *d;
    EBB_ASSIGN_OR_RETURN(const Json* shape, array_field(j, p, "shape"));
    for (std::size_t i = 0; i < shape->size(); ++i) {
      EBB_ASSIGN_OR_RETURN(std::uint64_t dim,
                           unsigned_at((*shape)[i], p + "shape[" + std::to_string(i) + "]"));
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    EBB_ASSIGN_OR_RETURN(const Json* producer, member(j, p, "producer"));
    if (!producer->is_null()) {
      EBB_ASSIGN_OR_RETURN(t.producer, unsigned_at(*producer, p + "producer"));
    }
    EBB_ASSIGN_OR_RETURN(t.accesses, index_array(j, p, "accesses"));
    return t;
  }

  Result<ProfiledOp> op(const Json& j, const std::string& at) const {
    if (!j.is_object()) return fail(at, "expected an object");
    std::string p = at + ".";
    ProfiledOp op;
    EBB_ASSIGN_OR_RETURN(op.index, unsigned_field(j, p, "index"));
    EBB_ASSIGN_OR_RETURN(op.name, string_field(j, p, "name"));
    EBB_ASSIGN_OR_RETURN(op.inputs, index_array(j, p, "inputs"));
    EBB_ASSIGN_OR_RETURN(op.outputs, index_array(j, p, "outputs"));
    EBB_ASSIGN_OR_RETURN(op.duration_ns, unsigned_field(j, p, "duration_ns"));
    EBB_ASSIGN_OR_RETURN(op.frees, index_array(j, p, "frees"));
    if (j.contains("writes")) {
      EBB_ASSIGN_OR_RETURN(op.writes, index_array(j, p, "writes"));
    }
    return op;
  }

  Result<MemoryPoint> memory(const Json& j, const std::string& at) const {
    if (!j.is_object()) return fail(at, "expected an object");
    std::string p = at + ".";
    MemoryPoint m;
    EBB_ASSIGN_OR_RETURN(m.live_bytes, unsigned_field(j, p, "live_bytes"));
    EBB_ASSIGN_OR_RETURN(m.reserved_bytes, unsigned_field(j, p, "reserved_bytes"));
    return m;
  }
};

}  // namespace

std::string profile_to_json(const Profile& profile) {
  std::string out = "{\n";
  out += "\"version\": " + std::to_string(profile.version) + ",\n";
  out += "\"source\": " + Json(profile.source).dump() + ",\n";
  out += "\"device\": " + Json(profile.device).dump() + ",\n";
  out += "\"iterations\": " + std::to_string(profile.iterations) + ",\n";
  append_array(out, "tensors", profile.tensors, tensor_json, false);
  append_array(out, "ops", profile.ops, op_json, false);
  append_array(out, "memory", profile.memory, memory_json, true);
  return out + "}\n";
}

Result<Profile> profile_from_json(std::string_view text, const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  Reader r(source_name);
  if (root.is_discarded()) return r.fail("(document)", "not valid JSON");
  if (!root.is_object()) return r.fail("(document)", "expected a JSON object");
  Profile p;
  // The version first: a file of another version may differ in every other field.
  EBB_ASSIGN_OR_RETURN(const Json* version, r.member(root, "", "version"));
  if (!version->is_number_integer()) {
    return r.fail("version", "expected an integer, found " + version->dump());
  }
  if (version->get<std::int64_t>() != Profile::kSchemaVersion) {
    return r.fail("version", "profile schema version " + version->dump() +
                                 " is not supported (this build reads version " +
                                 std::to_string(Profile::kSchemaVersion) + ")");
  }
  EBB_ASSIGN_OR_RETURN(p.source, r.string_field(root, "", "source"));
  EBB_ASSIGN_OR_RETURN(p.device, r.string_field(root, "", "device"));
  EBB_ASSIGN_OR_RETURN(std::uint64_t iterations, r.unsigned_field(root, "", "iterations"));
  if (iterations < 1 || iterations > 1'000'000) {
    return r.fail("iterations",
                  "must be between 1 and 1000000, found " + std::to_string(iterations));
  }
  p.iterations = static_cast<int>(iterations);
  EBB_ASSIGN_OR_RETURN(const Json* tensors, r.array_field(root, "", "tensors"));
  p.tensors.reserve(tensors->size());
  for (std::size_t i = 0; i < tensors->size(); ++i) {
    EBB_ASSIGN_OR_RETURN(ProfiledTensor t,
                         r.tensor((*tensors)[i], "tensors[" + std::to_string(i) + "]"));
    p.tensors.push_back(std::move(t));
  }
  EBB_ASSIGN_OR_RETURN(const Json* ops, r.array_field(root, "", "ops"));
  p.ops.reserve(ops->size());
  for (std::size_t k = 0; k < ops->size(); ++k) {
    EBB_ASSIGN_OR_RETURN(ProfiledOp op, r.op((*ops)[k], "ops[" + std::to_string(k) + "]"));
    p.ops.push_back(std::move(op));
  }
  EBB_ASSIGN_OR_RETURN(const Json* memory, r.array_field(root, "", "memory"));
  p.memory.reserve(memory->size());
  for (std::size_t k = 0; k < memory->size(); ++k) {
    EBB_ASSIGN_OR_RETURN(MemoryPoint m,
                         r.memory((*memory)[k], "memory[" + std::to_string(k) + "]"));
    p.memory.push_back(m);
  }
  EBB_RETURN_IF_ERROR(validate_profile(p, source_name));
  return p;
}

Status write_profile(const Profile& profile, const std::string& path) {
  EBB_RETURN_IF_ERROR(validate_profile(profile, "profile for " + path));
  std::string text = profile_to_json(profile);
  return write_file_atomically(path, text);
}

Result<Profile> read_profile(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "profile"));
  return profile_from_json(text, path);
}

}  // namespace ebb
