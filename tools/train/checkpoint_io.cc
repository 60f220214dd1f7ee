#include "tools/train/checkpoint_io.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/schema/atomic_file.h"
#include "engine/zero/zero_checkpoint.h"

namespace ebb::train {
namespace {

std::span<std::byte> bytes_of(std::vector<float>& v) {
  return std::as_writable_bytes(std::span(v));
}

// A one-process checkpoint's fingerprint, from its manifest (read_checkpoint wants it).
Result<std::string> manifest_fingerprint(const std::string& dir, std::int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  const std::string path = dir + "/" + name + "/manifest.json";
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "checkpoint manifest"));
  const nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto f = root.is_object() ? root.find("model_fingerprint") : root.end();
  if (f == root.end() || !f->is_string()) {
    return data_loss(path + ": no model_fingerprint: the checkpoint manifest is corrupt");
  }
  return f->get<std::string>();
}

// Every shard's recorded layout, checked against the published rank count and shard 0's (or
// `model`'s, when given) parameters.
Result<std::vector<StateLayout>> shard_layouts(std::span<const Checkpoint> shards,
                                               const StateLayout* model) {
  std::vector<StateLayout> out;
  for (std::size_t r = 0; r < shards.size(); ++r) {
    EBB_ASSIGN_OR_RETURN(StateLayout l, recorded_state_layout(shards[r]));
    const std::string source = shards[r].path() + "/manifest.json";
    if (l.ranks != static_cast<int>(shards.size()) || l.rank != static_cast<int>(r)) {
      return invalid_argument(source + ": layout: written as rank " + std::to_string(l.rank) +
                              " of " + std::to_string(l.ranks) + ", published as rank " +
                              std::to_string(r) + " of " + std::to_string(shards.size()) +
                              ": the shards disagree");
    }
    EBB_RETURN_IF_ERROR(check_same_parameters(model != nullptr ? *model
                                              : out.empty()    ? l
                                                               : out[0],
                                              l, source));
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

Result<StateLayout> model_state_layout(GptModel& model, int rank, int ranks) {
  return checkpoint_state_layout(model.state(), model.optimizer(), model.zero(), rank, ranks);
}

Result<StateLayout> recorded_state_layout(const Checkpoint& checkpoint) {
  const nlohmann::json& state = checkpoint.meta().state;
  const auto it = state.find("layout");
  if (it == state.end()) {
    return invalid_argument("checkpoint " + checkpoint.path() +
                            " records no state layout: it cannot be re-partitioned or exported");
  }
  return state_layout_from_json(*it, checkpoint.path() + "/manifest.json");
}

bool same_blobs(const StateLayout& mine, const StateLayout& shard) {
  return std::equal(mine.blobs.begin(), mine.blobs.end(), shard.blobs.begin(), shard.blobs.end(),
                    [](const BlobExtent& a, const BlobExtent& b) {
                      return a.name == b.name && a.slice == b.slice && a.part == b.part &&
                             a.first == b.first && a.last == b.last && a.bytes == b.bytes;
                    });
}

Status read_repartitioned(const ShardedCheckpoint& checkpoint, const StateLayout& mine,
                          std::vector<std::vector<std::byte>>& blobs) {
  EBB_ASSIGN_OR_RETURN(std::vector<StateLayout> sources, shard_layouts(checkpoint.shards, &mine));
  std::vector<std::vector<BlobPiece>> plans;
  std::vector<std::span<std::byte>> outputs;
  blobs.assign(mine.blobs.size(), {});
  for (std::size_t i = 0; i < mine.blobs.size(); ++i) {
    const BlobExtent& b = mine.blobs[i];
    blobs[i].resize(b.bytes);
    plans.push_back(plan_pieces(sources, b.slice, b.part, b.first, b.last));
    outputs.emplace_back(blobs[i]);
  }
  return read_blob_pieces(checkpoint.shards, sources, plans, outputs);
}

Result<std::vector<std::vector<float>>> masters_from_weights_file(const std::string& path,
                                                                  const StateLayout& mine) {
  EBB_ASSIGN_OR_RETURN(WeightsFile file, read_weights_file(path));
  std::map<std::string, const NamedTensor*> by_name;
  for (const NamedTensor& t : file.tensors) {
    if (!t.name.starts_with("optimizer/")) by_name[t.name] = &t;
  }
  std::set<std::string> model_names;
  for (const LayoutSlice& s : mine.slices) {
    for (const LayoutParam& p : s.params) {
      model_names.insert(p.name);
      const auto it = by_name.find(p.name);
      if (it == by_name.end()) {
        return invalid_argument("--init-from " + path + ": no tensor " + p.name +
                                " (a parameter of this model)");
      }
      if (it->second->shape != p.shape) {
        return invalid_argument("--init-from " + path + ": tensor " + p.name + " has shape " +
                                nlohmann::json(it->second->shape).dump() + ", this model's is " +
                                nlohmann::json(p.shape).dump());
      }
    }
  }
  for (const auto& [name, t] : by_name) {
    if (!model_names.contains(name)) {
      std::string what = "--init-from " + path;
      what += ": tensor " + name + " is not a parameter of this model";
      return invalid_argument(what);
    }
  }
  std::vector<std::vector<float>> out(mine.blobs.size());
  for (std::size_t i = 0; i < mine.blobs.size(); ++i) {
    const BlobExtent& b = mine.blobs[i];
    if (b.part != "master") continue;
    out[i].assign(b.bytes / sizeof(float), 0.0F);
    for (const LayoutParam& p : mine.slices[b.slice].params) {
      const std::vector<float>& v = by_name[p.name]->values;
      const auto numel = static_cast<std::int64_t>(v.size());
      const std::int64_t lo = std::max(b.first, p.offset);
      const std::int64_t hi = std::min(b.last, p.offset + numel);
      if (lo < hi) {
        std::copy(v.begin() + (lo - p.offset), v.begin() + (hi - p.offset),
                  out[i].begin() + (lo - b.first));
      }
    }
  }
  return out;
}

Result<WeightsFile> export_checkpoint(const std::string& dir, bool optimizer_state) {
  ShardedCheckpoint ckpt;
  if (is_sharded_checkpoint_dir(dir)) {
    EBB_ASSIGN_OR_RETURN(ckpt, open_sharded_checkpoint(dir, ""));
  } else {
    EBB_ASSIGN_OR_RETURN(std::vector<std::int64_t> steps, list_checkpoints(dir));
    if (steps.empty()) return not_found("no checkpoint in " + dir);
    EBB_ASSIGN_OR_RETURN(std::string fingerprint, manifest_fingerprint(dir, steps.back()));
    EBB_ASSIGN_OR_RETURN(Checkpoint one, read_checkpoint(dir, steps.back(), fingerprint));
    ckpt.step = steps.back();
    ckpt.model_fingerprint = fingerprint;
    ckpt.shards.push_back(std::move(one));
  }
  EBB_ASSIGN_OR_RETURN(std::vector<StateLayout> sources, shard_layouts(ckpt.shards, nullptr));
  // Per slice, the parts its blobs hold besides the master weights (in blob order).
  const StateLayout& first = sources[0];
  std::vector<std::vector<std::pair<std::string, BlobSpace>>> parts(first.slices.size());
  for (const StateLayout& l : sources) {
    for (const BlobExtent& b : l.blobs) {
      auto& p = parts[b.slice];
      if (b.part != "master" &&
          std::find(p.begin(), p.end(), std::pair{b.part, b.space}) == p.end()) {
        p.emplace_back(b.part, b.space);
      }
    }
  }
  // Every parameter in declaration order, then (with the state) its buffers.
  std::vector<std::pair<std::size_t, const LayoutParam*>> params;
  for (std::size_t k = 0; k < first.slices.size(); ++k) {
    for (const LayoutParam& p : first.slices[k].params) params.emplace_back(p.index, &p);
  }
  std::sort(params.begin(), params.end());
  WeightsFile out;
  std::vector<std::vector<BlobPiece>> plans;
  std::map<const LayoutParam*, std::size_t> slice_index;
  for (std::size_t k = 0; k < first.slices.size(); ++k) {
    for (const LayoutParam& p : first.slices[k].params) slice_index[&p] = k;
  }
  const auto add = [&](std::string name, std::vector<std::int64_t> shape, std::size_t k,
                       const std::string& part, std::int64_t lo, std::int64_t hi) {
    out.tensors.push_back(
        {std::move(name), std::move(shape), std::vector<float>(static_cast<std::size_t>(hi - lo))});
    plans.push_back(plan_pieces(sources, k, part, lo, hi));
  };
  for (const auto& [index, p] : params) {
    const std::size_t k = slice_index[p];
    const std::int64_t numel = shape_numel(p->shape);
    add(p->name, p->shape, k, "master", p->offset, p->offset + numel);
  }
  if (optimizer_state) {
    for (const auto& [index, p] : params) {
      const std::size_t k = slice_index[p];
      for (const auto& [part, space] : parts[k]) {
        if (space == BlobSpace::kElements) {
          add("optimizer/" + part + "/" + p->name, p->shape, k, part, p->offset,
              p->offset + shape_numel(p->shape));
        } else {
          add("optimizer/" + part + "/" + p->name, {p->factored_floats}, k, part,
              p->factored_offset, p->factored_offset + p->factored_floats);
        }
      }
    }
  }
  std::vector<std::span<std::byte>> outputs;
  for (NamedTensor& t : out.tensors) outputs.push_back(bytes_of(t.values));
  EBB_RETURN_IF_ERROR(read_blob_pieces(ckpt.shards, sources, plans, outputs));
  out.metadata = {{"step", std::to_string(ckpt.step)},
                  {"model_fingerprint", ckpt.model_fingerprint},
                  {"ranks", std::to_string(ckpt.shards.size())}};
  return out;
}

}  // namespace ebb::train
