// NvmeChunkStore: a set of byte buffers (an optimizer's fp32 master weights and moments) kept on
// the NVMe tier in chunks, and streamed through pinned staging buffers for an in-place update,
// as ZeRO-Infinity streams an optimizer step over state that lives on NVMe.
//
// Layout. The state is cut into chunks; a chunk holds one part of every state buffer (its
// master, m and v ranges, say), and lives on the tier as one extent: its parts concatenated,
// each at an offset aligned to kChunkPartAlignBytes, the padding zero.
//
// Streaming. stream() runs three stages over the chunks in order: a reader thread reads chunk
// c+1 from the tier, the caller's thread updates chunk c, and a writer thread writes chunk c-1
// back. Three staging buffers of the largest chunk rotate between them (chunk c uses buffer
// c % 3), so memory is bounded by three chunks and no queue grows. The tier serializes its
// calls on one ring, so the read of c+1 and the write of c-1 take turns on the disk while the
// update overlaps both: a stream's wall time is bounded below by the larger of
// bytes/read bandwidth + bytes/write bandwidth and the update's own time.
//
// Transactions. A stream writes the updated chunks as new extents and switches to them only
// once every chunk has been updated and written, then frees the old ones. Any failure (the
// update returns an error, an I/O error, a checksum mismatch, a full tier) frees the new extents
// and keeps the old ones, so the state on the tier is still the previous step's. The tier
// must therefore hold two copies of the state; create() checks that it does when it starts.
//
// Ownership: owns its extents on the tier and its three staging buffers in the host tier, and
// frees both in the destructor. The tier and the host tier must outlive the store.
//
// Thread safety: not thread-safe; one caller at a time. The caller's functions (update, sink,
// source, initial) run on the calling thread, one chunk at a time, in chunk order, and must not
// call back into the store; the observer runs on the pipeline's threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/status.h"
#include "offload/host_tier.h"
#include "offload/nvme_tier.h"

namespace ebb {

inline constexpr std::size_t kChunkPartAlignBytes = 64;  // a cache line; the start of each part
inline constexpr std::size_t kChunkStagingBuffers = 3;   // reading, updating, writing

// One chunk: the byte size of each of its parts (a part per state buffer, e.g. master, m, v).
// A part may be empty; the chunk as a whole may not.
struct ChunkShape {
  std::vector<std::size_t> part_bytes;
};

// The stage of a chunk's trip through a pass, for ChunkStoreOptions::observer.
enum class ChunkStage : std::uint8_t {
  kRead,     // from the tier into a staging buffer
  kCompute,  // the caller's update, sink or source
  kWrite,    // from a staging buffer to a new extent
};

struct ChunkStoreOptions {
  std::string name;                  // names the extents ("<name>/chunk3") and every error
  std::vector<ChunkShape> chunks{};  // at least one
  // Tests and tracing: called as each stage of each chunk starts (started = true) and ends, on
  // the thread that runs the stage. Must be thread-safe; nullptr = none.
  std::function<void(ChunkStage stage, std::size_t chunk, bool started)> observer = nullptr;
};

struct ChunkStoreStats {
  std::size_t chunks = 0;         // chunks in the store
  std::size_t bytes = 0;          // logical: every part of every chunk
  std::size_t extent_bytes = 0;   // on the tier per copy: the parts with their alignment padding
  std::size_t staging_bytes = 0;  // pinned host bytes held for the three staging buffers
  std::int64_t streams = 0;       // stream() calls that committed
  std::size_t read_bytes = 0;     // extent bytes read from the tier since creation
  std::size_t written_bytes = 0;  // extent bytes written to the tier since creation
  // Of the last stream() (committed or not), in wall seconds: time inside the tier's reads (not
  // counting the wait for the writer's turn on the tier), inside the caller's update, inside
  // the tier's writes, and from the call to its return.
  double last_read_s = 0;
  double last_compute_s = 0;
  double last_write_s = 0;
  double last_wall_s = 0;
};

class NvmeChunkStore {
 public:
  // Fills part `part` of chunk `chunk` (part_bytes of it) for the initial state or a restore.
  using Source = std::function<void(std::size_t chunk, std::size_t part, std::span<std::byte>)>;
  // Takes part `part` of chunk `chunk` as read (and verified) from the tier.
  using Sink = std::function<void(std::size_t chunk, std::size_t part, std::span<const std::byte>)>;
  // Updates chunk `chunk` in place: parts[p] is its part p, in a staging buffer.
  using Update =
      std::function<Status(std::size_t chunk, std::span<const std::span<std::byte>> parts)>;

  // Takes three staging buffers of the largest chunk from `staging` and writes every chunk from
  // `initial` (nullptr: zeros). kInvalidArgument for no chunks or an empty chunk; kOutOfMemory,
  // saying how many bytes were needed, when the tier has less free than two copies of the state
  // or the host tier cannot give the staging buffers; the tier's errors.
  static Result<std::unique_ptr<NvmeChunkStore>> create(NvmeTier& tier, HostTier& staging,
                                                        ChunkStoreOptions options,
                                                        const Source& initial);
  ~NvmeChunkStore();
  NvmeChunkStore(const NvmeChunkStore&) = delete;
  NvmeChunkStore& operator=(const NvmeChunkStore&) = delete;

  // For c = 0..chunks()-1 in order, update(c, parts) while chunk c+1 is read and chunk c-1
  // written; commits only if every chunk was updated and written. On any failure the store
  // keeps the previous state and the error names the store, the chunk and the cause (with the
  // cause's code: the update's own, kIoError, kDataLoss, kOutOfMemory).
  Status stream(const Update& update);
  // Every part of every chunk, in chunk order, into `sink` (for a checkpoint).
  Status read_all(const Sink& sink);
  // Replaces every part of every chunk with what `source` writes (a restore); all or nothing,
  // as stream().
  Status write_all(const Source& source);

  ChunkStoreStats stats() const;
  std::size_t chunks() const { return chunks_.size(); }
  const std::string& name() const { return options_.name; }

 private:
  // Where a chunk's parts lie in its extent (and in a staging buffer).
  struct Chunk {
    std::vector<std::size_t> part_offsets;
    std::size_t extent_bytes = 0;
  };
  // One stage of a pass: what it does to a chunk, and whether it runs on the caller's thread
  // (else on a thread of its own) and holds the tier's turn while it runs.
  struct Stage {
    ChunkStage kind;
    const char* doing;  // for errors: "reading", "updating", ...
    std::function<Status(std::size_t chunk)> run;
    bool on_caller = false;
    bool io = false;
  };
  // What a pass did: per stage, the chunks it finished and the seconds it ran.
  struct PassReport {
    Status status{};
    std::vector<std::size_t> done{};
    std::vector<double> busy_s{};
  };

  NvmeChunkStore(NvmeTier& tier, HostTier& staging, ChunkStoreOptions options);
  Status init(const Source& initial);
  // Runs the stages as a pipeline over every chunk (stage s of chunk c after stage s-1 of it;
  // the first stage of c once the last stage of c-3 freed its buffer).
  PassReport run_pass(const std::vector<Stage>& stages);
  // The stage that reads chunk c's committed extent into its buffer.
  Stage read_stage();
  // The stage that writes chunk c from its buffer to (*written)[c], a new extent.
  Stage write_stage(std::vector<ExtentId>* written);
  // Commits the new extents of a pass that succeeded, or frees them after one that failed.
  Status finish_writes(Status status, std::vector<ExtentId>* written);
  std::span<std::byte> part(std::size_t chunk, std::size_t part) const;
  // Zeros the gaps between a chunk's parts in its staging buffer: they are written too.
  void zero_padding(std::size_t chunk) const;
  std::byte* buffer(std::size_t chunk) const { return staging_[chunk % kChunkStagingBuffers]; }
  // The tier bytes one copy of the state takes (extents rounded up to whole blocks).
  std::size_t tier_bytes_per_copy() const;
  // The extent bytes of chunks 0..chunks-1: what a stage that finished them moved.
  std::size_t extent_bytes_of_first(std::size_t chunks) const;

  NvmeTier& tier_;
  HostTier& host_;
  const ChunkStoreOptions options_;
  std::vector<Chunk> chunks_;
  std::vector<ExtentId> extents_;  // the committed state, one per chunk
  std::vector<std::byte*> staging_;
  ChunkStoreStats stats_;
};

// The chunk size to stream by on `tier`: enough blocks to keep its queue full in one call
// (queue_depth x block_bytes), and at least 4 MiB, so that a chunk's per-call cost (a thread
// hand-off, the tier's lock, the update's call) is small beside its transfer time.
std::size_t stream_chunk_bytes(const NvmeTier& tier);

}  // namespace ebb
