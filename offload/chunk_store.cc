#include "offload/chunk_store.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "kernels/arith.h"

namespace ebb {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

std::size_t stream_chunk_bytes(const NvmeTier& tier) {
  return std::max(std::size_t{tier.queue_depth()} * tier.block_bytes(), 4 * kMiB);
}

NvmeChunkStore::NvmeChunkStore(NvmeTier& tier, HostTier& staging, ChunkStoreOptions options)
    : tier_(tier), host_(staging), options_(std::move(options)) {}

Result<std::unique_ptr<NvmeChunkStore>> NvmeChunkStore::create(NvmeTier& tier, HostTier& staging,
                                                               ChunkStoreOptions options,
                                                               const Source& initial) {
  const std::string who = "chunk store '" + options.name + "'";
  if (options.chunks.empty()) return invalid_argument(who + ": no chunks");
  for (std::size_t c = 0; c < options.chunks.size(); ++c) {
    const std::vector<std::size_t>& parts = options.chunks[c].part_bytes;
    if (std::all_of(parts.begin(), parts.end(), [](std::size_t b) { return b == 0; })) {
      return invalid_argument(who + ": chunk " + std::to_string(c) + " has no bytes (" +
                              std::to_string(parts.size()) +
                              " parts, all empty); a chunk needs at least one byte");
    }
  }
  std::unique_ptr<NvmeChunkStore> store(new NvmeChunkStore(tier, staging, std::move(options)));
  EBB_RETURN_IF_ERROR(store->init(initial));
  return store;
}

Status NvmeChunkStore::init(const Source& initial) {
  const std::string who = "chunk store '" + options_.name + "'";
  std::size_t largest = 0;
  for (const ChunkShape& shape : options_.chunks) {
    Chunk chunk;
    std::size_t offset = 0;
    for (std::size_t bytes : shape.part_bytes) {
      offset = round_up(offset, kChunkPartAlignBytes);
      chunk.part_offsets.push_back(offset);
      offset += bytes;
      stats_.bytes += bytes;
    }
    chunk.extent_bytes = offset;
    stats_.extent_bytes += offset;
    largest = std::max(largest, offset);
    chunks_.push_back(std::move(chunk));
  }
  stats_.chunks = chunks_.size();

  const std::size_t needed = 2 * tier_bytes_per_copy();
  if (needed > tier_.free_bytes()) {
    return out_of_memory(who + ": needs " + std::to_string(needed) +
                         " bytes on the NVMe tier (two copies of " +
                         std::to_string(chunks_.size()) + " chunks, " + std::to_string(needed / 2) +
                         " bytes each in whole blocks: the state "
                         "and the step being written), the tier has " +
                         std::to_string(tier_.free_bytes()) + " free");
  }
  for (std::size_t i = 0; i < kChunkStagingBuffers; ++i) {
    Result<void*> buffer = host_.allocate(options_.name + "/staging" + std::to_string(i), largest);
    if (!buffer.ok()) {
      return Status(buffer.status().code(),
                    who + ": staging needs " + std::to_string(kChunkStagingBuffers) + " x " +
                        std::to_string(largest) +
                        " bytes (the largest chunk): " + buffer.status().message());
    }
    staging_.push_back(static_cast<std::byte*>(*buffer));
    stats_.staging_bytes += largest;
  }
  return write_all(initial != nullptr ? initial
                                      : [](std::size_t, std::size_t, std::span<std::byte> part) {
                                          std::memset(part.data(), 0, part.size());
                                        });
}

NvmeChunkStore::~NvmeChunkStore() {
  for (ExtentId extent : extents_) {
    if (extent != kNoExtent) EBB_CHECK(tier_.free(extent).ok(), "chunk store: extent lost");
  }
  for (std::byte* buffer : staging_) {
    EBB_CHECK(host_.free(buffer).ok(), "chunk store: staging buffer lost");
  }
}

std::size_t NvmeChunkStore::tier_bytes_per_copy() const {
  std::size_t bytes = 0;
  for (const Chunk& chunk : chunks_) bytes += round_up(chunk.extent_bytes, tier_.block_bytes());
  return bytes;
}

std::size_t NvmeChunkStore::extent_bytes_of_first(std::size_t chunks) const {
  std::size_t bytes = 0;
  for (std::size_t c = 0; c < chunks; ++c) bytes += chunks_[c].extent_bytes;
  return bytes;
}

std::span<std::byte> NvmeChunkStore::part(std::size_t chunk, std::size_t part) const {
  return {buffer(chunk) + chunks_[chunk].part_offsets[part],
          options_.chunks[chunk].part_bytes[part]};
}

void NvmeChunkStore::zero_padding(std::size_t chunk) const {
  const Chunk& layout = chunks_[chunk];
  const std::vector<std::size_t>& bytes = options_.chunks[chunk].part_bytes;
  for (std::size_t p = 0; p + 1 < bytes.size(); ++p) {
    const std::size_t end = layout.part_offsets[p] + bytes[p];
    std::memset(buffer(chunk) + end, 0, layout.part_offsets[p + 1] - end);
  }
}

NvmeChunkStore::PassReport NvmeChunkStore::run_pass(const std::vector<Stage>& stages) {
  const std::size_t n = chunks_.size();
  const std::size_t last = stages.size() - 1;
  PassReport report{.done = std::vector<std::size_t>(stages.size(), 0),
                    .busy_s = std::vector<double>(stages.size(), 0.0)};
  std::mutex mu;
  std::condition_variable progress;
  bool failed = false;  // GUARDED_BY(mu)
  std::mutex io_turn;   // the tier serializes calls; taking turns here times them alone
  auto run = [&](std::size_t s) {
    const Stage& stage = stages[s];
    for (std::size_t c = 0; c < n; ++c) {
      {
        std::unique_lock<std::mutex> lock(mu);
        progress.wait(lock, [&] {
          return failed ||
                 (s == 0 ? c < report.done[last] + kChunkStagingBuffers : c < report.done[s - 1]);
        });
        if (failed) return;
      }
      if (options_.observer) options_.observer(stage.kind, c, true);
      Status status;
      {
        std::unique_lock<std::mutex> turn(io_turn, std::defer_lock);
        if (stage.io) turn.lock();
        const Clock::time_point start = Clock::now();
        status = stage.run(c);
        report.busy_s[s] += seconds_since(start);
      }
      if (options_.observer) options_.observer(stage.kind, c, false);
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok()) {
        if (!failed) {
          report.status = Status(status.code(), "chunk store '" + options_.name + "': chunk " +
                                                    std::to_string(c) + " of " + std::to_string(n) +
                                                    ", " + stage.doing + ": " + status.message());
        }
        failed = true;
        progress.notify_all();
        return;
      }
      report.done[s] = c + 1;
      progress.notify_all();
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    if (!stages[s].on_caller) threads.emplace_back(run, s);
  }
  for (std::size_t s = 0; s < stages.size(); ++s) {
    if (stages[s].on_caller) run(s);
  }
  for (std::thread& t : threads) t.join();
  return report;
}

NvmeChunkStore::Stage NvmeChunkStore::read_stage() {
  return Stage{.kind = ChunkStage::kRead,
               .doing = "reading",
               .run =
                   [this](std::size_t c) {
                     return tier_.read(extents_[c], buffer(c), chunks_[c].extent_bytes);
                   },
               .io = true};
}

NvmeChunkStore::Stage NvmeChunkStore::write_stage(std::vector<ExtentId>* written) {
  return Stage{.kind = ChunkStage::kWrite,
               .doing = "writing",
               .run =
                   [this, written](std::size_t c) {
                     Result<ExtentId> extent =
                         tier_.write(options_.name + "/chunk" + std::to_string(c), buffer(c),
                                     chunks_[c].extent_bytes);
                     if (!extent.ok()) return extent.status();
                     (*written)[c] = *extent;
                     return ok_status();
                   },
               .io = true};
}

Status NvmeChunkStore::finish_writes(Status status, std::vector<ExtentId>* written) {
  std::vector<ExtentId>& dropped = status.ok() ? extents_ : *written;
  for (ExtentId extent : dropped) {
    if (extent != kNoExtent) EBB_CHECK(tier_.free(extent).ok(), "chunk store: extent lost");
  }
  if (status.ok()) extents_ = std::move(*written);
  return status;
}

Status NvmeChunkStore::stream(const Update& update) {
  const Clock::time_point start = Clock::now();
  // Checked before the first update: a stream that cannot commit is better not begun.
  if (const std::size_t needed = tier_bytes_per_copy(); needed > tier_.free_bytes()) {
    return out_of_memory("chunk store '" + options_.name + "': a stream needs " +
                         std::to_string(needed) + " bytes free on the NVMe tier for the new " +
                         "copy of its " + std::to_string(chunks_.size()) +
                         " chunks, the tier has " + std::to_string(tier_.free_bytes()));
  }
  std::vector<ExtentId> written(chunks_.size(), kNoExtent);
  const Stage compute{.kind = ChunkStage::kCompute,
                      .doing = "updating",
                      .run =
                          [&](std::size_t c) {
                            std::vector<std::span<std::byte>> parts;
                            for (std::size_t p = 0; p < chunks_[c].part_offsets.size(); ++p) {
                              parts.push_back(part(c, p));
                            }
                            return update(c, parts);
                          },
                      .on_caller = true};
  PassReport report = run_pass({read_stage(), compute, write_stage(&written)});
  stats_.read_bytes += extent_bytes_of_first(report.done[0]);
  stats_.written_bytes += extent_bytes_of_first(report.done[2]);
  stats_.last_read_s = report.busy_s[0];
  stats_.last_compute_s = report.busy_s[1];
  stats_.last_write_s = report.busy_s[2];
  Status status = finish_writes(std::move(report.status), &written);
  if (status.ok()) ++stats_.streams;
  stats_.last_wall_s = seconds_since(start);
  return status;
}

Status NvmeChunkStore::read_all(const Sink& sink) {
  const Stage drain{.kind = ChunkStage::kCompute,
                    .doing = "draining",
                    .run =
                        [&](std::size_t c) {
                          for (std::size_t p = 0; p < chunks_[c].part_offsets.size(); ++p) {
                            sink(c, p, part(c, p));
                          }
                          return ok_status();
                        },
                    .on_caller = true};
  PassReport report = run_pass({read_stage(), drain});
  stats_.read_bytes += extent_bytes_of_first(report.done[0]);
  return std::move(report.status);
}

Status NvmeChunkStore::write_all(const Source& source) {
  std::vector<ExtentId> written(chunks_.size(), kNoExtent);
  const Stage fill{.kind = ChunkStage::kCompute,
                   .doing = "filling",
                   .run =
                       [&](std::size_t c) {
                         zero_padding(c);
                         for (std::size_t p = 0; p < chunks_[c].part_offsets.size(); ++p) {
                           source(c, p, part(c, p));
                         }
                         return ok_status();
                       },
                   .on_caller = true};
  PassReport report = run_pass({fill, write_stage(&written)});
  stats_.written_bytes += extent_bytes_of_first(report.done[1]);
  return finish_writes(std::move(report.status), &written);
}

ChunkStoreStats NvmeChunkStore::stats() const { return stats_; }

}  // namespace ebb
