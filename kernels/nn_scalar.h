// Per-element formulas of kernels/nn.h that the cpu backend (kernels/cpu/nn_cpu.cc) and the
// reference (kernels/nn_reference.h) compute with the same float operations in the same order:
// the AdamW update (in float in both, as nn.h states it), the bf16 and fp16 bit conversions, and
// the storage element types Bf16 and F16 that the two use for nn.h's 16-bit FloatTypes. Kept in
// one place so the two cannot drift apart. The cuda backend has device versions of its own
// (kernels/cuda/nn_cuda_float.h), tested bit for bit against these.
//
// Thread safety: stateless; safe from any thread.
#pragma once

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/nn.h"

namespace ebb::nn {

// AdamW step `step` (nn.h) of elements [begin, end): reads param, grad, m and v at i, then writes
// param_out, m_out and v_out at i.
inline void adamw_range(float* param_out, float* m_out, float* v_out, const float* param,
                        const float* grad, const float* m, const float* v, std::int64_t begin,
                        std::int64_t end, const AdamWConfig& config, int step) {
  const float correction1 = 1.0F - std::pow(config.beta1, static_cast<float>(step));
  const float correction2 = 1.0F - std::pow(config.beta2, static_cast<float>(step));
  for (std::int64_t i = begin; i < end; i++) {
    const float m_new = config.beta1 * m[i] + (1.0F - config.beta1) * grad[i];
    const float v_new = config.beta2 * v[i] + (1.0F - config.beta2) * grad[i] * grad[i];
    const float m_hat = m_new / correction1;
    const float v_hat = v_new / correction2;
    param_out[i] = param[i] - config.learning_rate * (m_hat / (std::sqrt(v_hat) + config.eps) +
                                                      config.weight_decay * param[i]);
    m_out[i] = m_new;
    v_out[i] = v_new;
  }
}

// Round to nearest even on the 16 bits dropped; a NaN keeps its sign and stays a (quiet) NaN
// instead of rounding into infinity (or into a different NaN).
inline std::uint16_t f32_to_bf16(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  if ((bits & 0x7FFFFFFFU) > 0x7F800000U) return static_cast<std::uint16_t>((bits >> 16) | 0x0040U);
  const std::uint32_t lsb = (bits >> 16) & 1U;
  return static_cast<std::uint16_t>((bits + 0x7FFFU + lsb) >> 16);
}

// Exact: bf16 is the top half of a float.
inline float bf16_to_f32(std::uint16_t x) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(x) << 16);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. Round to nearest even, into
// fp16's subnormals (steps of 2^-24) below 2^-14; at or past 65520 (the tie above fp16's max,
// 65504) to infinity; a NaN keeps its sign and the top of its payload and stays a quiet NaN.
inline std::uint16_t f32_to_f16(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000U);
  const std::uint32_t abs = bits & 0x7FFFFFFFU;
  if (abs > 0x7F800000U) {
    return static_cast<std::uint16_t>(sign | 0x7E00U | ((abs >> 13) & 0x03FFU));
  }
  if (abs >= 0x477FF000U) return static_cast<std::uint16_t>(sign | 0x7C00U);  // 65520 and up
  if (abs >= 0x38800000U) {
    // Normal in fp16 (>= 2^-14): rebias the exponent (127 - 15 = 112) and round away the 13
    // low fraction bits; a carry out of the fraction steps the exponent, as it should.
    const std::uint32_t lsb = (abs >> 13) & 1U;
    return static_cast<std::uint16_t>(sign | ((abs - (112U << 23) + 0x0FFFU + lsb) >> 13));
  }
  // Subnormal in fp16: the result is round(|x| * 2^24) steps of 2^-24. |x| = mantissa *
  // 2^(e - 150) with the implicit bit in the mantissa, so |x| * 2^24 = mantissa >> (126 - e).
  const std::uint32_t e = abs >> 23;
  if (e < 102) return sign;  // |x| < 2^-25: below half the smallest subnormal (float's too)
  const std::uint32_t shift = 126 - e;  // 14..24
  const std::uint32_t mantissa = (abs & 0x007FFFFFU) | 0x00800000U;
  std::uint32_t steps = mantissa >> shift;
  const std::uint32_t rest = mantissa & ((1U << shift) - 1);
  const std::uint32_t half = 1U << (shift - 1);
  if (rest > half || (rest == half && (steps & 1U) != 0)) steps++;  // may carry into 2^-14: fine
  return static_cast<std::uint16_t>(sign | steps);
}

// Exact: every fp16 value (subnormals, infinities and NaN payloads included) is a float.
inline float f16_to_f32(std::uint16_t x) {
  const std::uint32_t sign = static_cast<std::uint32_t>(x & 0x8000U) << 16;
  const std::uint32_t exponent = (x >> 10) & 0x1FU;
  const std::uint32_t fraction = x & 0x03FFU;
  if (exponent == 0x1FU) return std::bit_cast<float>(sign | 0x7F800000U | (fraction << 13));
  if (exponent != 0) {
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (fraction << 13));
  }
  // Zero or subnormal: fraction * 2^-24, exact in float (a power-of-two scaling of an integer
  // below 2^10).
  const float magnitude = static_cast<float>(fraction) * 0x1p-24F;
  return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(magnitude));
}

// --- storage element types -----------------------------------------------------------------------

// One bf16 or fp16 element in memory: distinct types, so that a kernel templated on its storage
// type picks the right conversion. float is the fp32 storage type.
struct Bf16 {
  std::uint16_t bits;
};
struct F16 {
  std::uint16_t bits;
};

// Buffers of them are arrays of 16-bit elements, as the engine's bf16 and f16 tensors are.
static_assert(sizeof(Bf16) == 2 && sizeof(F16) == 2);

template <typename S>
concept Storage16 = std::same_as<S, Bf16> || std::same_as<S, F16>;
template <typename S>
concept Storage = std::same_as<S, float> || Storage16<S>;

// A stored element widened exactly to float.
inline float to_float(float x) { return x; }
inline float to_float(Bf16 x) { return bf16_to_f32(x.bits); }
inline float to_float(F16 x) { return f16_to_f32(x.bits); }

// A float rounded (to nearest even) to storage type S; for float, the value itself.
template <Storage S>
S from_float(float x) {
  if constexpr (std::same_as<S, Bf16>) {
    return Bf16{f32_to_bf16(x)};
  } else if constexpr (std::same_as<S, F16>) {
    return F16{f32_to_f16(x)};
  } else {
    return x;
  }
}

// The FloatType whose elements S holds.
template <Storage S>
constexpr FloatType float_type_of() {
  if constexpr (std::same_as<S, Bf16>) {
    return FloatType::kBF16;
  } else if constexpr (std::same_as<S, F16>) {
    return FloatType::kF16;
  } else {
    return FloatType::kF32;
  }
}

// Calls fn(S{}) with S the storage type of `t`, and returns what it returns: the one switch from
// a FloatType to the templated kernels.
template <typename Fn>
decltype(auto) with_storage(FloatType t, Fn&& fn) {
  switch (t) {
    case FloatType::kF32:
      return fn(float{});
    case FloatType::kBF16:
      return fn(Bf16{});
    case FloatType::kF16:
      return fn(F16{});
  }
  throw std::invalid_argument("nn: FloatType " + std::to_string(static_cast<int>(t)) +
                              " is none of f32, bf16, f16");
}

}  // namespace ebb::nn
