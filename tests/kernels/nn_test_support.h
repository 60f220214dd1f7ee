// Helpers the nn kernel tests share (nn_test.cc for the cpu kernels and the references,
// nn_cuda_test.cc for the cuda kernels): seeded random inputs, NaN-filled outputs, and the
// comparisons, normwise-relative and bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace ebb::nn {

// n values uniform in [lo, hi), from `seed`. Real defaults to float and is never deduced from
// lo and hi, so random_vector(n, seed, -2, 3) is a float vector.
template <typename Real = float>
std::vector<Real> random_vector(std::size_t n, std::uint32_t seed,
                                std::type_identity_t<Real> lo = -1,
                                std::type_identity_t<Real> hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<Real> dist(lo, hi);
  std::vector<Real> v(n);
  for (Real& x : v) x = dist(rng);
  return v;
}

// n token ids uniform in [0, v), from `seed`.
inline std::vector<std::int32_t> random_tokens(std::size_t n, int v, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> dist(0, v - 1);
  std::vector<std::int32_t> tokens(n);
  for (std::int32_t& t : tokens) t = dist(rng);
  return tokens;
}

// An output buffer whose elements a kernel must all write: a NaN left in it fails expect_close.
inline std::vector<float> nan_vector(std::size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// Normwise relative error max|actual - expected| / max|expected| <= tolerance: float rounding
// differences are relative to the tensor's scale, not to each element (an element near zero after
// cancellation has a large elementwise relative error that means nothing). No element of either
// may be NaN: every element must have been written.
inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected,
                         double tolerance, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double max_diff = 0;
  double max_ref = 0;
  for (std::size_t i = 0; i < actual.size(); i++) {
    ASSERT_FALSE(std::isnan(actual[i])) << what << ": element " << i << " not written (or NaN)";
    ASSERT_FALSE(std::isnan(expected[i])) << what << ": expected element " << i << " is NaN";
    max_diff = std::max(max_diff, std::abs(double{actual[i]} - double{expected[i]}));
    max_ref = std::max(max_ref, std::abs(double{expected[i]}));
  }
  EXPECT_LE(max_diff, tolerance * (max_ref + 1e-30))
      << what << ": max |diff| " << max_diff << ", max |expected| " << max_ref;
}

// a and b have the same bits, element for element; reports the first element that differs.
template <typename T>
void expect_same_bits(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t i = 0; i < a.size(); i++) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      ADD_FAILURE() << what << ": element " << i << " differs: " << a[i] << " vs " << b[i];
      return;
    }
  }
}

}  // namespace ebb::nn
