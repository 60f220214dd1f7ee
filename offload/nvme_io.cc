// NvmeTier's I/O loops: up to queue_depth requests in flight on the ring, each on its own
// registered staging buffer, filled or drained by the caller while the others are in flight.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>

#include "kernels/arith.h"
#include "offload/crc32c.h"
#include "offload/nvme_tier.h"

namespace ebb {
namespace {}  // namespace

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
  const bool writing = fill != nullptr;
  const FaultDirection direction = writing ? FaultDirection::kWrite : FaultDirection::kRead;
  std::vector<unsigned> idle(options_.queue_depth);
  std::iota(idle.rbegin(), idle.rend(), 0U);
  std::size_t next = 0;
  std::size_t in_flight = 0;
  Status first;
  while ((next < extent.blocks && first.ok()) || in_flight > 0) {
    while (next < extent.blocks && first.ok() && !idle.empty()) {
      const unsigned i = idle.back();
      Slot& slot = slots_[i];
      slot.block = next;
      slot.logical_bytes =
          std::min(options_.block_bytes, extent.bytes - next * options_.block_bytes);
      slot.aligned_bytes = round_up(slot.logical_bytes, kDirectIoAlignBytes);
      if (writing) {
        Status filled = (*fill)(next * options_.block_bytes, {slot.buffer, slot.logical_bytes});
        if (!filled.ok()) {
          first = filled;
          break;
        }
        // The unaligned tail goes out zero-padded to its full aligned length, checksummed so.
        std::memset(slot.buffer + slot.logical_bytes, 0, slot.aligned_bytes - slot.logical_bytes);
        if (options_.checksums) extent.crc32c[next] = crc32c(slot.buffer, slot.aligned_bytes);
      }
      slot.injected = -1;
      if (options_.faults != nullptr) {
        if (auto fault = options_.faults->next(direction)) {
          slot.injected = static_cast<int>(*fault);
          // On a write, after the checksum: as if corrupted on the way to the disk.
          if (writing && *fault == FaultKind::kBitFlip) {
            slot.buffer[slot.logical_bytes / 2] ^= std::byte{0x10};
          }
        }
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      EBB_CHECK(sqe != nullptr, "NVMe tier: no free submission entry with a slot idle");
      if (slot.injected == static_cast<int>(FaultKind::kIoError) ||
          slot.injected == static_cast<int>(FaultKind::kNoSpace)) {
        io_uring_prep_nop(sqe);  // fails in complete(), without touching the disk
      } else {
        const Place p = place(extent.first_block + next);
        const auto bytes = static_cast<unsigned>(slot.aligned_bytes);
        if (writing) {
          io_uring_prep_write_fixed(sqe, static_cast<int>(p.file), slot.buffer, bytes, p.offset,
                                    static_cast<int>(i));
        } else {
          io_uring_prep_read_fixed(sqe, static_cast<int>(p.file), slot.buffer, bytes, p.offset,
                                   static_cast<int>(i));
        }
        sqe->flags |= IOSQE_FIXED_FILE;
      }
      io_uring_sqe_set_data64(sqe, i);
      idle.pop_back();
      ++next;
      ++in_flight;
    }
    if (in_flight == 0) break;
    const int rc = io_uring_submit_and_wait(&ring_, 1);
    EBB_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY,
              std::string("NVMe tier: io_uring_submit_and_wait failed: ") + std::strerror(-rc));
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      const auto i = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      Slot& slot = slots_[i];
      Status done = complete(extent, slot, cqe->res, writing);
      if (done.ok() && !writing && first.ok()) {
        done = (*drain)(slot.block * options_.block_bytes, {slot.buffer, slot.logical_bytes});
      }
      if (!done.ok() && first.ok()) first = done;
      idle.push_back(i);
      --in_flight;
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }
  return first;
}

}  // namespace ebb
