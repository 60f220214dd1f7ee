#include "offload/host_tier.h"

#include <utility>

namespace ebb {

Result<std::unique_ptr<HostTier>> HostTier::create(Device& device, std::size_t capacity_bytes) {
  EBB_ASSIGN_OR_RETURN(std::unique_ptr<PinnedHostPool> pool,
                       PinnedHostPool::create(device, capacity_bytes));
  return std::unique_ptr<HostTier>(new HostTier(std::move(pool)));
}

Result<void*> HostTier::allocate(std::string_view tensor, std::size_t bytes) {
  Result<void*> ptr = pool_->allocate(bytes);
  if (!ptr.ok()) {
    return Status(ptr.status().code(),
                  "host tier: tensor '" + std::string(tensor) + "': " + ptr.status().message());
  }
  std::lock_guard<std::mutex> lock(mu_);
  owners_[*ptr] = HostTierOwner{std::string(tensor), bytes};
  return ptr;
}

Status HostTier::free(void* ptr) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (owners_.erase(ptr) == 0) {
      return invalid_argument("host tier: free of a pointer that is not a live buffer of it");
    }
  }
  return pool_->free(ptr);
}

std::optional<HostTierOwner> HostTier::owner(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = owners_.find(ptr);
  if (it == owners_.end()) return std::nullopt;
  return it->second;
}

std::vector<HostTierOwner> HostTier::owners() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<HostTierOwner> all;
  all.reserve(owners_.size());
  for (const auto& [ptr, owner] : owners_) all.push_back(owner);
  return all;
}

std::size_t HostTier::free_bytes() const {
  const PinnedHostPoolStats s = pool_->stats();
  return s.capacity_bytes - s.allocated_bytes;
}

}  // namespace ebb
