// JsonFieldReader: reads typed fields of the engine's JSON documents (profiles, plans, hardware
// profiles) and names each failure by the document and the field's path from the root
// ("plan.json: evictions[3].needed_at: expected a non-negative integer, found -1").
//
// Thread safety: a const view of a source name; use from one thread or share read-only.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/status.h"

namespace ebb {

class JsonFieldReader {
 public:
  using Json = nlohmann::json;

  // REQUIRES: `source` outlives the reader.
  explicit JsonFieldReader(const std::string& source) : source_(source) {}

  // kInvalidArgument "<source>: <path>: <what>".
  Status fail(const std::string& path, const std::string& what) const {
    return invalid_argument(source_ + ": " + path + ": " + what);
  }
  // `path` is the object's path with a trailing "." (or empty at the root); the key is appended.
  Result<const Json*> member(const Json& object, const std::string& path, const char* key) const {
    auto it = object.find(key);
    if (it == object.end()) return fail(path + key, "missing");
    return &*it;
  }
  Result<std::uint64_t> unsigned_at(const Json& value, const std::string& path) const {
    if (!value.is_number_unsigned()) {
      return fail(path, "expected a non-negative integer, found " + value.dump());
    }
    return value.get<std::uint64_t>();
  }
  Result<std::uint64_t> unsigned_field(const Json& object, const std::string& path,
                                       const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    return unsigned_at(*v, path + key);
  }
  Result<std::int64_t> signed_field(const Json& object, const std::string& path,
                                    const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_number_integer()) return fail(path + key, "expected an integer, found " + v->dump());
    return v->get<std::int64_t>();
  }
  Result<double> number_field(const Json& object, const std::string& path, const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_number()) return fail(path + key, "expected a number, found " + v->dump());
    return v->get<double>();
  }
  // A bandwidth: a finite number of bytes per second >= 0.
  Result<double> bandwidth_field(const Json& object, const std::string& path,
                                 const char* key) const {
    EBB_ASSIGN_OR_RETURN(double v, number_field(object, path, key));
    if (!std::isfinite(v) || v < 0) {
      return fail(path + key, "must be a finite number of bytes per second >= 0, found " +
                                  object.at(key).dump());
    }
    return v;
  }
  Result<bool> bool_field(const Json& object, const std::string& path, const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_boolean()) return fail(path + key, "expected true or false, found " + v->dump());
    return v->get<bool>();
  }
  Result<std::string> string_field(const Json& object, const std::string& path,
                                   const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_string()) return fail(path + key, "expected a string, found " + v->dump());
    return v->get<std::string>();
  }
  Result<const Json*> object_field(const Json& object, const std::string& path,
                                   const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_object()) return fail(path + key, "expected an object");
    return v;
  }
  Result<const Json*> array_field(const Json& object, const std::string& path,
                                  const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_array()) {
      return fail(path + key, "expected an array, found " + v->dump().substr(0, 80));
    }
    return v;
  }
  // An array of non-negative integers (tensor ids, op indices).
  Result<std::vector<std::size_t>> index_array(const Json& object, const std::string& path,
                                               const char* key) const {
    EBB_ASSIGN_OR_RETURN(const Json* v, member(object, path, key));
    if (!v->is_array()) return fail(path + key, "expected an array, found " + v->dump());
    std::vector<std::size_t> out;
    out.reserve(v->size());
    for (std::size_t i = 0; i < v->size(); ++i) {
      EBB_ASSIGN_OR_RETURN(std::uint64_t x,
                           unsigned_at((*v)[i], path + key + "[" + std::to_string(i) + "]"));
      out.push_back(x);
    }
    return out;
  }

 private:
  const std::string& source_;
};

}  // namespace ebb
