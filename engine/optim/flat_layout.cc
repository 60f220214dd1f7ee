#include "engine/optim/flat_layout.h"

#include <limits>
#include <unordered_set>

#include "kernels/arith.h"

namespace ebb {
namespace {}  // namespace

std::string_view parameter_group_name(ParameterGroup group) {
  return group == ParameterGroup::kDecay ? "decay" : "no_decay";
}

std::string slice_name(ParameterGroup group, std::size_t index) {
  return std::string(parameter_group_name(group)) + ".s" + std::to_string(index);
}

std::int64_t shape_numel(std::span<const std::int64_t> shape) {
  if (shape.empty()) return 0;
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d <= 0 || n > std::numeric_limits<std::int64_t>::max() / d) return 0;
    n *= d;
  }
  return n;
}

std::int64_t FlatLayout::padded_numel() const {
  std::int64_t n = 0;
  for (const FlatGroup& g : groups) n += g.numel;
  return n;
}

std::int64_t FlatLayout::parameter_numel() const {
  std::int64_t n = 0;
  for (const FlatGroup& g : groups) n += g.parameter_numel;
  return n;
}

Result<FlatLayout> make_flat_layout(std::span<const ParameterDecl> params,
                                    const FlatLayoutOptions& options) {
  const std::size_t a = options.alignment_bytes;
  if (a < 512 || (a & (a - 1)) != 0) {
    return invalid_argument("flat layout: alignment_bytes " + std::to_string(a) +
                            " must be a power of two >= 512");
  }
  if (options.ranks < 1) {
    return invalid_argument("flat layout: ranks " + std::to_string(options.ranks) +
                            " must be >= 1");
  }
  if (params.empty()) return invalid_argument("flat layout: no parameters");
  FlatLayout layout;
  layout.options = options;
  // Element offsets aligned for the narrowest dtype a buffer uses (2 bytes).
  layout.alignment_elements = static_cast<std::int64_t>(a / 2);
  layout.entries.resize(params.size());
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const ParameterDecl& p = params[i];
    if (p.name.empty())
      return invalid_argument("flat layout: parameter " + std::to_string(i) + " has an empty name");
    if (!names.insert(p.name).second) {
      return invalid_argument("flat layout: parameter name '" + p.name + "' is repeated");
    }
    if (shape_numel(p.shape) == 0) {
      return invalid_argument("flat layout: parameter '" + p.name +
                              "' has a dimension <= 0 or too many elements");
    }
  }
  for (ParameterGroup group : {ParameterGroup::kDecay, ParameterGroup::kNoDecay}) {
    FlatGroup g;
    g.group = group;
    std::int64_t offset = 0;
    bool open = false;
    int key = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const ParameterDecl& p = params[i];
      if (p.group != group) continue;
      if (!open || p.slice_key != key) {
        // Every slice splits into `ranks` equal, aligned shards (ZeRO's unit of ownership).
        offset = round_up(offset, layout.alignment_elements * options.ranks);
        if (open) g.slices.back().end = offset;
        g.slices.push_back(FlatSlice{.begin = offset});
        open = true;
        key = p.slice_key;
      }
      const std::int64_t numel = shape_numel(p.shape);
      layout.entries[i] = FlatEntry{.param = i,
                                    .group = layout.groups.size(),
                                    .slice = g.slices.size() - 1,
                                    .offset = offset,
                                    .numel = numel};
      g.slices.back().params.push_back(i);
      g.parameter_numel += numel;
      offset += round_up(numel, layout.alignment_elements);
    }
    if (!open) continue;
    g.numel = round_up(offset, layout.alignment_elements * options.ranks);
    g.slices.back().end = g.numel;  // the last slice holds the padding
    layout.groups.push_back(std::move(g));
  }
  return layout;
}

}  // namespace ebb
