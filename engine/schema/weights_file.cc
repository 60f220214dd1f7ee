#include "engine/schema/weights_file.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/schema/atomic_file.h"
#include "offload/crc32c.h"

namespace ebb {
namespace {

using OrderedJson = nlohmann::ordered_json;
using Json = nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "weights files are little-endian, as this host must be");

constexpr const char* kWeightsFormat = "ebb-weights";
constexpr const char* kWeightsVersion = "1";
constexpr const char* kCrcPrefix = "crc32c.";
// A header longer than this (64 MiB) is damage, not a model's tensor list.
constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{64} << 20;

std::string hex32(std::uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}

// Whether `j` is an array of integers (of non-negative ones when `non_negative`).
bool is_integer_array(const OrderedJson& j, bool non_negative) {
  return j.is_array() && std::all_of(j.begin(), j.end(), [&](const OrderedJson& v) {
           return non_negative ? v.is_number_unsigned() : v.is_number_integer();
         });
}

std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0 || (d > 0 && n > (std::int64_t{1} << 40) / d)) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

Status write_weights_file(const std::string& path, const WeightsFile& weights) {
  OrderedJson header = OrderedJson::object();
  OrderedJson meta = OrderedJson::object();
  meta["format"] = kWeightsFormat;
  meta["version"] = kWeightsVersion;
  std::set<std::string> names;
  std::size_t offset = 0;
  for (const NamedTensor& t : weights.tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second) {
      return invalid_argument("weights file " + path + ": tensor name \"" + t.name +
                              "\" is empty, reserved or repeated");
    }
    if (numel_of(t.shape) != static_cast<std::int64_t>(t.values.size())) {
      return invalid_argument("weights file " + path + ": tensor " + t.name + " has " +
                              std::to_string(t.values.size()) + " values for shape " +
                              Json(t.shape).dump());
    }
    const std::size_t bytes = t.values.size() * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    meta[kCrcPrefix + t.name] = hex32(crc32c(t.values.data(), bytes));
    offset += bytes;
  }
  for (const auto& [key, value] : weights.metadata) meta[key] = value;
  header["__metadata__"] = std::move(meta);
  std::string text;
  try {  // nlohmann throws on a name that is not UTF-8
    text = header.dump();
  } catch (const Json::exception& e) {
    return invalid_argument("weights file " + path + ": a name is not valid UTF-8 (" + e.what() +
                            ")");
  }
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::string file(8, '\0');
  const std::uint64_t h = text.size();
  std::memcpy(file.data(), &h, sizeof h);
  file += text;
  file.reserve(file.size() + offset);
  for (const NamedTensor& t : weights.tensors) {
    file.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * sizeof(float));
  }
  return write_file_atomically(path, file);
}

Result<WeightsFile> parse_weights_file(std::string_view file, const std::string& path) {
  const auto damaged = [&](const std::string& what) {
    return data_loss("weights file " + path + ": " + what + ": the file is damaged");
  };
  std::uint64_t h = 0;
  if (file.size() < 8) return damaged("shorter than its 8-byte header length");
  std::memcpy(&h, file.data(), sizeof h);
  if (h > kMaxHeaderBytes || h > file.size() - 8) {
    return damaged("a header of " + std::to_string(h) + " bytes in a file of " +
                   std::to_string(file.size()));
  }
  const OrderedJson header =
      OrderedJson::parse(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(h),
                         nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return damaged("the header is not JSON");
  const auto meta = header.find("__metadata__");
  // Not nlohmann's value(key, ""), which throws when the key holds something else than a string.
  const auto says = [&](const char* key, const char* expected) {
    const auto v = meta->find(key);
    return v != meta->end() && v->is_string() && v->get_ref<const std::string&>() == expected;
  };
  if (meta == header.end() || !meta->is_object() || !says("format", kWeightsFormat) ||
      !says("version", kWeightsVersion)) {
    return invalid_argument("weights file " + path + ": not an " + kWeightsFormat +
                            " file of version " + kWeightsVersion +
                            " (no __metadata__ with its format and version)");
  }
  const std::size_t data_bytes = file.size() - 8 - h;
  const char* data = file.data() + 8 + h;
  WeightsFile out;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    NamedTensor t;
    t.name = name;
    std::vector<std::size_t> offsets;
    try {
      if (entry.at("dtype").get<std::string>() != "F32") {
        std::string what = "weights file " + path;
        what += ": tensor " + name;
        what += " is of dtype " + entry.at("dtype").dump() + ", not F32";
        return invalid_argument(what);
      }
      // Integers only: get<> converts a float such as 3e27 by a cast that is undefined when out
      // of range.
      if (!is_integer_array(entry.at("shape"), false) ||
          !is_integer_array(entry.at("data_offsets"), true)) {
        return damaged("tensor " + name + ": shape or data_offsets not arrays of integers");
      }
      t.shape = entry.at("shape").get<std::vector<std::int64_t>>();
      offsets = entry.at("data_offsets").get<std::vector<std::size_t>>();
    } catch (const OrderedJson::exception&) {
      return damaged("tensor " + name + ": no dtype, shape or data_offsets");
    }
    const std::int64_t n = numel_of(t.shape);
    if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_bytes || n < 0 ||
        offsets[1] - offsets[0] != static_cast<std::size_t>(n) * sizeof(float)) {
      return damaged("tensor " + name + ": data_offsets do not fit its shape " +
                     Json(t.shape).dump() + " within the " + std::to_string(data_bytes) +
                     " data bytes");
    }
    t.values.resize(static_cast<std::size_t>(n));
    // An empty vector's data() may be null, and memcpy's pointers must not be, even for 0 bytes.
    if (n > 0) std::memcpy(t.values.data(), data + offsets[0], offsets[1] - offsets[0]);
    const auto crc = meta->find(kCrcPrefix + name);
    if (crc == meta->end() || !crc->is_string()) return damaged("tensor " + name + ": no CRC32C");
    const std::string got = hex32(crc32c(t.values.data(), offsets[1] - offsets[0]));
    if (crc->get<std::string>() != got) {
      std::string what = "tensor " + name;
      what += " has CRC32C " + got;
      what += ", the header lists " + crc->get<std::string>();
      return damaged(what);
    }
    spans.emplace_back(offsets[0], out.tensors.size());
    out.tensors.push_back(std::move(t));
  }
  // File order is data order (the JSON object's order is not guaranteed by other writers).
  std::sort(spans.begin(), spans.end());
  std::vector<NamedTensor> ordered;
  ordered.reserve(spans.size());
  for (const auto& s : spans) ordered.push_back(std::move(out.tensors[s.second]));
  out.tensors = std::move(ordered);
  for (const auto& [key, value] : meta->items()) {
    if (key == "format" || key == "version" || key.starts_with(kCrcPrefix)) continue;
    out.metadata.emplace_back(key, value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

Result<WeightsFile> read_weights_file(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(std::string file, read_text_file(path, "weights file"));
  return parse_weights_file(file, path);
}

}  // namespace ebb
