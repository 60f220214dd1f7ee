// Sharded checkpoints: one checkpoint per data-parallel rank (ZeRO gives each rank a shard of
// the optimizer state), published together so that a resume loads all shards of one step or
// none. Used by a training loop of N processes; a one-process loop passes single_rank().
//
// On disk, in DIR:
//   DIR/rank-R/step-NNNNNNNN/...     rank R's shard: an ordinary checkpoint (checkpoint.h) whose
//                                    fingerprint is the model's + " ranks=N rank=R"
//   DIR/sharded-manifest.json        the published step: N, the model's fingerprint and, per
//                                    rank, its shard's directory and its manifest's CRC32C
// A write is: every rank writes its shard with write_checkpoint; the ranks vote (all_gather)
// on the outcome and each shard manifest's CRC32C; rank 0 writes sharded-manifest.json, last and
// atomically; a second vote keeps every rank from returning before it is in place. A shard step
// that sharded-manifest.json does not name is not a checkpoint: a process killed anywhere before
// the rename of sharded-manifest.json leaves the previous published step resumable, and the
// next write removes the unpublished shards first, so that write_checkpoint's pruning (keep >=
// 2) never removes the published step.
//
// A read is: every rank reads sharded-manifest.json, refuses another model or another N, opens
// its own shard at the published step, checks its manifest's CRC32C against the published one
// and every payload file's CRC32C (one read of the whole shard: a corrupt byte found after the
// other ranks resumed would split the job), and the ranks vote, so that all succeed or all fail
// with the same message, which names each failing rank and file.
//
// Thread safety: as checkpoint.h. Every function taking a RankGroup is a collective: every rank
// of the group calls it, with the same dir and step, in the same order as the group's other
// collectives; a rank that never calls it leaves the others waiting in all_gather.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema/checkpoint.h"
#include "kernels/status.h"

namespace ebb {

// How the ranks of a job agree: this process's place among them and an all-gather of small
// host buffers, so that this layer needs no Communicator. A Communicator `comm` fits as
//   {comm.rank(), comm.size(), [&](auto send) -> Result<std::vector<std::byte>> {
//      std::vector<std::byte> out(send.size() * comm.size());
//      EBB_RETURN_IF_ERROR(comm.host_all_gather(send.data(), out.data(), send.size()));
//      return out; }}
struct RankGroup {
  int rank = 0;  // 0 <= rank < size
  int size = 1;  // >= 1
  // Returns size * send.size() bytes, rank r's `send` at r * send.size(). Every rank calls it in
  // the same order with the same size. An error (a peer that died) is returned as it is.
  std::function<Result<std::vector<std::byte>>(std::span<const std::byte> send)> all_gather;
};

// Rank 0 of 1: all_gather returns its argument.
RankGroup single_rank();

// Writes this rank's shard of step meta.step into DIR/rank-R (meta.model_fingerprint is the
// model's; the rank suffix is added here) and publishes the step once every rank's shard is
// complete. Returns the same outcome on every rank: when any rank failed, every rank returns
// that rank's code and a message naming each failing rank with its reason, and nothing is
// published. kInvalidArgument also for options.keep < 2 (the published step must survive the
// next write's pruning), and for a bad `ranks` (size < 1, rank out of range, no all_gather),
// returned at once: such a group cannot vote. An error of the second vote (a peer died after the
// publication) may leave the step published.
Status write_sharded_checkpoint(const std::string& dir, const CheckpointMeta& meta,
                                std::span<const CheckpointPayload> payloads, const RankGroup& ranks,
                                const CheckpointOptions& options = {});

// Opens this rank's shard of the published step, every file checked (see the top). The
// Checkpoint is DIR/rank-R/step-N with meta.model_fingerprint the model's. Same outcome on
// every rank, as write_sharded_checkpoint's. kNotFound: no sharded-manifest.json (the message
// says when shard directories exist: a write that was never published), or a shard file is
// missing; kInvalidArgument: another model, or another number of ranks; kDataLoss: a shard's
// manifest or a payload file is not what was published.
Result<Checkpoint> read_latest_sharded_checkpoint(const std::string& dir,
                                                  const std::string& model_fingerprint,
                                                  const RankGroup& ranks);

// Whether DIR holds a sharded-manifest.json (a sharded checkpoint, complete or damaged), rather
// than one process's checkpoints (checkpoint.h). Never writes.
bool is_sharded_checkpoint_dir(const std::string& dir);

// Every rank's shard of the published step, for a reader that runs with another number of ranks
// (or one process): each opened with read_checkpoint, so that a shard whose step, model or rank
// count is not the published one is refused naming its file, and its manifest's CRC32C checked
// against the published one. Payload files are not read: read_payload_pieces checks each file
// it reads. Not a collective; never writes. `model_fingerprint` empty: any model (the published
// one is returned).
struct ShardedCheckpoint {
  std::int64_t step = 0;
  std::string model_fingerprint;
  std::vector<Checkpoint> shards;  // in rank order; shards.size() ranks wrote it
};
Result<ShardedCheckpoint> open_sharded_checkpoint(const std::string& dir,
                                                  const std::string& model_fingerprint);

// One byte range of a payload: `out.size()` bytes from byte `offset`.
struct PayloadPiece {
  std::size_t offset = 0;
  std::span<std::byte> out;
};
// Reads payload `name` of `checkpoint` whole, in bounded chunks, checking its size and CRC32C
// against the manifest, and copies each piece out of it on the way. kNotFound: no such payload
// or file; kInvalidArgument: a piece past the payload's end; kDataLoss: the file's size or
// checksum is not the manifest's (the pieces hold whatever was read). Never writes a file.
Status read_payload_pieces(const Checkpoint& checkpoint, std::string_view name,
                           std::span<const PayloadPiece> pieces);

// What sharded-manifest.json says: the published step.
struct ShardRecord {
  std::string dir;  // relative to DIR: rank-R/step-NNNNNNNN
  std::uint32_t manifest_crc32c = 0;
};
struct ShardedManifest {
  std::int64_t step = 0;
  int ranks = 0;
  std::string model_fingerprint;
  std::vector<ShardRecord> shards;  // one per rank, in rank order
};
// Parses and checks sharded-manifest.json's text; `source` names the file in messages.
// kInvalidArgument: another format or version; kDataLoss: not JSON, a field missing, mistyped
// or out of range, a shard directory or manifest other than the names the writer gives (a read
// never leaves DIR). Touches no file.
Result<ShardedManifest> parse_sharded_manifest(std::string_view text, const std::string& source);

// The steps, ascending, for which DIR/rank-R holds a shard for every rank R of the published
// sharded-manifest.json, up to the published step (the last one: the only one
// read_latest_sharded_checkpoint opens). Newer shard steps are unpublished and not listed.
// kNotFound when DIR holds no sharded-manifest.json. Not a collective; never writes.
Result<std::vector<std::int64_t>> list_sharded_checkpoints(const std::string& dir);

}  // namespace ebb
