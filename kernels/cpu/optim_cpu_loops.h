// The element loops of the cpu optimizer kernels (kernels/cpu/optim_cpu.cc): AdamW's, the last
// pass of Adafactor (the update of X from U) and SM3's update, compiled once per SimdLevel
// (kernels/optim.h) and picked at run time by element_loops(). Each loop is one always_inline
// body, instantiated inside three wrappers: one with
// __attribute__((target("avx512f,avx512bw,avx512vl"))), one with target("avx2") and one with
// optimize("no-tree-vectorize") (the scalar fallback). GCC vectorizes the first two itself: in a
// Release build `objdump -d` shows the avx512 wrappers in zmm and the avx2 ones in ymm registers,
// and -fopt-info-vec reports the loops vectorized with 64- and 32-byte vectors.
//
// Same bits at every level: a loop only runs independent elements side by side, never reorders
// the terms of a sum, so each element goes through kernels/optim_scalar.h's formulas as the
// reference's does. The targets leave out "fma" and optim_cpu.cc is built with -ffp-contract=off,
// so a*b+c stays two roundings; sqrt and / are IEEE (vsqrtps, vdivps), nothing approximates them.
// optim_cpu.cc is also built with -fno-math-errno and -fno-trapping-math (kernels/CMakeLists.txt
// says why), which change no result.
//
// Storage: float and bf16 convert inside the vectorized loops (nn_scalar.h's conversions, which
// GCC vectorizes). fp16's conversions have branches that GCC does not if-convert inside the long
// loop bodies, so an fp16 gradient is widened into a block of floats first (a short loop, which
// GCC does vectorize), and an fp16 parameter is rounded from its master after the block (scalar);
// both with nn_scalar.h's conversions. F16C's vcvtps2ph is not used.
//
// Internal to kernels/cpu/. Thread safety: stateless; safe from any thread.
#pragma once

#include <algorithm>
#include <concepts>

#include "kernels/cpu/nn_cpu_launch.h"
#include "kernels/nn_scalar.h"
#include "kernels/optim.h"
#include "kernels/optim_scalar.h"

#if defined(__x86_64__) || defined(__i386__)
#define EBB_OPTIM_X86 1
#else
#define EBB_OPTIM_X86 0
#endif

namespace ebb::optim::cpu {

using nn::cpu::Index;

// Typed access to one parameter's X (the master, or the fp32 parameter) and scaled gradient; P and
// G are nn's storage types (float, nn::Bf16, nn::F16).
template <typename P, typename G>
struct Views {
  P* param;
  float* master;
  const G* grad;
  float grad_scale;

  float x(Index i) const { return master != nullptr ? master[i] : nn::to_float(param[i]); }
  float g(Index i) const { return nn::to_float(grad[i]) * grad_scale; }
};

namespace loops {

// Every body below is inlined into each wrapper, so that it is compiled for the wrapper's target.
#define EBB_OPTIM_INLINE [[gnu::always_inline]] inline

// Elements per block of a loop: the staging buffers' size (1 KiB of floats each, in L1).
constexpr Index kBlock = 256;

// Whether S's conversions run inside the vectorized loop (see the file comment).
template <typename S>
constexpr bool kVectorConverts = !std::same_as<S, nn::F16>;

// The gradients of a block as the vectorized loop reads them: the buffer itself, or an fp16
// buffer widened into `staged`.
template <typename G>
EBB_OPTIM_INLINE const G* vector_grad(const G* grad, Index /*count*/, float* /*staged*/) {
  return grad;
}
EBB_OPTIM_INLINE const float* vector_grad(const nn::F16* grad, Index count, float* staged) {
  for (Index j = 0; j < count; j++) staged[j] = nn::to_float(grad[j]);
  return staged;
}

// After a block: an fp16 parameter rounded from its master (other types were stored in the loop).
template <typename P>
EBB_OPTIM_INLINE void store_after_block(P* param, const float* master, Index count) {
  if constexpr (!kVectorConverts<P>) {
    for (Index j = 0; j < count; j++) param[j] = nn::from_float<P>(master[j]);
  }
}

// X of element j of a block, and its store: the master, else the fp32 parameter itself.
template <bool HasMaster, typename P>
EBB_OPTIM_INLINE float load_x(const P* param, const float* master, Index j) {
  if constexpr (HasMaster) {
    return master[j];
  } else {
    return nn::to_float(param[j]);
  }
}
template <bool HasMaster, typename P>
EBB_OPTIM_INLINE void store_x(P* param, float* master, Index j, float x) {
  if constexpr (HasMaster) master[j] = x;
  if constexpr (kVectorConverts<P>) param[j] = nn::from_float<P>(x);
}

// --- AdamW --------------------------------------------------------------------------------------

template <bool HasMaster, typename P, typename G>
EBB_OPTIM_INLINE void adamw_block(P* __restrict param, float* __restrict master,
                                  float* __restrict m, float* __restrict v,
                                  const G* __restrict grad, Index count, float grad_scale,
                                  const AdamWStep& s, const AdamWConstants& k) {
  for (Index j = 0; j < count; j++) {
    const float g = nn::to_float(grad[j]) * grad_scale;
    float x = load_x<HasMaster>(param, master, j);
    adamw_element(g, x, m[j], v[j], s, k);
    store_x<HasMaster>(param, master, j, x);
  }
}

template <bool HasMaster, typename P, typename G>
EBB_OPTIM_INLINE void adamw_range(const Views<P, G>& a, float* m, float* v, Index begin, Index end,
                                  const AdamWStep& step, const AdamWConstants& constants) {
  // Copies: the loop's stores cannot alias them, so they stay in registers.
  const AdamWStep s = step;
  const AdamWConstants k = constants;
  float staged[kBlock];
  for (Index b = begin; b < end; b += kBlock) {
    const Index count = std::min(kBlock, end - b);
    float* master = HasMaster ? a.master + b : nullptr;
    adamw_block<HasMaster>(a.param + b, master, m + b, v + b,
                           vector_grad(a.grad + b, count, staged), count, a.grad_scale, s, k);
    store_after_block(a.param + b, master, count);
  }
}

// --- Adafactor's update of X --------------------------------------------------------------------

// U from g and the second moment: a vector's v[j], or a matrix row's factors (row, row_total and
// the column's col[j]).
template <bool Factored>
EBB_OPTIM_INLINE float adafactor_u(float g, float second, float row, float row_total) {
  if constexpr (Factored) {
    return adafactor_factored_u(g, row, row_total, second);
  } else {
    return adafactor_vector_u(g, second);
  }
}

template <bool HasMaster, bool Factored, bool HasMoment, typename P, typename G>
EBB_OPTIM_INLINE void adafactor_block(P* __restrict param, float* __restrict master,
                                      float* __restrict m, const float* __restrict second,
                                      const G* __restrict grad, Index count, float grad_scale,
                                      float row, float row_total, float clip_divisor, float alpha,
                                      const AdafactorStep& s) {
  for (Index j = 0; j < count; j++) {
    const float g = nn::to_float(grad[j]) * grad_scale;
    float x = load_x<HasMaster>(param, master, j);
    adafactor_element(adafactor_u<Factored>(g, second[j], row, row_total), clip_divisor, alpha, x,
                      HasMoment ? m + j : nullptr, s);
    store_x<HasMaster>(param, master, j, x);
  }
}

// Elements [begin, end) of X; `second` is v (a vector) or col (a matrix, where [begin, end) is
// one row and `row` its statistic), indexed from begin.
template <bool HasMaster, bool Factored, typename P, typename G>
EBB_OPTIM_INLINE void adafactor_range(const Views<P, G>& a, float* m, const float* second,
                                      float row, float row_total, Index begin, Index end,
                                      float clip_divisor, float alpha, const AdafactorStep& step) {
  const AdafactorStep s = step;
  // With no first moment, beta1 <= 0 and m is null. A copy whose beta1 is the constant 0 says so
  // to the compiler, which then drops the branch on it (else a store through the null m that it
  // cannot rule out, and a loop it does not vectorize).
  const bool moment = s.beta1 > 0.0F;
  AdafactorStep plain = step;
  plain.beta1 = 0.0F;
  float staged[kBlock];
  for (Index b = begin; b < end; b += kBlock) {
    const Index count = std::min(kBlock, end - b);
    float* master = HasMaster ? a.master + b : nullptr;
    const auto* grad = vector_grad(a.grad + b, count, staged);
    const float* second_b = second + (b - begin);
    if (moment) {
      adafactor_block<HasMaster, Factored, true>(a.param + b, master, m + b, second_b, grad, count,
                                                 a.grad_scale, row, row_total, clip_divisor, alpha,
                                                 s);
    } else {
      adafactor_block<HasMaster, Factored, false>(a.param + b, master, nullptr, second_b, grad,
                                                  count, a.grad_scale, row, row_total, clip_divisor,
                                                  alpha, plain);
    }
    store_after_block(a.param + b, master, count);
  }
}

// --- SM3's update -------------------------------------------------------------------------------

// nu of every element of a block: a vector's (from acc, which then takes nu) or a matrix row's
// (from the row's and the columns' accumulators, written to nu_out for the row's max).
template <bool HasMaster, bool Factored, bool HasMoment, typename P, typename G>
EBB_OPTIM_INLINE void sm3_block(P* __restrict param, float* __restrict master, float* __restrict m,
                                float* __restrict acc, float* __restrict nu_out,
                                const G* __restrict grad, Index count, float grad_scale, float row,
                                const Sm3Step& s) {
  for (Index j = 0; j < count; j++) {
    const float g = nn::to_float(grad[j]) * grad_scale;
    float nu = 0.0F;
    if constexpr (Factored) {
      nu = sm3_nu(row, acc[j], g);
      nu_out[j] = nu;
    } else {
      nu = sm3_vector_nu(acc[j], g);
      acc[j] = nu;
    }
    float x = load_x<HasMaster>(param, master, j);
    sm3_element(g, nu, x, HasMoment ? m + j : nullptr, s);
    store_x<HasMaster>(param, master, j, x);
  }
}

// The larger of `max` and every nu[0, count), by sm3_max: in kLanes lanes, then the lanes in
// order. max is exact and a NaN nu is never kept, so every order gives the bits of optim.h's fold
// in index order (the fold's value is its largest non-NaN term, or `max`, and only zero has two
// encodings, of which a fold from +0 keeps +0); the lanes are elementwise.
EBB_OPTIM_INLINE float fold_max(float max, const float* nu, Index count) {
  constexpr Index kLanes = 16;
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, max);
  Index j = 0;
  for (; j + kLanes <= count; j += kLanes) {
    for (Index l = 0; l < kLanes; l++) lanes[l] = sm3_max(lanes[l], nu[j + l]);
  }
  for (; j < count; j++) lanes[0] = sm3_max(lanes[0], nu[j]);
  float result = max;
  for (const float lane : lanes) result = sm3_max(result, lane);
  return result;
}

// Elements [begin, end): a vector's (acc indexed from begin; returns 0), or one row's of a matrix
// (acc is col, indexed from begin; returns the row's max nu from +0).
template <bool HasMaster, bool Factored, typename P, typename G>
EBB_OPTIM_INLINE float sm3_range(const Views<P, G>& a, float* m, float* acc, float row, Index begin,
                                 Index end, const Sm3Step& step) {
  const Sm3Step s = step;
  const bool moment = s.momentum > 0.0F;
  Sm3Step plain = step;  // as in adafactor_range
  plain.momentum = 0.0F;
  float staged[kBlock];
  float nu[kBlock];
  float max = 0.0F;
  for (Index b = begin; b < end; b += kBlock) {
    const Index count = std::min(kBlock, end - b);
    float* master = HasMaster ? a.master + b : nullptr;
    const auto* grad = vector_grad(a.grad + b, count, staged);
    if (moment) {
      sm3_block<HasMaster, Factored, true>(a.param + b, master, m + b, acc + (b - begin), nu, grad,
                                           count, a.grad_scale, row, s);
    } else {
      sm3_block<HasMaster, Factored, false>(a.param + b, master, nullptr, acc + (b - begin), nu,
                                            grad, count, a.grad_scale, row, plain);
    }
    store_after_block(a.param + b, master, count);
    if constexpr (Factored) max = fold_max(max, nu, count);
  }
  return max;
}

// The wrappers of one SimdLevel: `attributes` name its target. Each is a plain function (no
// lambda inside, whose body would not take the target), whose arguments are those of the range
// functions above.
#define EBB_OPTIM_ELEMENT_LOOPS(Name, attributes)                                                  \
  struct Name {                                                                                    \
    template <typename P, typename G>                                                              \
    attributes static void adamw(const Views<P, G>& a, float* m, float* v, Index begin, Index end, \
                                 const AdamWStep& s, const AdamWConstants& k) {                    \
      if (!std::same_as<P, float> || a.master != nullptr) {                                        \
        adamw_range<true>(a, m, v, begin, end, s, k);                                              \
      } else {                                                                                     \
        adamw_range<false>(a, m, v, begin, end, s, k);                                             \
      }                                                                                            \
    }                                                                                              \
    template <typename P, typename G, bool Factored>                                               \
    attributes static void adafactor(const Views<P, G>& a, float* m, const float* second,          \
                                     float row, float row_total, Index begin, Index end,           \
                                     float clip_divisor, float alpha, const AdafactorStep& s) {    \
      if (!std::same_as<P, float> || a.master != nullptr) {                                        \
        adafactor_range<true, Factored>(a, m, second, row, row_total, begin, end, clip_divisor,    \
                                        alpha, s);                                                 \
      } else {                                                                                     \
        adafactor_range<false, Factored>(a, m, second, row, row_total, begin, end, clip_divisor,   \
                                         alpha, s);                                                \
      }                                                                                            \
    }                                                                                              \
    template <typename P, typename G, bool Factored>                                               \
    attributes static float sm3(const Views<P, G>& a, float* m, float* acc, float row,             \
                                Index begin, Index end, const Sm3Step& s) {                        \
      if (!std::same_as<P, float> || a.master != nullptr) {                                        \
        return sm3_range<true, Factored>(a, m, acc, row, begin, end, s);                           \
      }                                                                                            \
      return sm3_range<false, Factored>(a, m, acc, row, begin, end, s);                            \
    }                                                                                              \
  }

EBB_OPTIM_ELEMENT_LOOPS(Scalar, __attribute__((optimize("no-tree-vectorize"))));
#if EBB_OPTIM_X86
EBB_OPTIM_ELEMENT_LOOPS(Avx2, __attribute__((target("avx2"))));
EBB_OPTIM_ELEMENT_LOOPS(Avx512, __attribute__((target("avx512f,avx512bw,avx512vl"))));
#else
using Avx2 = Scalar;
using Avx512 = Scalar;
#endif

#undef EBB_OPTIM_ELEMENT_LOOPS
#undef EBB_OPTIM_INLINE

}  // namespace loops

// The element loops of one pair of storage types at one SimdLevel. Each runs over elements
// [begin, end) with the arguments of the matching range function in namespace loops: adamw;
// adafactor_vector and adafactor_row (the update of X from U, of a vector or of one row of a
// matrix); sm3_vector and sm3_row (the whole step of a vector, or of one row, returning the row's
// new accumulator).
template <typename P, typename G>
struct ElementLoops {
  decltype(&loops::Scalar::adamw<P, G>) adamw;
  decltype(&loops::Scalar::adafactor<P, G, false>) adafactor_vector;
  decltype(&loops::Scalar::adafactor<P, G, true>) adafactor_row;
  decltype(&loops::Scalar::sm3<P, G, false>) sm3_vector;
  decltype(&loops::Scalar::sm3<P, G, true>) sm3_row;
};

template <typename Level, typename P, typename G>
constexpr ElementLoops<P, G> kElementLoops{
    &Level::template adamw<P, G>, &Level::template adafactor<P, G, false>,
    &Level::template adafactor<P, G, true>, &Level::template sm3<P, G, false>,
    &Level::template sm3<P, G, true>};

// The loops of the level in use (simd_level()), read once per kernel call.
template <typename P, typename G>
const ElementLoops<P, G>& element_loops() {
  switch (simd_level()) {
    case SimdLevel::kAvx512:
      return kElementLoops<loops::Avx512, P, G>;
    case SimdLevel::kAvx2:
      return kElementLoops<loops::Avx2, P, G>;
    case SimdLevel::kScalar:
      break;
  }
  return kElementLoops<loops::Scalar, P, G>;
}

}  // namespace ebb::optim::cpu
