// NvmeTier: tensors' bytes in files on NVMe (or any file system that takes O_DIRECT), written
// and read with io_uring, with a checksum per block verified on every read.
//
// Layout. Each directory the user names gets a private TierDirectory holding one stripe file,
// reserved up front (fallocate) for its share of capacity_bytes. Space is handed out in blocks
// of block_bytes; logical block b lives in stripe file b % directories at offset
// (b / directories) * block_bytes, so an extent of consecutive blocks is striped over the
// directories as ZeRO-Infinity stripes over drives. Every block of an extent is written at its
// full length rounded up to 4 KiB (the tail is zero-padded), and its CRC32C over that length is
// kept in the extent's record in memory, beside the logical size.
//
// I/O. One io_uring of queue_depth entries, with the stripe files registered
// (io_uring_register_files, IOSQE_FIXED_FILE) and queue_depth + 1 staging buffers of block_bytes
// from one anonymous mmap registered once (io_uring_register_buffers; READ_FIXED / WRITE_FIXED),
// and also with the Device as host memory when one is given, so that device copies from and to
// them are DMA. queue_depth requests stay in flight while the CPU works on the one spare buffer:
// a write fills it through the caller's Fill (a memcpy, or a copy from the device) and takes its
// checksum while queue_depth earlier blocks are on the disk, and submits it the moment one of
// them completes; a read submits the next block as soon as one completes, then verifies the
// completed block and hands it to the caller's Drain while the others are read. So the checksum,
// the fill and the drain overlap the I/O instead of taking a request out of the queue.
//
// Errors. Any failure (EIO, ENOSPC, a short or over-long completion, a checksum mismatch, a
// directory removed while in use) is returned, naming the tensor, the file and the offset; a
// failed write commits nothing and releases its blocks, so a caller's previous copy stays the
// valid one, and nothing is retried. A FaultInjector (tests) can fail any request.
//
// Ownership: owns its directories, files, ring and buffers; the destructor removes every file.
// The Device (optional) must outlive the tier.
//
// Thread safety: thread-safe. I/O calls are serialized on one mutex (one ring; each call keeps
// queue_depth requests in flight by itself); the extent table has its own mutex, so free() and
// stats() do not wait for I/O.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kernels/device.h"
#include "kernels/status.h"
#include "offload/fault_injector.h"
#include "offload/tier_directory.h"

namespace ebb {

inline constexpr std::size_t kDirectIoAlignBytes = 4 * kKiB;  // O_DIRECT offset/length unit

struct NvmeTierOptions {
  std::vector<std::string> directories;  // one stripe file in a private directory inside each
  std::size_t capacity_bytes = kGiB;     // reserved up front over all directories
  std::size_t block_bytes = kMiB;        // request size and stripe unit; a multiple of 4 KiB
  unsigned queue_depth = 32;             // requests in flight per call
  bool checksums = true;                 // CRC32C per block, verified on read
  Device* device = nullptr;              // registers the staging buffers as host memory
  FaultInjector* faults = nullptr;       // tests only; nullptr = no fault layer
};

struct NvmeTierStats {
  std::size_t capacity_bytes = 0;  // reserved on disk, over all directories
  std::size_t used_bytes = 0;      // in blocks held by extents
  std::size_t extents = 0;         // live extents
  std::size_t written_bytes = 0;   // logical bytes of the extents written since creation
  std::size_t read_bytes = 0;      // logical bytes read back since creation
};

// Names an extent of a tier; 0 is never an extent.
using ExtentId = std::uint64_t;
inline constexpr ExtentId kNoExtent = 0;

// Whether io_uring can be set up here: kUnavailable naming the errno (EPERM, ENOSYS: io_uring
// disabled, as some containers do) when it cannot.
Status probe_io_uring();

class NvmeTier {
 public:
  // Writes `block.size()` bytes of the tensor, from byte `offset` of it, into `block`.
  using Fill = std::function<Status(std::size_t offset, std::span<std::byte> block)>;
  // Takes `block.size()` verified bytes of the tensor, from byte `offset` of it.
  using Drain = std::function<Status(std::size_t offset, std::span<const std::byte> block)>;

  // kInvalidArgument for no directory, a block size that is not a multiple of 4 KiB or a zero
  // queue depth; kUnavailable when io_uring cannot be set up; kOutOfMemory when the disk cannot
  // hold capacity_bytes; the errors of TierDirectory::create.
  static Result<std::unique_ptr<NvmeTier>> create(NvmeTierOptions options);
  ~NvmeTier();
  NvmeTier(const NvmeTier&) = delete;
  NvmeTier& operator=(const NvmeTier&) = delete;

  // Writes a new extent of `bytes` (> 0) for `tensor`, filled block by block by `fill`, and
  // returns it once every block has been written in full. kOutOfMemory when the tier has no room.
  Result<ExtentId> write(std::string_view tensor, std::size_t bytes, const Fill& fill);
  Result<ExtentId> write(std::string_view tensor, const void* src, std::size_t bytes);
  // Reads the extent back, verifying each block, into `drain` (in completion order).
  Status read(ExtentId extent, const Drain& drain);
  // REQUIRES: bytes == extent_bytes(extent).
  Status read(ExtentId extent, void* dst, std::size_t bytes);
  // Releases the extent's blocks. kInvalidArgument for an unknown extent.
  Status free(ExtentId extent);
  // The logical size of a live extent; 0 for an unknown one.
  std::size_t extent_bytes(ExtentId extent) const;

  NvmeTierStats stats() const;
  std::size_t free_bytes() const;
  std::size_t block_bytes() const { return options_.block_bytes; }
  unsigned queue_depth() const { return options_.queue_depth; }
  // The private directories, one per directory of the options.
  std::vector<std::string> directories() const;

 private:
  struct Extent {
    std::string tensor;
    std::size_t bytes = 0;        // logical size
    std::size_t first_block = 0;  // logical block index
    std::size_t blocks = 0;
    std::vector<std::uint32_t> crc32c;  // per block, over its written (aligned) length
  };
  // A request slot: a staging buffer and the block it carries.
  struct Slot {
    std::byte* buffer = nullptr;
    std::size_t block = 0;          // index within the extent
    std::size_t logical_bytes = 0;  // tensor bytes in the block
    std::size_t aligned_bytes = 0;  // what is written or read
    int injected = -1;              // a FaultKind, or -1
  };
  // Where a logical block lives.
  struct Place {
    unsigned file = 0;
    std::size_t offset = 0;
  };

  explicit NvmeTier(NvmeTierOptions options);
  Status init();
  Place place(std::size_t logical_block) const;
  // Which file and offset, for messages: "/dir/ebb-tier-x/stripe0 at offset 1048576".
  std::string where(std::size_t logical_block) const;
  Status check_directories(std::string_view tensor) const;
  Result<std::size_t> reserve_blocks(std::string_view tensor, std::size_t blocks);
  void release_blocks(std::size_t first, std::size_t blocks);
  // One call's blocks through the ring and the slots (nvme_io.cc).
  class BlockPipeline;
  // The I/O loop (nvme_io.cc): writes the extent's blocks from `fill` (computing their
  // checksums) or, with fill null, reads them into `drain`. REQUIRES: io_mu_ held.
  Status transfer_blocks(Extent& extent, const Fill* fill, const Drain* drain);
  // Completes one request: checks its result, applies an injected fault, verifies a read's
  // checksum. REQUIRES: io_mu_ held.
  Status complete(const Extent& extent, Slot& slot, int result, bool writing);

  const NvmeTierOptions options_;
  std::vector<std::unique_ptr<TierDirectory>> directories_;
  std::vector<int> fds_;  // stripe files, by index; registered with the ring
  std::size_t blocks_per_file_ = 0;
  std::size_t total_blocks_ = 0;

  std::mutex io_mu_;  // serializes the ring and the slots
  io_uring ring_{};   // GUARDED_BY(io_mu_)
  bool ring_ready_ = false;
  void* buffers_ = nullptr;  // (queue_depth + 1) x block_bytes, anonymous mmap
  std::size_t buffers_bytes_ = 0;
  bool buffers_registered_with_device_ = false;
  std::vector<Slot> slots_;  // GUARDED_BY(io_mu_); queue_depth + 1, one per buffer

  mutable std::mutex mu_;                         // the tables below
  std::map<std::size_t, std::size_t> free_runs_;  // GUARDED_BY(mu_); first block -> count
  std::unordered_map<ExtentId, Extent> extents_;  // GUARDED_BY(mu_)
  ExtentId next_extent_ = 1;                      // GUARDED_BY(mu_)
  NvmeTierStats stats_;                           // GUARDED_BY(mu_)
};

}  // namespace ebb
