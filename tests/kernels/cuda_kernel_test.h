// The fixture the cuda kernel tests share (nn_cuda_test.cc, optim_cuda_test.cc): a cuda Device,
// device buffers that start as 0xff bytes (a NaN in fp32 and bf16, so an element a kernel does
// not write shows), copies to and from the host on the default stream, and a launch that waits,
// so that a launch error or a fault surfaces in the test that caused it. Every test skips itself
// where no GPU is visible, so the binaries run everywhere.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/device.h"

namespace ebb::test_support {

inline void check(const Status& status) {
  if (!status.ok()) throw std::runtime_error(status.to_string());
}

template <typename T>
T value(Result<T> result) {
  check(result.status());
  return std::move(result).value();
}

class CudaKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA GPU is visible";
    DeviceOptions options;
    options.kind = DeviceKind::kCuda;
    options.capacity_bytes = 512 * kMiB;
    device_ = value(create_device(options));
  }

  void TearDown() override {
    if (device_ == nullptr) return;
    (void)device_->synchronize();
    for (void* p : allocations_) (void)device_->free(p);
  }

  Stream& stream() { return device_->default_stream(); }

  // n elements of device memory, every byte 0xff.
  template <typename T>
  T* allocate(std::size_t n) {
    void* p = value(device_->allocate(n * sizeof(T)));
    allocations_.push_back(p);
    check(stream().memset_async(p, 0xff, n * sizeof(T)));
    return static_cast<T*>(p);
  }

  // A device copy of `host`; null for an empty vector (a buffer the kernel does not use).
  template <typename T>
  T* upload(const std::vector<T>& host) {
    if (host.empty()) return nullptr;
    T* p = allocate<T>(host.size());
    check(stream().copy_async(p, host.data(), host.size() * sizeof(T), CopyKind::kHostToDevice));
    check(stream().synchronize());
    return p;
  }

  // upload() of each vector, in order.
  template <typename... T>
  std::tuple<const T*...> upload_each(const std::vector<T>&... hosts) {
    return {upload(hosts)...};
  }

  // N buffers of allocate<T>(n).
  template <typename T, std::size_t N>
  std::array<T*, N> allocate_each(std::size_t n) {
    std::array<T*, N> buffers;
    for (T*& p : buffers) p = allocate<T>(n);
    return buffers;
  }

  template <typename T>
  std::vector<T> download(const T* p, std::size_t n) {
    std::vector<T> host(n);
    if (n == 0) return host;
    check(stream().copy_async(host.data(), p, n * sizeof(T), CopyKind::kDeviceToHost));
    check(stream().synchronize());
    return host;
  }

  // Runs `kernel` on the stream (the call inside dispatches on the cuda LaunchContext) and waits
  // for it.
  void run(const std::function<void(const LaunchContext&)>& kernel) {
    check(stream().launch(kernel));
    check(stream().synchronize());
  }

  std::unique_ptr<Device> device_;
  std::vector<void*> allocations_;
};

}  // namespace ebb::test_support
