// Plain reference versions of the kernels of kernels/optim.h, for tests to compare the cpu and
// cuda backends with bit for bit. Each is one straight run of loops on host memory, with no
// parallelism and no workspace (partial sums live in local vectors), written so that the fixed
// reduction trees optim.h states can be checked by reading: every sum starts at +0 and adds its
// terms one at a time in the order written. The per-element formulas and step constants are
// those of kernels/optim_scalar.h, which the backends call too.
//
// Thread safety: reentrant (no shared state).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/optim.h"
#include "kernels/optim_scalar.h"

namespace ebb::optim::reference {

// The fp32 value of X_{t-1} at i: the master's, or the fp32 parameter's when there is none.
inline float master_value(FloatType param_t, const void* param, const float* master,
                          std::int64_t i) {
  return master != nullptr ? master[i] : load(param_t, param, i);
}

// Writes X_t at i: into the master (when there is one) and, rounded, into the parameter.
inline void write_master(FloatType param_t, void* param, float* master, std::int64_t i, float x) {
  if (master != nullptr) master[i] = x;
  store(param_t, param, i, x);
}

// Sum of f(i) over [0, n) by optim.h's chunked tree: each chunk of kChunk in index order, then the
// chunk sums in chunk order.
template <typename Term>
float chunked_sum(std::int64_t n, const Term& f) {
  std::vector<float> chunk_sums;
  for (std::int64_t begin = 0; begin < n; begin += kChunk) {
    float sum = 0.0F;
    for (std::int64_t i = begin; i < std::min(n, begin + kChunk); i++) sum += f(i);
    chunk_sums.push_back(sum);
  }
  float total = 0.0F;
  for (const float s : chunk_sums) total += s;
  return total;
}

// Sum of f(i, j) over a rows x cols matrix: each row over j in order, then the rows in order.
template <typename Term>
float row_major_sum(std::int64_t rows, std::int64_t cols, const Term& f) {
  std::vector<float> row_sums(rows);
  for (std::int64_t i = 0; i < rows; i++) {
    float sum = 0.0F;
    for (std::int64_t j = 0; j < cols; j++) sum += f(i, j);
    row_sums[i] = sum;
  }
  float total = 0.0F;
  for (const float s : row_sums) total += s;
  return total;
}

inline void grad_stats(FloatType grad_t, const void* grad, std::int64_t n, float inv_scale,
                       float* out) {
  out[0] = chunked_sum(n, [&](std::int64_t i) {
    const float g = load(grad_t, grad, i) * inv_scale;
    return g * g;
  });
  out[1] = chunked_sum(
      n, [&](std::int64_t i) { return std::isfinite(load(grad_t, grad, i)) ? 0.0F : 1.0F; });
}

inline void combine_stats(const float* parts, int k, float* out) {
  float sum = 0.0F;
  float count = 0.0F;
  for (int i = 0; i < k; i++) {
    sum += parts[2 * i];
    count += parts[2 * i + 1];
  }
  out[0] = sum;
  out[1] = count;
}

inline void adamw(FloatType param_t, void* param, float* master, float* m, float* v,
                  FloatType grad_t, const void* grad, std::int64_t n, const AdamWStep& s) {
  const AdamWConstants k = adamw_constants(s);
  for (std::int64_t i = 0; i < n; i++) {
    const float g = load(grad_t, grad, i) * s.grad_scale;
    float x = master_value(param_t, param, master, i);
    adamw_element(g, x, m[i], v[i], s, k);
    write_master(param_t, param, master, i, x);
  }
}

inline void adafactor(FloatType param_t, void* param, float* master, float* row, float* col,
                      float* v, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
                      std::int64_t cols, const AdafactorStep& s) {
  const AdafactorConstants k = adafactor_constants(s);
  const std::int64_t n = rows * cols;
  const bool vector = cols == 1;
  auto g_at = [&](std::int64_t i) { return load(grad_t, grad, i) * s.grad_scale; };
  auto x_at = [&](std::int64_t i) { return master_value(param_t, param, master, i); };

  // alpha, from X_{t-1}.
  float alpha = s.lr;
  if (s.relative_step) {
    auto x_squared = [&](std::int64_t i) { return x_at(i) * x_at(i); };
    const float sum = vector ? chunked_sum(n, x_squared)
                             : row_major_sum(rows, cols, [&](std::int64_t i, std::int64_t j) {
                                 return x_squared(i * cols + j);
                               });
    alpha = adafactor_alpha(root_mean(sum, n), s, k);
  }

  // The second-moment statistics, then U of every element.
  std::vector<float> u(n);
  if (vector) {
    for (std::int64_t i = 0; i < n; i++) {
      v[i] = adafactor_decay(v[i], adafactor_square(g_at(i), s), k);
      u[i] = adafactor_vector_u(g_at(i), v[i]);
    }
  } else {
    for (std::int64_t i = 0; i < rows; i++) {
      float sum = 0.0F;
      for (std::int64_t j = 0; j < cols; j++) sum += adafactor_square(g_at(i * cols + j), s);
      row[i] = adafactor_decay(row[i], sum, k);
    }
    for (std::int64_t j = 0; j < cols; j++) {
      float sum = 0.0F;
      for (std::int64_t i = 0; i < rows; i++) sum += adafactor_square(g_at(i * cols + j), s);
      col[j] = adafactor_decay(col[j], sum, k);
    }
    float row_total = 0.0F;
    for (std::int64_t i = 0; i < rows; i++) row_total += row[i];
    for (std::int64_t i = 0; i < rows; i++) {
      for (std::int64_t j = 0; j < cols; j++) {
        u[i * cols + j] = adafactor_factored_u(g_at(i * cols + j), row[i], row_total, col[j]);
      }
    }
  }

  // Clipping by RMS(U), then the update.
  auto u_squared = [&](std::int64_t i) { return u[i] * u[i]; };
  const float sum = vector ? chunked_sum(n, u_squared)
                           : row_major_sum(rows, cols, [&](std::int64_t i, std::int64_t j) {
                               return u_squared(i * cols + j);
                             });
  const float clip_divisor = adafactor_clip_divisor(root_mean(sum, n), s);
  for (std::int64_t i = 0; i < n; i++) {
    float x = x_at(i);
    adafactor_element(u[i], clip_divisor, alpha, x, m != nullptr ? &m[i] : nullptr, s);
    write_master(param_t, param, master, i, x);
  }
}

inline void sm3(FloatType param_t, void* param, float* master, float* row, float* col, float* acc,
                float* m, FloatType grad_t, const void* grad, std::int64_t rows, std::int64_t cols,
                const Sm3Step& s) {
  const std::int64_t n = rows * cols;
  auto g_at = [&](std::int64_t i) { return load(grad_t, grad, i) * s.grad_scale; };
  // nu of every element, from the accumulators before the step.
  std::vector<float> nu(n);
  if (cols == 1) {
    for (std::int64_t i = 0; i < n; i++) nu[i] = sm3_vector_nu(acc[i], g_at(i));
    for (std::int64_t i = 0; i < n; i++) acc[i] = nu[i];
  } else {
    for (std::int64_t i = 0; i < rows; i++) {
      for (std::int64_t j = 0; j < cols; j++) {
        nu[i * cols + j] = sm3_nu(row[i], col[j], g_at(i * cols + j));
      }
    }
    for (std::int64_t i = 0; i < rows; i++) {
      float max = 0.0F;
      for (std::int64_t j = 0; j < cols; j++) max = sm3_max(max, nu[i * cols + j]);
      row[i] = max;
    }
    for (std::int64_t j = 0; j < cols; j++) {
      float max = 0.0F;
      for (std::int64_t i = 0; i < rows; i++) max = sm3_max(max, nu[i * cols + j]);
      col[j] = max;
    }
  }
  for (std::int64_t i = 0; i < n; i++) {
    float x = master_value(param_t, param, master, i);
    sm3_element(g_at(i), nu[i], x, m != nullptr ? &m[i] : nullptr, s);
    write_master(param_t, param, master, i, x);
  }
}

}  // namespace ebb::optim::reference
