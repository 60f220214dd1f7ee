// NvmeTier's set-up, space and extent tables; the I/O loops are in nvme_io.cc.
#include "offload/nvme_tier.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "kernels/arith.h"

namespace ebb {
namespace {

Status uring_failure(const std::string& call, int negative_errno) {
  const int err = -negative_errno;
  if (err == EPERM || err == ENOSYS) {
    return unavailable(call + " failed: " + std::strerror(err) +
                       " (io_uring is disabled here, as some containers and sysctl "
                       "kernel.io_uring_disabled do; the NVMe tier needs it)");
  }
  return internal_error(call + " failed: " + std::strerror(err));
}

}  // namespace

Status probe_io_uring() {
  io_uring ring{};
  const int rc = io_uring_queue_init(1, &ring, 0);
  if (rc < 0) return uring_failure("io_uring_queue_init", rc);
  io_uring_queue_exit(&ring);
  return ok_status();
}

Result<std::unique_ptr<NvmeTier>> NvmeTier::create(NvmeTierOptions options) {
  if (options.directories.empty()) return invalid_argument("NVMe tier: no directory given");
  if (options.block_bytes == 0 || options.block_bytes % kDirectIoAlignBytes != 0) {
    return invalid_argument("NVMe tier: block size " + std::to_string(options.block_bytes) +
                            " bytes is not a positive multiple of 4 KiB");
  }
  if (options.queue_depth == 0 || options.queue_depth > 4096) {
    return invalid_argument("NVMe tier: queue depth " + std::to_string(options.queue_depth) +
                            " is not in 1..4096");
  }
  if (options.capacity_bytes == 0) return invalid_argument("NVMe tier: capacity of 0 bytes");
  std::unique_ptr<NvmeTier> tier(new NvmeTier(std::move(options)));
  EBB_RETURN_IF_ERROR(tier->init());
  return tier;
}

NvmeTier::NvmeTier(NvmeTierOptions options) : options_(std::move(options)) {}

Status NvmeTier::init() {
  const std::size_t files = options_.directories.size();
  total_blocks_ = round_up(
      round_up(options_.capacity_bytes, options_.block_bytes) / options_.block_bytes, files);
  blocks_per_file_ = total_blocks_ / files;
  for (std::size_t i = 0; i < files; ++i) {
    EBB_ASSIGN_OR_RETURN(std::unique_ptr<TierDirectory> dir,
                         TierDirectory::create(options_.directories[i]));
    directories_.push_back(std::move(dir));
    EBB_ASSIGN_OR_RETURN(int fd,
                         directories_.back()->create_file("stripe" + std::to_string(i),
                                                          blocks_per_file_ * options_.block_bytes));
    fds_.push_back(fd);
  }
  const int rc = io_uring_queue_init(options_.queue_depth, &ring_, 0);
  if (rc < 0) return uring_failure("io_uring_queue_init", rc);
  ring_ready_ = true;

  // One buffer more than the queue depth: the one the CPU fills or verifies while queue_depth
  // requests are in flight (nvme_io.cc).
  const unsigned slots = options_.queue_depth + 1;
  buffers_bytes_ = std::size_t{slots} * options_.block_bytes;
  buffers_ = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (buffers_ == MAP_FAILED) {
    buffers_ = nullptr;
    return internal_error("NVMe tier: mmap of " + std::to_string(buffers_bytes_) +
                          " bytes of staging buffers failed: " + std::strerror(errno));
  }
  std::vector<iovec> iovecs(slots);
  slots_.resize(slots);
  for (unsigned i = 0; i < slots; ++i) {
    auto* base = static_cast<std::byte*>(buffers_) + std::size_t{i} * options_.block_bytes;
    iovecs[i] = iovec{base, options_.block_bytes};
    slots_[i].buffer = base;
  }
  int reg = io_uring_register_buffers(&ring_, iovecs.data(), slots);
  if (reg < 0) return uring_failure("io_uring_register_buffers", reg);
  reg = io_uring_register_files(&ring_, fds_.data(), static_cast<unsigned>(fds_.size()));
  if (reg < 0) return uring_failure("io_uring_register_files", reg);
  if (options_.device != nullptr) {
    EBB_RETURN_IF_ERROR(options_.device->register_host_memory(buffers_, buffers_bytes_));
    buffers_registered_with_device_ = true;
  }
  free_runs_.emplace(0, total_blocks_);
  stats_.capacity_bytes = total_blocks_ * options_.block_bytes;
  return ok_status();
}

NvmeTier::~NvmeTier() {
  if (ring_ready_) io_uring_queue_exit(&ring_);  // also unregisters the buffers and files
  if (buffers_registered_with_device_) (void)options_.device->unregister_host_memory(buffers_);
  if (buffers_ != nullptr) munmap(buffers_, buffers_bytes_);
  // directories_ go last (member order), closing and removing the files.
}

NvmeTier::Place NvmeTier::place(std::size_t logical_block) const {
  const std::size_t files = fds_.size();
  return Place{static_cast<unsigned>(logical_block % files),
               logical_block / files * options_.block_bytes};
}

std::string NvmeTier::where(std::size_t logical_block) const {
  const Place p = place(logical_block);
  return directories_[p.file]->file_path("stripe" + std::to_string(p.file)) + " at offset " +
         std::to_string(p.offset);
}

Status NvmeTier::check_directories(std::string_view tensor) const {
  for (const auto& dir : directories_) {
    if (Status s = dir->check_present(); !s.ok()) {
      return Status(s.code(), "NVMe tier, tensor '" + std::string(tensor) + "': " + s.message());
    }
  }
  return ok_status();
}

Result<std::size_t> NvmeTier::reserve_blocks(std::string_view tensor, std::size_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = free_runs_.begin(); it != free_runs_.end(); ++it) {
    if (it->second < blocks) continue;
    const std::size_t first = it->first;
    const std::size_t left = it->second - blocks;
    free_runs_.erase(it);
    if (left > 0) free_runs_.emplace(first + blocks, left);
    stats_.used_bytes += blocks * options_.block_bytes;
    return first;
  }
  return out_of_memory(
      "NVMe tier: no room for tensor '" + std::string(tensor) + "' (" +
      std::to_string(blocks * options_.block_bytes) + " bytes in " + std::to_string(blocks) +
      " blocks): " + std::to_string(stats_.capacity_bytes - stats_.used_bytes) + " of " +
      std::to_string(stats_.capacity_bytes) + " bytes free, in runs too short or not at all");
}

void NvmeTier::release_blocks(std::size_t first, std::size_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = free_runs_.emplace(first, blocks);
  EBB_CHECK(inserted, "NVMe tier: block " + std::to_string(first) + " released twice");
  auto next = std::next(it);
  if (next != free_runs_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_runs_.erase(next);
  }
  if (it != free_runs_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_runs_.erase(it);
    }
  }
  stats_.used_bytes -= blocks * options_.block_bytes;
}

Result<ExtentId> NvmeTier::write(std::string_view tensor, std::size_t bytes, const Fill& fill) {
  if (bytes == 0) {
    return invalid_argument("NVMe tier: write of 0 bytes for tensor '" + std::string(tensor) + "'");
  }
  EBB_RETURN_IF_ERROR(check_directories(tensor));
  Extent extent;
  extent.tensor = std::string(tensor);
  extent.bytes = bytes;
  extent.blocks = round_up(bytes, options_.block_bytes) / options_.block_bytes;
  EBB_ASSIGN_OR_RETURN(extent.first_block, reserve_blocks(tensor, extent.blocks));
  extent.crc32c.assign(extent.blocks, 0);
  Status written;
  {
    std::lock_guard<std::mutex> io(io_mu_);
    written = transfer_blocks(extent, &fill, nullptr);
  }
  if (!written.ok()) {
    release_blocks(extent.first_block, extent.blocks);
    return written;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const ExtentId id = next_extent_++;
  extents_.emplace(id, std::move(extent));
  ++stats_.extents;
  stats_.written_bytes += bytes;
  return id;
}

Result<ExtentId> NvmeTier::write(std::string_view tensor, const void* src, std::size_t bytes) {
  const auto* from = static_cast<const std::byte*>(src);
  return write(tensor, bytes, [from](std::size_t offset, std::span<std::byte> block) {
    std::memcpy(block.data(), from + offset, block.size());
    return ok_status();
  });
}

Status NvmeTier::read(ExtentId id, const Drain& drain) {
  Extent extent;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = extents_.find(id);
    if (it == extents_.end()) {
      return invalid_argument("NVMe tier: read of extent " + std::to_string(id) +
                              ", which is not live");
    }
    extent = it->second;
  }
  EBB_RETURN_IF_ERROR(check_directories(extent.tensor));
  {
    std::lock_guard<std::mutex> io(io_mu_);
    EBB_RETURN_IF_ERROR(transfer_blocks(extent, nullptr, &drain));
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.read_bytes += extent.bytes;
  return ok_status();
}

Status NvmeTier::read(ExtentId id, void* dst, std::size_t bytes) {
  const std::size_t have = extent_bytes(id);
  if (have != bytes) {
    return invalid_argument("NVMe tier: read of " + std::to_string(bytes) + " bytes from extent " +
                            std::to_string(id) + " of " + std::to_string(have) + " bytes");
  }
  auto* to = static_cast<std::byte*>(dst);
  return read(id, [to](std::size_t offset, std::span<const std::byte> block) {
    std::memcpy(to + offset, block.data(), block.size());
    return ok_status();
  });
}

Status NvmeTier::free(ExtentId id) {
  std::size_t first = 0;
  std::size_t blocks = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = extents_.find(id);
    if (it == extents_.end()) {
      return invalid_argument("NVMe tier: free of extent " + std::to_string(id) +
                              ", which is not live");
    }
    first = it->second.first_block;
    blocks = it->second.blocks;
    extents_.erase(it);
    --stats_.extents;
  }
  release_blocks(first, blocks);
  return ok_status();
}

std::size_t NvmeTier::extent_bytes(ExtentId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = extents_.find(id);
  return it == extents_.end() ? 0 : it->second.bytes;
}

NvmeTierStats NvmeTier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::size_t NvmeTier::free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.capacity_bytes - stats_.used_bytes;
}

std::vector<std::string> NvmeTier::directories() const {
  std::vector<std::string> paths;
  for (const auto& dir : directories_) paths.push_back(dir->path());
  return paths;
}

}  // namespace ebb
