// StateLayout: what a checkpoint's optimizer blobs hold, in terms that do not depend on how many
// ranks wrote it, so that another number of ranks (or one process) can read it back.
//
// A model's state is laid out in slices (engine/optim/flat_layout.h): each slice holds whole
// parameters at element offsets that depend only on the model, and is padded at its end to a
// multiple of ranks x alignment (which does depend on the ranks). Every blob of a checkpoint
// (Optimizer::blobs: a slice's master weights, its optimizer state buffers) is one contiguous
// range of one slice in one of two coordinate spaces:
//   kElements: the slice's elements (master weights, AdamW's moments, Adafactor's first moment,
//              SM3's momentum): float i of the range is element first + i of the slice;
//   kFactored: the slice's factored statistics (Adafactor's second moment, SM3's accumulators),
//              each parameter's laid end to end in the slice's order: float i of the range is
//              float first + i of that concatenation.
// A ZeRO rank's blob is the rank's range of the slice (engine/zero/zero.h); a blob of one
// process, or of stage 0's replicated state, is the whole slice. Elements no blob covers are
// padding and read as zeros.
//
// A checkpoint records its StateLayout in its trainer state (tools/train/trainer.cc: the
// "layout" member); a reader plans which byte pieces of which blobs make up each blob it needs
// (plan_pieces) and reads only those blobs' files, each whole and checked against its CRC32C
// (read_payload_pieces, sharded_checkpoint.h).
//
// Thread safety: plain values and pure functions, except read_blob_pieces, which reads files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engine/schema/checkpoint.h"
#include "kernels/status.h"

namespace ebb {

enum class BlobSpace : std::uint8_t { kElements, kFactored };

// One parameter of a slice.
struct LayoutParam {
  std::size_t index = 0;  // the parameter's place in the model's declaration order
  std::string name;
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;           // first element, from the slice's start
  std::int64_t factored_offset = 0;  // first factored float, from the slice's (0 for AdamW)
  std::int64_t factored_floats = 0;  // its factored statistics' floats (0 for AdamW)
};

// One slice of the layout, named as slice_name() names it ("decay.s3"): the same in every run
// of the model whatever the ranks.
struct LayoutSlice {
  std::string name;
  std::int64_t numel = 0;  // padded elements (depends on the ranks)
  std::vector<LayoutParam> params;
};

// One blob: a range of one slice in one space.
struct BlobExtent {
  std::string name;       // the checkpoint payload's name
  std::size_t slice = 0;  // index into StateLayout::slices
  // What the range holds, named as the optimizer's state buffer is ("master", "adamw_m",
  // "adafactor_second_moment", ...): the same part of another rank's blob has the same name.
  std::string part;
  BlobSpace space = BlobSpace::kElements;
  std::int64_t first = 0;  // [first, last) floats of the space
  std::int64_t last = 0;
  std::size_t bytes = 0;  // the blob's size, at least (last - first) * 4
};

struct StateLayout {
  int ranks = 1;  // the ranks that wrote the checkpoint this layout is one shard of
  int rank = 0;
  std::vector<LayoutSlice> slices;
  std::vector<BlobExtent> blobs;  // in the writer's blob order
};

nlohmann::json state_layout_json(const StateLayout& layout);
// kDataLoss naming `source` and the field when the JSON is not a StateLayout.
Result<StateLayout> state_layout_from_json(const nlohmann::json& j, const std::string& source);

// OK when `theirs` lays out the same parameters in the same slices as `mine` (names, shapes,
// offsets, factored sizes; the slices' padded sizes may differ); else kInvalidArgument naming
// `source` and the first slice or parameter that differs.
Status check_same_parameters(const StateLayout& mine, const StateLayout& theirs,
                             const std::string& source);

// A byte range of a source blob copied into the output: `bytes` bytes from byte `from` of
// source `shard`'s blob `blob` (its index in that layout's blobs) to byte `to` of the output.
struct BlobPiece {
  std::size_t shard = 0;
  std::size_t blob = 0;
  std::size_t from = 0;
  std::size_t to = 0;
  std::size_t bytes = 0;
};

// The pieces that make up floats [first, last) of `part` of slice `slice` (an index into the
// layouts' common slice list) from the sources' blobs (every source shard's layout, in shard
// order): each float from the first source blob (shard order, then blob order) that covers it;
// floats no blob covers are padding, left to the caller's zeros.
std::vector<BlobPiece> plan_pieces(std::span<const StateLayout> sources, std::size_t slice,
                                   const std::string& part, std::int64_t first, std::int64_t last);

// Fills each output from its pieces: reads every source blob that some piece names once, whole,
// checking its CRC32C (read_payload_pieces), and copies the pieces into `outputs[i]` (zeroed
// first) for the pieces of plans[i]. `shards[s]` is the checkpoint of source s.
Status read_blob_pieces(std::span<const Checkpoint> shards, std::span<const StateLayout> sources,
                        std::span<const std::vector<BlobPiece>> plans,
                        std::span<const std::span<std::byte>> outputs);

}  // namespace ebb
