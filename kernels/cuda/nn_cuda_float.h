// The storage types of the cuda nn backend (kernels/cuda/nn_cuda*.cu): float, __nv_bfloat16 and
// __half for nn.h's FloatTypes kF32, kBF16 and kF16. Device code loads an element with to_float
// (exact) and stores with from_float<S> (round to nearest even), and host code picks the kernel
// template for a FloatType with with_storage.
//
// The conversions work on the bits with integer operations, as kernels/nn_scalar.h's do on the
// cpu, so that both backends give the same bits for every value, NaNs included: round to nearest
// even with subnormals, fp16 overflow to infinity, a NaN kept a quiet NaN with its sign and the
// top of its payload. (The hardware conversions round the same way but make every NaN the
// canonical one.) nn_cuda_test.cc checks them bit for bit against the cpu's.
//
// Internal to kernels/cuda/. Thread safety: stateless; safe from any thread.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/nn.h"

namespace ebb::nn::cuda {

// Stands for storage type S in a call to with_storage's function.
template <typename S>
struct StorageTag {
  using type = S;
};

// Calls fn(StorageTag<S>{}) with S the device storage type of `t`.
template <typename Fn>
void with_storage(FloatType t, Fn&& fn) {
  switch (t) {
    case FloatType::kF32:
      fn(StorageTag<float>{});
      return;
    case FloatType::kBF16:
      fn(StorageTag<__nv_bfloat16>{});
      return;
    case FloatType::kF16:
      fn(StorageTag<__half>{});
      return;
  }
  throw std::invalid_argument("nn: FloatType " + std::to_string(static_cast<int>(t)) +
                              " is none of f32, bf16, f16");
}

template <typename S>
inline constexpr bool kIsFloat = std::is_same_v<S, float>;

#ifdef __CUDACC__
// A 16-bit element from its bits, and back.
template <typename S>
__device__ __forceinline__ S from_bits(std::uint16_t bits) {
  if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return __ushort_as_bfloat16(bits);
  } else {
    static_assert(std::is_same_v<S, __half>);
    return __ushort_as_half(bits);
  }
}
__device__ __forceinline__ std::uint16_t bits_of(__nv_bfloat16 x) {
  return __bfloat16_as_ushort(x);
}
__device__ __forceinline__ std::uint16_t bits_of(__half x) { return __half_as_ushort(x); }

__device__ __forceinline__ float to_float(float x) { return x; }

// Exact: bf16 is the top half of a float.
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __uint_as_float(std::uint32_t{bits_of(x)} << 16);
}

// Exact, as kernels/nn_scalar.h's f16_to_f32.
__device__ __forceinline__ float to_float(__half x) {
  const std::uint32_t h = bits_of(x);
  const std::uint32_t sign = (h & 0x8000U) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1FU;
  const std::uint32_t fraction = h & 0x03FFU;
  if (exponent == 0x1FU) return __uint_as_float(sign | 0x7F800000U | (fraction << 13));
  if (exponent != 0) return __uint_as_float(sign | ((exponent + 112) << 23) | (fraction << 13));
  return __uint_as_float(sign | __float_as_uint(static_cast<float>(fraction) * 0x1p-24F));
}

// As kernels/nn_scalar.h's f32_to_bf16.
__device__ __forceinline__ std::uint16_t f32_to_bf16_bits(float x) {
  const std::uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7FFFFFFFU) > 0x7F800000U) return static_cast<std::uint16_t>((bits >> 16) | 0x0040U);
  const std::uint32_t lsb = (bits >> 16) & 1U;
  return static_cast<std::uint16_t>((bits + 0x7FFFU + lsb) >> 16);
}

// As kernels/nn_scalar.h's f32_to_f16 (the cases are explained there).
__device__ __forceinline__ std::uint16_t f32_to_f16_bits(float x) {
  const std::uint32_t bits = __float_as_uint(x);
  const std::uint32_t sign = (bits >> 16) & 0x8000U;
  const std::uint32_t abs = bits & 0x7FFFFFFFU;
  if (abs > 0x7F800000U)
    return static_cast<std::uint16_t>(sign | 0x7E00U | ((abs >> 13) & 0x03FFU));
  if (abs >= 0x477FF000U) return static_cast<std::uint16_t>(sign | 0x7C00U);
  if (abs >= 0x38800000U) {
    const std::uint32_t lsb = (abs >> 13) & 1U;
    return static_cast<std::uint16_t>(sign | ((abs - (112U << 23) + 0x0FFFU + lsb) >> 13));
  }
  const std::uint32_t e = abs >> 23;
  if (e < 102) return static_cast<std::uint16_t>(sign);
  const std::uint32_t shift = 126 - e;
  const std::uint32_t mantissa = (abs & 0x007FFFFFU) | 0x00800000U;
  std::uint32_t steps = mantissa >> shift;
  const std::uint32_t rest = mantissa & ((1U << shift) - 1);
  const std::uint32_t half = 1U << (shift - 1);
  if (rest > half || (rest == half && (steps & 1U) != 0)) steps++;
  return static_cast<std::uint16_t>(sign | steps);
}

// x rounded to storage type S; for float, x.
template <typename S>
__device__ __forceinline__ S from_float(float x) {
  if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return from_bits<S>(f32_to_bf16_bits(x));
  } else if constexpr (std::is_same_v<S, __half>) {
    return from_bits<S>(f32_to_f16_bits(x));
  } else {
    return x;
  }
}
#endif  // __CUDACC__

}  // namespace ebb::nn::cuda
