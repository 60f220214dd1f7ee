// Helpers the nn kernel tests share (nn_test.cc for the cpu kernels and the references,
// nn_cuda_test.cc for the cuda kernels): seeded random inputs, NaN-filled outputs, 16-bit
// storage vectors (rounded from and widened to float), and the comparisons, normwise-relative
// and bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/nn_scalar.h"

namespace ebb::nn {

// How 16-bit elements print in a failure message: their bits.
inline std::ostream& operator<<(std::ostream& os, Bf16 x) {
  return os << "bf16 0x" << std::hex << std::setw(4) << std::setfill('0') << x.bits << std::dec;
}
inline std::ostream& operator<<(std::ostream& os, F16 x) {
  return os << "f16 0x" << std::hex << std::setw(4) << std::setfill('0') << x.bits << std::dec;
}

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

// v rounded to storage type S (for float, v itself).
template <Storage S>
std::vector<S> rounded(const std::vector<float>& v) {
  std::vector<S> out(v.size());
  for (std::size_t i = 0; i < v.size(); i++) out[i] = from_float<S>(v[i]);
  return out;
}

// v widened exactly to float.
template <Storage S>
std::vector<float> widened(const std::vector<S>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); i++) out[i] = to_float(v[i]);
  return out;
}

// random_vector(n, seed, lo, hi) rounded to S: the same values for S = float.
template <Storage S>
std::vector<S> random_storage(std::size_t n, std::uint32_t seed, float lo = -1, float hi = 1) {
  return rounded<S>(random_vector<float>(n, seed, lo, hi));
}

// An output buffer whose elements a kernel must all write: a NaN left in it fails expect_close.
inline std::vector<float> nan_vector(std::size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// nan_vector in storage type S.
template <Storage S>
std::vector<S> nan_storage(std::size_t n) {
  return rounded<S>(nan_vector(n));
}

// The spacing of S's values between 1 and 2: 2^-7 for bf16's 8 significant bits, 2^-10 for
// fp16's 11; 0 for float, whose outputs get no rounding beyond the kernel's own arithmetic. A
// value rounded to S moves by at most half this, relative to its magnitude.
template <Storage S>
constexpr double storage_ulp() {
  if constexpr (std::same_as<S, Bf16>) {
    return 0x1p-7;
  } else if constexpr (std::same_as<S, F16>) {
    return 0x1p-10;
  } else {
    return 0;
  }
}

// The normwise tolerance of a 16-bit output whose float values before the rounding agree to
// `float_tolerance`: each of the two sides rounds once, by at most half an ulp of the largest
// magnitude, so one ulp more; none when the float values agree exactly (so do their roundings).
template <Storage S>
constexpr double rounded_tolerance(double float_tolerance) {
  return float_tolerance == 0 ? 0 : float_tolerance + storage_ulp<S>();
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

// expect_close on the widened values of 16-bit outputs.
template <Storage16 S>
void expect_close(const std::vector<S>& actual, const std::vector<S>& expected, double tolerance,
                  const std::string& what) {
  expect_close(widened(actual), widened(expected), tolerance, what);
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
