// Per-element formulas of kernels/nn.h that the cpu backend (kernels/cpu/nn_cpu.cc) and the
// reference (kernels/nn_reference.h) compute with the same float operations in the same order:
// the AdamW update (in float in both, as nn.h states it) and the bf16 bit conversions. Kept in one
// place so the two cannot drift apart. The cuda backend has device versions of its own
// (kernels/cuda/nn_cuda_elementwise.cu), tested bit for bit against the cpu casts.
//
// Thread safety: stateless; safe from any thread.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

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

}  // namespace ebb::nn
