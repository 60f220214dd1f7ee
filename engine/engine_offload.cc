// The Engine's NVMe tier: where a swap-out goes when the host tier is full, and how a spilled
// tensor comes back. Both moves go through the TransferEngine, between the device and the
// tier's registered staging buffers on the transfer engine's copy streams while the disk works
// on the blocks before and after (offload/transfer_engine.h).
//
// Order and safety. A spill is ordered after the work queued on the compute stream (the
// tensor's writer) by an event; the engine waits for the whole extent to be written and checked
// before it frees the device block, so the tensor always has one complete copy. A swap-in fills
// a block allocated on the compute stream after the work queued there (its previous user), and
// the engine waits for the last block to land before the op that needs it is launched.
#include <string>

#include "engine/engine.h"

namespace ebb {
namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Status Engine::create_nvme_tier() {
  if (options_.nvme_directories.empty()) return ok_status();
  EBB_ASSIGN_OR_RETURN(nvme_, NvmeTier::create({.directories = options_.nvme_directories,
                                                .capacity_bytes = options_.nvme_tier_bytes,
                                                .block_bytes = options_.nvme_block_bytes,
                                                .queue_depth = options_.nvme_queue_depth,
                                                .device = &device_,
                                                .faults = options_.nvme_faults}));
  EBB_ASSIGN_OR_RETURN(transfers_, TransferEngine::create(device_, nvme_.get()));
  return ok_status();
}

std::size_t Engine::offload_free_bytes() const {
  return host_tier_->free_bytes() + (nvme_ != nullptr ? nvme_->free_bytes() : 0);
}

bool Engine::spill_to_nvme(std::uint32_t slot) {
  if (transfers_ == nullptr) return false;
  TensorRecord& r = tensors_.at(slot);
  const TransferDeadline deadline{.op_index = static_cast<std::int64_t>(tick_)};
  Result<std::shared_ptr<Transfer>> spill =
      transfers_->device_to_nvme(r.name, r.device_ptr, r.bytes, &compute_, deadline);
  Status written = spill.ok() ? (*spill)->wait() : spill.status();
  if (!written.ok()) {
    // A full tier is no error: the tensor stays and eviction looks elsewhere. A failed write is
    // one: the tensor stays resident (its only copy), and the next call returns the failure.
    if (written.code() != StatusCode::kOutOfMemory && deferred_error_.ok()) {
      deferred_error_ = Status(
          written.code(), "spilling tensor " + quoted(r.name) + " to NVMe: " + written.message());
    }
    return false;
  }
  r.nvme_extent = (*spill)->extent();
  // The copy out has completed, and it was ordered after the compute stream's queued work.
  Status freed = allocator_->free(r.device_ptr);
  EBB_CHECK(freed.ok(), freed.to_string());
  ++stats_.nvme_spills;
  stats_.nvme_written_bytes += static_cast<std::int64_t>(r.bytes);
  left_device(slot, Residency::kNvme);
  return true;
}

Status Engine::swap_in_from_nvme(std::uint32_t slot, std::string_view op) {
  const std::size_t bytes = tensors_.at(slot).bytes;
  Result<void*> ptr = allocator_->allocate(bytes, compute_, tensors_.at(slot).name);
  if (!ptr.ok()) {
    if (ptr.status().code() != StatusCode::kOutOfMemory) return ptr.status();
    return out_of_memory(out_of_memory_message(
        quoted(op) + " (bringing " + quoted(tensors_.at(slot).name) + " back from NVMe)", bytes,
        ptr.status()));
  }
  TensorRecord& r = tensors_.at(slot);
  const TransferDeadline deadline{.op_index = static_cast<std::int64_t>(tick_), .priority = 1};
  Result<std::shared_ptr<Transfer>> fetch =
      transfers_->nvme_to_device(r.nvme_extent, *ptr, bytes, &compute_, deadline);
  Status read = fetch.ok() ? (*fetch)->wait() : fetch.status();
  if (!read.ok()) {
    // Nothing uses the block: the fetch has ended. The extent stays, still the tensor's copy.
    (void)allocator_->free(*ptr);
    return Status(read.code(), quoted(op) + ": bringing tensor " + quoted(r.name) +
                                   " back from NVMe: " + read.message());
  }
  free_nvme_copy(r);
  r.device_ptr = *ptr;
  r.residency = Residency::kDevice;
  stats_.swapped_in_bytes += static_cast<std::int64_t>(bytes);
  stats_.nvme_read_bytes += static_cast<std::int64_t>(bytes);
  log_residency(slot, Residency::kDevice);
  return ok_status();
}

void Engine::free_nvme_copy(TensorRecord& r) {
  Status freed = nvme_->free(r.nvme_extent);
  EBB_CHECK(freed.ok(), "NVMe copy of " + quoted(r.name) + ": " + freed.to_string());
  r.nvme_extent = kNoExtent;
}

}  // namespace ebb
