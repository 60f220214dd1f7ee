// ForwardingDevice: a Device that passes every call to another one, for tests that inject a
// failure or count calls by overriding one or two methods.
//
// Ownership: owns the inner device. Thread safety: as the inner device's.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "kernels/device.h"

namespace ebb::test_support {

class ForwardingDevice : public Device {
 public:
  explicit ForwardingDevice(std::unique_ptr<Device> inner) : inner_(std::move(inner)) {}

  DeviceKind kind() const override { return inner_->kind(); }
  std::string name() const override { return inner_->name(); }
  std::size_t capacity_bytes() const override { return inner_->capacity_bytes(); }
  std::size_t committed_bytes() const override { return inner_->committed_bytes(); }
  Result<void*> allocate(std::size_t bytes) override { return inner_->allocate(bytes); }
  Status free(void* ptr) override { return inner_->free(ptr); }
  std::size_t page_bytes() const override { return inner_->page_bytes(); }
  Result<void*> reserve_range(std::size_t bytes) override { return inner_->reserve_range(bytes); }
  Status release_range(void* base, std::size_t bytes) override {
    return inner_->release_range(base, bytes);
  }
  Status map_pages(void* addr, std::size_t bytes) override {
    return inner_->map_pages(addr, bytes);
  }
  Status unmap_pages(void* addr, std::size_t bytes) override {
    return inner_->unmap_pages(addr, bytes);
  }
  Result<void*> allocate_pinned_host(std::size_t bytes) override {
    return inner_->allocate_pinned_host(bytes);
  }
  Status free_pinned_host(void* ptr) override { return inner_->free_pinned_host(ptr); }
  Status register_host_memory(void* ptr, std::size_t bytes) override {
    return inner_->register_host_memory(ptr, bytes);
  }
  Status unregister_host_memory(void* ptr) override { return inner_->unregister_host_memory(ptr); }
  Stream& default_stream() override { return inner_->default_stream(); }
  Result<std::unique_ptr<Stream>> create_stream() override { return inner_->create_stream(); }
  Result<std::unique_ptr<Event>> create_event() override { return inner_->create_event(); }
  Status synchronize() override { return inner_->synchronize(); }

 protected:
  Device& inner() { return *inner_; }

 private:
  std::unique_ptr<Device> inner_;
};

}  // namespace ebb::test_support
