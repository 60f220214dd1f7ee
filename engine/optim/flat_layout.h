// FlatLayout: where each parameter of a model lives in the flat model-state buffers.
//
// Parameters are split into groups (weight decay or none) and, within a group, laid end to end
// in one offset space of elements: the group's flat buffer. The same element offsets serve every
// buffer of the group (16-bit parameters, gradients, fp32 master weights, AdamW's moments), each
// in its own dtype. Each parameter starts at a multiple of `alignment_elements`, so that its
// first byte is aligned to at least `alignment_bytes` in a buffer of 2-byte elements and to twice
// that in one of 4-byte elements. A group's length is padded to a multiple of ranks x
// alignment_elements, and so is every slice, so that each slice splits into `ranks` equal,
// aligned shards (ZeRO partitions every slice by rank, engine/zero/; another rank count lays the
// buffers out again). With one rank, slices are only aligned.
//
// The unit the engine moves is a slice: a contiguous range of a group's buffer holding whole
// parameters (the consecutive parameters that share a slice key, e.g. one transformer block's),
// one engine tensor per buffer and slice. Parameters are views into their slice. The last slice
// of a group also holds the group's padding.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/status.h"

namespace ebb {

enum class ParameterGroup : std::uint8_t { kDecay, kNoDecay };
// "decay", "no_decay".
std::string_view parameter_group_name(ParameterGroup group);
// A slice's name, "<group>.s<index>" ("decay.s3"): the prefix of its engine tensors' names
// ("decay.s3.param", "decay.s3.adamw_m"), of its checkpoint blobs, and what a plan's
// state_placement calls it.
std::string slice_name(ParameterGroup group, std::size_t index);

// One parameter of the model, as the training loop declares it.
struct ParameterDecl {
  std::string name;
  std::vector<std::int64_t> shape;  // every dimension > 0
  ParameterGroup group = ParameterGroup::kDecay;
  // Consecutive parameters of a group with the same key share a slice (a layer's, say).
  int slice_key = 0;
};

struct FlatLayoutOptions {
  std::size_t alignment_bytes = 512;  // >= 512, a power of two
  int ranks = 1;                      // shards the padded buffers split into evenly; >= 1
};

// A parameter's place: its group, its slice in the group, and its element range.
struct FlatEntry {
  std::size_t param = 0;    // index into the declarations
  std::size_t group = 0;    // index into FlatLayout::groups
  std::size_t slice = 0;    // index into the group's slices
  std::int64_t offset = 0;  // first element, in the group's offset space
  std::int64_t numel = 0;
};

// A contiguous range [begin, end) of a group's buffer: the unit the engine moves.
struct FlatSlice {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  std::vector<std::size_t> params;  // indices into the declarations, in offset order

  std::int64_t numel() const { return end - begin; }
};

struct FlatGroup {
  ParameterGroup group = ParameterGroup::kDecay;
  std::vector<FlatSlice> slices;
  std::int64_t numel = 0;            // padded length of the group's buffer, in elements
  std::int64_t parameter_numel = 0;  // elements that belong to parameters (no alignment gaps)
};

struct FlatLayout {
  FlatLayoutOptions options;
  std::int64_t alignment_elements = 0;  // alignment_bytes / 2
  std::vector<FlatGroup> groups;        // the groups that have parameters, kDecay first
  std::vector<FlatEntry> entries;       // one per declaration, in declaration order

  // Every element of every group's buffer, padding included.
  std::int64_t padded_numel() const;
  // Elements that belong to parameters.
  std::int64_t parameter_numel() const;
};

// The layout of `params`. kInvalidArgument naming the parameter for an empty name, a repeated
// name or a shape with a dimension <= 0 (or whose element count overflows), and for options out
// of range.
Result<FlatLayout> make_flat_layout(std::span<const ParameterDecl> params,
                                    const FlatLayoutOptions& options);

// Elements of a shape; 0 when a dimension is <= 0 or the product overflows int64.
std::int64_t shape_numel(std::span<const std::int64_t> shape);

}  // namespace ebb
