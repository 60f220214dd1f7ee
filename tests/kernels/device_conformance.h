// DeviceConformance: the behaviour every Device backend must share, as one value-parameterized
// GoogleTest suite over a device factory.
//
// The suite reaches device memory only through the Device interface: it never dereferences a
// device pointer on the host, and it checks contents by copying them back to host memory. So the
// same tests run on every backend. This file does not instantiate the suite; each backend's test
// file does, with a factory of its own:
//
//   INSTANTIATE_TEST_SUITE_P(Cuda, DeviceConformance,
//                            ::testing::Values(DeviceFactory{"cuda", [] {
//                              DeviceOptions options;
//                              options.kind = DeviceKind::kCuda;
//                              options.capacity_bytes = 64 * kMiB;
//                              return create_device(options);
//                            }}),
//                            device_factory_name);
//
// The factory's device: a capacity of 32 MiB to 256 MiB (tests fill it), a whole number of
// pages, at least 8 pages. A factory that returns kUnavailable (no such device on this machine)
// makes every test of its instantiation skip with the factory's message.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/device.h"

// Assertions on Status and Result, for tests of code that returns them.
#ifndef EBB_ASSERT_OK
#define EBB_ASSERT_OK(expr)                                                                  \
  do {                                                                                       \
    const ::ebb::Status ebb_assert_status_ = (expr);                                         \
    ASSERT_TRUE(ebb_assert_status_.ok()) << #expr << ": " << ebb_assert_status_.to_string(); \
  } while (false)
#define EBB_EXPECT_OK(expr)                                                                  \
  do {                                                                                       \
    const ::ebb::Status ebb_expect_status_ = (expr);                                         \
    EXPECT_TRUE(ebb_expect_status_.ok()) << #expr << ": " << ebb_expect_status_.to_string(); \
  } while (false)
// Declares or assigns `lhs` from the value of a Result, failing the test if there is none.
#define EBB_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  EBB_ASSERT_OK_AND_ASSIGN_IMPL(EBB_CONCAT(ebb_assert_result_, __LINE__), lhs, expr)
#define EBB_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                 \
  auto tmp = (expr);                                                  \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().to_string(); \
  lhs = std::move(tmp).value()
#endif

namespace ebb {

// How a backend's test file hands the suite its devices.
struct DeviceFactory {
  // Names the instantiation in test names: letters, digits and underscores only.
  std::string name;
  // A fresh device per call; some tests create two. kUnavailable skips the test.
  std::function<Result<std::unique_ptr<Device>>()> create;
};

// The test-name generator for INSTANTIATE_TEST_SUITE_P: the factory's name.
std::string device_factory_name(const ::testing::TestParamInfo<DeviceFactory>& info);
// So that GoogleTest prints a factory by name rather than as bytes (GoogleTest's name for it).
void PrintTo(  // NOLINT(readability-identifier-naming)
    const DeviceFactory& factory, std::ostream* os);

// Deterministic bytes for `bytes` bytes of test data, different for each seed.
std::vector<std::uint8_t> test_pattern(std::size_t bytes, std::uint32_t seed);

class DeviceConformance : public ::testing::TestWithParam<DeviceFactory> {
 protected:
  // Creates device_, or skips the test when the factory reports kUnavailable.
  void SetUp() override;

  // Copies `bytes` device bytes at `src` to a new host vector through `stream`, synchronizing.
  std::vector<std::uint8_t> read_device(Stream& stream, const void* src, std::size_t bytes);
  // Copies `data` to device memory at `dst` through `stream`, synchronizing.
  void write_device(Stream& stream, void* dst, const std::vector<std::uint8_t>& data);

  std::unique_ptr<Device> device_;
};

}  // namespace ebb
