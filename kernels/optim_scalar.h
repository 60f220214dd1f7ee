// What the three versions of the kernels of kernels/optim.h share, so that they compute the same
// bits: the per-element formulas, written once as functions that nvcc compiles for the device
// too (kernels/cuda/optim_cuda.cu builds with floating-point contraction off, so a*b+c stays two
// roundings there as on the host); the step constants that need pow, computed on the host, once,
// by these functions, because the host's and the device's pow need not agree to the bit; and the
// host's loads and stores of the storage types, with kernels/nn_scalar.h's conversions (the
// device's, kernels/cuda/nn_cuda_float.h, give the same bits).
//
// The formulas use only +, -, *, / and sqrt, which IEEE rounds correctly on both host and
// device, and comparisons written out (no fmaxf, whose treatment of NaN and of signed zeros is
// the library's choice).
//
// Thread safety: stateless; safe from any thread.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/nn_scalar.h"
#include "kernels/optim.h"

#if defined(__CUDACC__)
#define EBB_OPTIM_HOST_DEVICE __host__ __device__
#else
#define EBB_OPTIM_HOST_DEVICE
#endif

namespace ebb::optim {

// --- workspace layout ---------------------------------------------------------------------------

// Adafactor's workspace: these scalars first, then one partial sum per row (a matrix) or per
// chunk (a vector). The cuda backend keeps its scalars there; the cpu backend uses the partials.
inline constexpr std::int64_t kAdafactorAlpha = 0;         // the step size
inline constexpr std::int64_t kAdafactorRowTotal = 1;      // sum of row[]
inline constexpr std::int64_t kAdafactorClipDivisor = 2;   // max(1, RMS(U) / d)
inline constexpr std::int64_t kAdafactorScalarFloats = 4;  // 3, padded to 16 bytes

inline std::int64_t chunk_count(std::int64_t n) { return (n + kChunk - 1) / kChunk; }

// --- step constants (host) ----------------------------------------------------------------------

// AdamW's bias corrections 1 - beta^step, in float with std::pow as nn::adamw computes them.
struct AdamWConstants {
  float correction1;
  float correction2;
};

inline AdamWConstants adamw_constants(const AdamWStep& s) {
  const auto t = static_cast<float>(s.step);
  return {1.0F - std::pow(s.beta1, t), 1.0F - std::pow(s.beta2, t)};
}

struct AdafactorConstants {
  float beta2hat;            // 1 - t^decay_pow: 0 at t = 1, so the first step keeps no history
  float one_minus_beta2hat;  // 1 - beta2hat
  float relative_factor;     // min(1e-2, 1/sqrt(t)), the paper's rho_t
};

inline AdafactorConstants adafactor_constants(const AdafactorStep& s) {
  const auto t = static_cast<float>(s.step);
  const float beta2hat = 1.0F - std::pow(t, s.decay_pow);
  const float inv_sqrt_t = 1.0F / std::sqrt(t);
  return {beta2hat, 1.0F - beta2hat, inv_sqrt_t < 1e-2F ? inv_sqrt_t : 1e-2F};
}

// --- per-element formulas (host and device) -----------------------------------------------------

// std::max's choice (a unless a < b): a NaN b is never taken.
EBB_OPTIM_HOST_DEVICE inline float larger(float a, float b) { return a < b ? b : a; }

// sqrt(mean of squares) from a sum of n squares.
EBB_OPTIM_HOST_DEVICE inline float root_mean(float sum_of_squares, std::int64_t n) {
  return std::sqrt(sum_of_squares / static_cast<float>(n));
}

// The decoupled step shared by Adafactor and SM3: x - alpha (update + wd x), grouped as
// nn::adamw groups its weight decay; without weight decay the term is left out, not multiplied
// by 0 (which would turn an infinite x into a NaN).
EBB_OPTIM_HOST_DEVICE inline float decoupled_step(float x, float alpha, float update, float wd) {
  return wd > 0.0F ? x - alpha * (update + wd * x) : x - alpha * update;
}

// AdamW on one element (optim.h): updates x, m and v from the scaled gradient g.
EBB_OPTIM_HOST_DEVICE inline void adamw_element(float g, float& x, float& m, float& v,
                                                const AdamWStep& s, const AdamWConstants& k) {
  const float m_new = s.beta1 * m + (1.0F - s.beta1) * g;
  const float v_new = s.beta2 * v + (1.0F - s.beta2) * g * g;
  const float m_hat = m_new / k.correction1;
  const float v_hat = v_new / k.correction2;
  x = x - s.lr * (m_hat / (std::sqrt(v_hat) + s.eps) + s.weight_decay * x);
  m = m_new;
  v = v_new;
}

// Adafactor's term of a row, column or vector second moment: g^2 + eps1.
EBB_OPTIM_HOST_DEVICE inline float adafactor_square(float g, const AdafactorStep& s) {
  return g * g + s.eps1;
}

// A second-moment statistic after the step: beta2hat old + (1 - beta2hat) sum.
EBB_OPTIM_HOST_DEVICE inline float adafactor_decay(float old, float sum,
                                                   const AdafactorConstants& k) {
  return k.beta2hat * old + k.one_minus_beta2hat * sum;
}

// U of a matrix element: g / (sqrt(row / row_total) sqrt(col)).
EBB_OPTIM_HOST_DEVICE inline float adafactor_factored_u(float g, float row, float row_total,
                                                        float col) {
  return g / (std::sqrt(row / row_total) * std::sqrt(col));
}

// U of a vector element: g / sqrt(v).
EBB_OPTIM_HOST_DEVICE inline float adafactor_vector_u(float g, float v) { return g / std::sqrt(v); }

// The step size: lr, or max(eps2, RMS(X_{t-1})) rho_t with relative_step.
EBB_OPTIM_HOST_DEVICE inline float adafactor_alpha(float rms_x, const AdafactorStep& s,
                                                   const AdafactorConstants& k) {
  return s.relative_step ? larger(s.eps2, rms_x) * k.relative_factor : s.lr;
}

// The update clipping divisor max(1, RMS(U) / d).
EBB_OPTIM_HOST_DEVICE inline float adafactor_clip_divisor(float rms_u, const AdafactorStep& s) {
  return larger(1.0F, rms_u / s.clip_d);
}

// Adafactor's update of one element from its U: clipping, the first moment m_i (null when
// beta1 == 0) and the decoupled step of x.
EBB_OPTIM_HOST_DEVICE inline void adafactor_element(float u, float clip_divisor, float alpha,
                                                    float& x, float* m_i, const AdafactorStep& s) {
  float update = u / clip_divisor;
  if (s.beta1 > 0.0F) {
    *m_i = s.beta1 * *m_i + (1.0F - s.beta1) * update;
    update = *m_i;
  }
  x = decoupled_step(x, alpha, update, s.weight_decay);
}

// SM3's nu of a matrix element: min(row, col) + g^2 (std::min's choice of the two).
EBB_OPTIM_HOST_DEVICE inline float sm3_nu(float row, float col, float g) {
  return (col < row ? col : row) + g * g;
}

// SM3's nu of a vector element: acc + g^2.
EBB_OPTIM_HOST_DEVICE inline float sm3_vector_nu(float acc, float g) { return acc + g * g; }

// The running max of an accumulator: a NaN nu is never kept, so the order of a fold cannot
// matter.
EBB_OPTIM_HOST_DEVICE inline float sm3_max(float acc, float nu) { return nu > acc ? nu : acc; }

// SM3's update of one element from its nu: g / sqrt(nu), 0 where nu == 0, then the momentum
// m_i (null when momentum == 0) and the decoupled step of x.
EBB_OPTIM_HOST_DEVICE inline void sm3_element(float g, float nu, float& x, float* m_i,
                                              const Sm3Step& s) {
  float update = nu == 0.0F ? 0.0F : g / std::sqrt(nu);
  if (s.momentum > 0.0F) {
    *m_i = s.momentum * *m_i + (1.0F - s.momentum) * update;
    update = *m_i;
  }
  x = decoupled_step(x, s.lr, update, s.weight_decay);
}

// --- storage (host) -----------------------------------------------------------------------------
// nn's storage types and conversions (kernels/nn_scalar.h): float, nn::Bf16 and nn::F16.

// Element i of a buffer of type t, widened.
inline float load(FloatType t, const void* p, std::int64_t i) {
  return nn::with_storage(t,
                          [&]<typename S>(S) { return nn::to_float(static_cast<const S*>(p)[i]); });
}

// Element i of a buffer of type t set to x, rounded.
inline void store(FloatType t, void* p, std::int64_t i, float x) {
  nn::with_storage(t, [&]<typename S>(S) { static_cast<S*>(p)[i] = nn::from_float<S>(x); });
}

}  // namespace ebb::optim
