#include "engine/zero/zero_checkpoint.h"

#include <map>
#include <string>
#include <utility>

namespace ebb {
namespace {

// Which of the optimizer's state buffers are factored (a parameter's statistics are rows and
// columns, not elements): optimizer.h's SliceState::a of Adafactor and SM3.
Result<BlobSpace> space_of(const std::string& part, const std::string& blob) {
  if (part == "master" || part == "adamw_m" || part == "adamw_v" ||
      part == "adafactor_first_moment" || part == "sm3_momentum") {
    return BlobSpace::kElements;
  }
  if (part == "adafactor_second_moment" || part == "sm3_accumulators") return BlobSpace::kFactored;
  return internal_error("checkpoint blob " + blob + ": state buffer \"" + part +
                        "\" is neither elementwise nor factored to the checkpoint layout");
}

}  // namespace

Result<StateLayout> checkpoint_state_layout(const ModelState& full, const Optimizer& optimizer,
                                            const ZeroOptimizer* zero, int rank, int ranks) {
  StateLayout out{.ranks = ranks, .rank = rank, .slices = {}, .blobs = {}};
  const FlatLayout& layout = full.layout();
  const OptimizerConfig& config = optimizer.config();
  // A blob's label (its slice's name with the state's prefix) -> the full slice, and whether the
  // blob is the rank's range (a shard's slice) or the whole slice (the full state's).
  std::map<std::string, std::pair<std::size_t, bool>> slice_of;
  // Per full slice: the factored offset of each parameter's first element.
  std::vector<std::map<std::int64_t, std::int64_t>> factored_at(full.slices().size());
  for (std::size_t k = 0; k < full.slices().size(); ++k) {
    const ModelState::Slice& ms = full.slices()[k];
    const FlatGroup& group = layout.groups[ms.group];
    const FlatSlice& fs = group.slices[ms.index];
    LayoutSlice s{.name = slice_name(group.group, ms.index), .numel = ms.numel, .params = {}};
    std::int64_t factored = 0;
    for (std::size_t p : fs.params) {
      const FlatEntry& e = layout.entries[p];
      const std::int64_t floats =
          config.kind == OptimizerKind::kAdamW
              ? 0
              : slice_state_floats(config, full.params(), FlatSlice{.params = {p}}).a;
      s.params.push_back({.index = p,
                          .name = full.params()[p].name,
                          .shape = full.params()[p].shape,
                          .offset = e.offset - fs.begin,
                          .factored_offset = factored,
                          .factored_floats = floats});
      factored_at[k][e.offset - fs.begin] = factored;
      factored += floats;
    }
    factored_at[k][ms.numel] = factored;
    out.slices.push_back(std::move(s));
    slice_of[full.slice_label(k)] = {k, false};
    if (zero != nullptr && zero->shard_slice(k) >= 0) {
      slice_of[zero->shard().slice_label(static_cast<std::size_t>(zero->shard_slice(k)))] = {k,
                                                                                             true};
    }
  }
  for (const Optimizer::Blob& blob : optimizer.blobs()) {
    std::string label;
    std::string part;
    if (blob.name.starts_with("master.")) {
      label = blob.name.substr(7);
      part = "master";
    } else if (blob.name.starts_with("optimizer.") && blob.name.rfind('.') > 10) {
      const std::size_t dot = blob.name.rfind('.');
      label = blob.name.substr(10, dot - 10);
      part = blob.name.substr(dot + 1);
    }
    const auto it = slice_of.find(label);
    if (it == slice_of.end()) {
      return internal_error("checkpoint blob " + blob.name + " names no slice of the model state");
    }
    const std::size_t k = it->second.first;
    EBB_ASSIGN_OR_RETURN(BlobSpace space, space_of(part, blob.name));
    std::pair<std::int64_t, std::int64_t> range{0, full.slices()[k].numel};
    if (it->second.second) range = zero->owned(k);
    if (space == BlobSpace::kFactored) {
      // Ranges of factored optimizers hold whole parameters: both ends start a parameter (or
      // end the slice's parameters).
      const auto at = [&](std::int64_t element) {
        const auto f = factored_at[k].lower_bound(element);
        return f == factored_at[k].end() ? factored_at[k].rbegin()->second : f->second;
      };
      range = {at(range.first), at(range.second)};
    }
    out.blobs.push_back({.name = blob.name,
                         .slice = k,
                         .part = part,
                         .space = space,
                         .first = range.first,
                         .last = range.second,
                         .bytes = blob.bytes});
  }
  return out;
}

}  // namespace ebb
