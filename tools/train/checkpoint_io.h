// The trainer's checkpoint state beyond one rank's own shard: the layout every checkpoint
// records (engine/schema/state_layout.h), a resume that re-partitions a checkpoint written by
// another number of ZeRO ranks, a run that starts from a weights file (--init-from), and the
// export of any checkpoint to a weights file (`ebb checkpoint export`).
//
// Thread safety: not thread-safe; the thread that drives the model's engine calls it.
#pragma once

#include <string>

#include "engine/schema/sharded_checkpoint.h"
#include "engine/schema/state_layout.h"
#include "engine/schema/weights_file.h"
#include "tools/train/gpt_model.h"

namespace ebb::train {

// The layout of `model`'s checkpoint blobs on this rank (rank 0 of 1 without ZeRO).
Result<StateLayout> model_state_layout(GptModel& model, int rank, int ranks);

// The layout `checkpoint` recorded (its trainer state's "layout"); kInvalidArgument naming the
// checkpoint when it has none.
Result<StateLayout> recorded_state_layout(const Checkpoint& checkpoint);

// Whether this rank's blobs are the ones `shard` holds, name for name and range for range (then
// it is read as written, without re-partitioning).
bool same_blobs(const StateLayout& mine, const StateLayout& shard);

// Reads this rank's blobs (layout `mine`) out of every shard of `checkpoint`: only the blobs
// that overlap this rank's ranges, each file read whole and checked against its CRC32C, into
// `blobs` (one buffer per blob of `mine`, sized as it says). kInvalidArgument naming the shard
// when a shard's recorded layout is missing, of another model (names, shapes, offsets), or
// disagrees with the published rank count or its rank; the reads' own errors as they are.
// Writes nothing.
Status read_repartitioned(const ShardedCheckpoint& checkpoint, const StateLayout& mine,
                          std::vector<std::vector<std::byte>>& blobs);

// The weights of `path` (write_weights_file's format) as this rank's master blobs (layout
// `mine`): every parameter of the model must be there with its shape (tensors named
// "optimizer/..." are ignored). Returns one buffer per blob of `mine`, empty for a blob that is
// not a master. kInvalidArgument naming the file and the tensor for a missing, unknown or
// misshapen tensor; read_weights_file's errors for a damaged file.
Result<std::vector<std::vector<float>>> masters_from_weights_file(const std::string& path,
                                                                  const StateLayout& mine);

// The consolidated weights of the latest checkpoint in `dir` (sharded, by any number of ranks,
// or one process's): every parameter's fp32 master weights by name in the model's declaration
// order and, with `optimizer_state`, every parameter's optimizer state as
// "optimizer/<buffer>/<name>" (elementwise buffers in the parameter's shape, factored ones
// flat). Reads every blob once, checked. Writes nothing.
Result<WeightsFile> export_checkpoint(const std::string& dir, bool optimizer_state);

}  // namespace ebb::train
