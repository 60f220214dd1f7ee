#include "engine/schema/state_layout.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "engine/schema/sharded_checkpoint.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

const char* space_name(BlobSpace s) { return s == BlobSpace::kElements ? "elements" : "factored"; }

Status corrupt(const std::string& source, const std::string& what) {
  return data_loss(source + ": layout: " + what + ": not the state layout a checkpoint records");
}

// The JSON members of a layout, read without exceptions.
template <typename T>
bool get(const Json& j, const char* key, T& out) {
  const auto it = j.find(key);
  if (it == j.end()) return false;
  try {
    out = it->get<T>();
  } catch (const Json::exception&) {
    return false;
  }
  return true;
}

}  // namespace

nlohmann::json state_layout_json(const StateLayout& layout) {
  Json slices = Json::array();
  for (const LayoutSlice& s : layout.slices) {
    Json params = Json::array();
    for (const LayoutParam& p : s.params) {
      params.push_back({{"index", p.index},
                        {"name", p.name},
                        {"shape", p.shape},
                        {"offset", p.offset},
                        {"factored_offset", p.factored_offset},
                        {"factored_floats", p.factored_floats}});
    }
    slices.push_back({{"name", s.name}, {"numel", s.numel}, {"params", std::move(params)}});
  }
  Json blobs = Json::array();
  for (const BlobExtent& b : layout.blobs) {
    blobs.push_back({{"name", b.name},
                     {"slice", b.slice},
                     {"part", b.part},
                     {"space", space_name(b.space)},
                     {"first", b.first},
                     {"last", b.last},
                     {"bytes", b.bytes}});
  }
  return {{"ranks", layout.ranks},
          {"rank", layout.rank},
          {"slices", std::move(slices)},
          {"blobs", std::move(blobs)}};
}

Result<StateLayout> state_layout_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return corrupt(source, "not an object");
  StateLayout out;
  if (!get(j, "ranks", out.ranks) || !get(j, "rank", out.rank) || out.ranks < 1 || out.rank < 0 ||
      out.rank >= out.ranks) {
    return corrupt(source, "ranks and rank missing or out of range");
  }
  const auto slices = j.find("slices");
  const auto blobs = j.find("blobs");
  if (slices == j.end() || !slices->is_array() || blobs == j.end() || !blobs->is_array()) {
    return corrupt(source, "no slices or blobs array");
  }
  for (const Json& js : *slices) {
    LayoutSlice s;
    const auto params = js.find("params");
    if (!js.is_object() || !get(js, "name", s.name) || !get(js, "numel", s.numel) ||
        params == js.end() || !params->is_array()) {
      return corrupt(source, "slice " + std::to_string(out.slices.size()));
    }
    for (const Json& jp : *params) {
      LayoutParam p;
      if (!jp.is_object() || !get(jp, "index", p.index) || !get(jp, "name", p.name) ||
          !get(jp, "shape", p.shape) || !get(jp, "offset", p.offset) ||
          !get(jp, "factored_offset", p.factored_offset) ||
          !get(jp, "factored_floats", p.factored_floats)) {
        return corrupt(source,
                       "slice " + s.name + ": parameter " + std::to_string(s.params.size()));
      }
      s.params.push_back(std::move(p));
    }
    out.slices.push_back(std::move(s));
  }
  for (const Json& jb : *blobs) {
    BlobExtent b;
    std::string space;
    if (!jb.is_object() || !get(jb, "name", b.name) || !get(jb, "slice", b.slice) ||
        !get(jb, "part", b.part) || !get(jb, "space", space) || !get(jb, "first", b.first) ||
        !get(jb, "last", b.last) || !get(jb, "bytes", b.bytes) || b.slice >= out.slices.size() ||
        (space != "elements" && space != "factored") || b.first < 0 || b.last < b.first ||
        static_cast<std::size_t>(b.last - b.first) * sizeof(float) > b.bytes) {
      return corrupt(source, "blob " + std::to_string(out.blobs.size()));
    }
    b.space = space == "elements" ? BlobSpace::kElements : BlobSpace::kFactored;
    out.blobs.push_back(std::move(b));
  }
  return out;
}

Status check_same_parameters(const StateLayout& mine, const StateLayout& theirs,
                             const std::string& source) {
  const auto differ = [&](const std::string& what) {
    return invalid_argument(source + ": " + what + ": the checkpoint is of another model");
  };
  if (mine.slices.size() != theirs.slices.size()) {
    return differ(std::to_string(theirs.slices.size()) + " slices, this model has " +
                  std::to_string(mine.slices.size()));
  }
  for (std::size_t k = 0; k < mine.slices.size(); ++k) {
    const LayoutSlice& a = mine.slices[k];
    const LayoutSlice& b = theirs.slices[k];
    if (a.name != b.name || a.params.size() != b.params.size()) {
      return differ("slice " + std::to_string(k) + " is " + b.name + " with " +
                    std::to_string(b.params.size()) + " parameters, this model's is " + a.name +
                    " with " + std::to_string(a.params.size()));
    }
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      const LayoutParam& p = a.params[i];
      const LayoutParam& q = b.params[i];
      if (p.index != q.index || p.name != q.name || p.shape != q.shape || p.offset != q.offset ||
          p.factored_offset != q.factored_offset || p.factored_floats != q.factored_floats) {
        return differ("slice " + a.name + ": parameter " + q.name + " " + Json(q.shape).dump() +
                      " at element " + std::to_string(q.offset) + ", this model has " + p.name +
                      " " + Json(p.shape).dump() + " at element " + std::to_string(p.offset));
      }
    }
  }
  return ok_status();
}

std::vector<BlobPiece> plan_pieces(std::span<const StateLayout> sources, std::size_t slice,
                                   const std::string& part, std::int64_t first, std::int64_t last) {
  std::vector<BlobPiece> pieces;
  std::int64_t at = first;
  while (at < last) {
    // The first source blob covering `at`; else the nearest one starting after it.
    const BlobExtent* cover = nullptr;
    std::size_t cover_shard = 0;
    std::size_t cover_blob = 0;
    std::int64_t next = last;
    for (std::size_t s = 0; s < sources.size() && cover == nullptr; ++s) {
      for (std::size_t i = 0; i < sources[s].blobs.size(); ++i) {
        const BlobExtent& b = sources[s].blobs[i];
        if (b.slice != slice || b.part != part || b.first == b.last) continue;
        if (b.first <= at && at < b.last) {
          cover = &b;
          cover_shard = s;
          cover_blob = i;
          break;
        }
        if (b.first > at) next = std::min(next, b.first);
      }
    }
    if (cover == nullptr) {  // padding up to the next covered float
      at = next;
      continue;
    }
    const std::int64_t end = std::min(last, cover->last);
    pieces.push_back({.shard = cover_shard,
                      .blob = cover_blob,
                      .from = static_cast<std::size_t>(at - cover->first) * sizeof(float),
                      .to = static_cast<std::size_t>(at - first) * sizeof(float),
                      .bytes = static_cast<std::size_t>(end - at) * sizeof(float)});
    at = end;
  }
  return pieces;
}

Status read_blob_pieces(std::span<const Checkpoint> shards, std::span<const StateLayout> sources,
                        std::span<const std::vector<BlobPiece>> plans,
                        std::span<const std::span<std::byte>> outputs) {
  // Every piece of one source blob, gathered, so that each file is read once.
  std::map<std::pair<std::size_t, std::size_t>, std::vector<PayloadPiece>> by_blob;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    std::fill(outputs[i].begin(), outputs[i].end(), std::byte{0});
    for (const BlobPiece& p : plans[i]) {
      if (p.to + p.bytes > outputs[i].size()) {
        return internal_error("a blob piece of " + sources[p.shard].blobs[p.blob].name +
                              " ends past its output");
      }
      by_blob[{p.shard, p.blob}].push_back(
          {.offset = p.from, .out = outputs[i].subspan(p.to, p.bytes)});
    }
  }
  for (const auto& [where, pieces] : by_blob) {
    const BlobExtent& b = sources[where.first].blobs[where.second];
    EBB_RETURN_IF_ERROR(read_payload_pieces(shards[where.first], b.name, pieces));
  }
  return ok_status();
}

}  // namespace ebb
