// NvmeTier's I/O loop: queue_depth requests in flight on the ring, each on its own registered
// staging buffer, and one spare buffer that the CPU fills and checksums (a write) or verifies and
// drains (a read) meanwhile.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/arith.h"
#include "offload/crc32c.h"
#include "offload/nvme_tier.h"

namespace ebb {

// One call's blocks, in order, through the slots. A request is submitted as soon as its slot is
// ready, one at a time, so that the disk has it while the CPU works on the next one; the CPU's
// work (fill and checksum of a write, verification and drain of a read) is done on the slot
// that is not in flight while queue_depth others are:
//   write: with queue_depth blocks on the disk, fill and checksum the next one in the spare;
//          when a request completes, submit the ready block at once, then check the completion.
//   read:  when a request completes, submit the next block into the spare at once, then verify
//          the completed block and drain it.
// The first error stops new blocks; those in flight are still reaped (their buffers are the
// ring's until then), and the error is returned.
// Not thread-safe: lives inside transfer_blocks, under io_mu_.
class NvmeTier::BlockPipeline {
 public:
  BlockPipeline(NvmeTier& tier, Extent& extent, const Fill* fill, const Drain* drain)
      : tier_(tier), extent_(extent), fill_(fill), drain_(drain), writing_(fill != nullptr) {
    idle_.resize(tier.slots_.size());
    std::iota(idle_.rbegin(), idle_.rend(), 0U);
  }

  Status run() {
    for (;;) {
      fill_queue();
      // The queue is full (or the blocks are all started): a write readies its next block now,
      // while the disk works, so that it can go out the moment a request completes.
      if (writing_ && !ready_ && can_start()) prepare();
      if (in_flight_ == 0) return first_;
      const auto [slot, result] = reap();
      fill_queue();  // before the completed block's CPU work, so that the queue stays full
      finish(slot, result);
    }
  }

 private:
  bool can_start() const { return next_ < extent_.blocks && first_.ok() && !idle_.empty(); }

  // Submits ready or newly prepared blocks until queue_depth are in flight.
  void fill_queue() {
    while (in_flight_ < tier_.options_.queue_depth && first_.ok() && (ready_ || can_start())) {
      if (!ready_) prepare();
      if (ready_) submit();
    }
  }

  // Takes an idle slot for block next_; on a write fills it and takes its checksum. Leaves it in
  // ready_, or sets first_ when the fill fails.
  void prepare() {
    const NvmeTierOptions& options = tier_.options_;
    const unsigned i = idle_.back();
    Slot& slot = tier_.slots_[i];
    slot.block = next_;
    slot.logical_bytes = std::min(options.block_bytes, extent_.bytes - next_ * options.block_bytes);
    slot.aligned_bytes = round_up(slot.logical_bytes, kDirectIoAlignBytes);
    if (writing_) {
      Status filled = (*fill_)(next_ * options.block_bytes, {slot.buffer, slot.logical_bytes});
      if (!filled.ok()) {
        first_ = filled;
        return;
      }
      // The unaligned tail goes out zero-padded to its full aligned length, checksummed so.
      std::memset(slot.buffer + slot.logical_bytes, 0, slot.aligned_bytes - slot.logical_bytes);
      if (options.checksums) extent_.crc32c[next_] = crc32c(slot.buffer, slot.aligned_bytes);
    }
    slot.injected = -1;
    if (options.faults != nullptr) {
      const FaultDirection direction = writing_ ? FaultDirection::kWrite : FaultDirection::kRead;
      if (auto fault = options.faults->next(direction)) {
        slot.injected = static_cast<int>(*fault);
        // On a write, after the checksum: as if corrupted on the way to the disk.
        if (writing_ && *fault == FaultKind::kBitFlip) {
          slot.buffer[slot.logical_bytes / 2] ^= std::byte{0x10};
        }
      }
    }
    idle_.pop_back();
    ready_ = i;
    ++next_;
  }

  // Puts the ready slot's request on the ring and submits it now.
  void submit() {
    const unsigned i = *ready_;
    const Slot& slot = tier_.slots_[i];
    io_uring_sqe* sqe = io_uring_get_sqe(&tier_.ring_);
    EBB_CHECK(sqe != nullptr, "NVMe tier: no free submission entry under the queue depth");
    if (slot.injected == static_cast<int>(FaultKind::kIoError) ||
        slot.injected == static_cast<int>(FaultKind::kNoSpace)) {
      io_uring_prep_nop(sqe);  // fails in complete(), without touching the disk
    } else {
      const Place p = tier_.place(extent_.first_block + slot.block);
      const auto bytes = static_cast<unsigned>(slot.aligned_bytes);
      if (writing_) {
        io_uring_prep_write_fixed(sqe, static_cast<int>(p.file), slot.buffer, bytes, p.offset,
                                  static_cast<int>(i));
      } else {
        io_uring_prep_read_fixed(sqe, static_cast<int>(p.file), slot.buffer, bytes, p.offset,
                                 static_cast<int>(i));
      }
      sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, i);
    // EAGAIN or EBUSY leave the entry queued; the next submit or reap() sends it.
    const int rc = io_uring_submit(&tier_.ring_);
    EBB_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY,
              std::string("NVMe tier: io_uring_submit failed: ") + std::strerror(-rc));
    ready_.reset();
    ++in_flight_;
  }

  // Waits for one completion and takes it off the ring: its slot and result.
  // REQUIRES: in_flight_ > 0.
  std::pair<unsigned, int> reap() {
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&tier_.ring_, &cqe) != 0 || cqe == nullptr) {
      const int rc = io_uring_submit_and_wait(&tier_.ring_, 1);
      EBB_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY,
                std::string("NVMe tier: io_uring_submit_and_wait failed: ") + std::strerror(-rc));
    }
    const auto slot = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
    const int result = cqe->res;
    io_uring_cqe_seen(&tier_.ring_, cqe);
    --in_flight_;
    return {slot, result};
  }

  // Checks a completed request (and verifies a read), hands a read's block to the drain, and
  // returns the slot to the idle ones.
  void finish(unsigned i, int result) {
    Slot& slot = tier_.slots_[i];
    Status done = tier_.complete(extent_, slot, result, writing_);
    if (done.ok() && !writing_ && first_.ok()) {
      done = (*drain_)(slot.block * tier_.options_.block_bytes, {slot.buffer, slot.logical_bytes});
    }
    if (!done.ok() && first_.ok()) first_ = done;
    idle_.push_back(i);
  }

  NvmeTier& tier_;
  Extent& extent_;
  const Fill* fill_;    // null on a read
  const Drain* drain_;  // null on a write
  const bool writing_;
  std::vector<unsigned> idle_;     // slots neither in flight nor ready
  std::optional<unsigned> ready_;  // a prepared slot not yet submitted
  std::size_t next_ = 0;           // the next block to prepare
  unsigned in_flight_ = 0;
  Status first_;  // the first error
};

Status NvmeTier::complete(const Extent& extent, Slot& slot, int result, bool writing) {
  int res = result;
  if (slot.injected >= 0) {
    switch (static_cast<FaultKind>(slot.injected)) {
      case FaultKind::kIoError:
        res = -EIO;
        break;
      case FaultKind::kNoSpace:
        res = -ENOSPC;
        break;
      case FaultKind::kShort:
        if (res > 0) res /= 2;
        break;
      case FaultKind::kBitFlip:
        if (!writing) slot.buffer[slot.logical_bytes / 2] ^= std::byte{0x10};
        break;
    }
  }
  const std::size_t logical_block = extent.first_block + slot.block;
  auto context = [&] {
    return std::string(writing ? "writing" : "reading") + " tensor '" + extent.tensor +
           "' (block " + std::to_string(slot.block) + " of " + std::to_string(extent.blocks) +
           ", " + std::to_string(slot.aligned_bytes) + " bytes) " + (writing ? "to " : "from ") +
           where(logical_block);
  };
  if (res < 0) return io_error("NVMe tier: " + context() + ": " + std::strerror(-res));
  if (static_cast<std::size_t>(res) != slot.aligned_bytes) {
    return data_loss("NVMe tier: " + context() + ": short " + (writing ? "write" : "read") +
                     " of " + std::to_string(res) + " bytes");
  }
  if (!writing && options_.checksums) {
    const std::uint32_t crc = crc32c(slot.buffer, slot.aligned_bytes);
    if (crc != extent.crc32c[slot.block]) {
      char text[64];
      std::snprintf(text, sizeof text, "stored %08x, read %08x", extent.crc32c[slot.block], crc);
      return data_loss("NVMe tier: " + context() + ": checksum mismatch (CRC32C " + text + ")");
    }
  }
  return ok_status();
}

Status NvmeTier::transfer_blocks(Extent& extent, const Fill* fill, const Drain* drain) {
  return BlockPipeline(*this, extent, fill, drain).run();
}

}  // namespace ebb
