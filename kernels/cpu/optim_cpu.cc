// The cpu backend of kernels/optim.h. Each sum is cut into tasks along the tree optim.h fixes
// (one task per chunk, per row, or per block of columns, by shape alone, never by thread count),
// every task adds its terms in index order, and the task results are added in order on the
// calling thread: so the bits are the reference's (kernels/optim_reference.h) for any number of
// TBB threads. No tbb::parallel_reduce, whose tree depends on the schedule.
//
// The task split (for_each_task, for_each_chunk) is the nn backend's (kernels/cpu/nn_cpu_launch.h).
// The loops are compiled per pair of storage types (parameter, gradient), so that a load or a
// store is the conversion itself and not a switch per element. The element loops (AdamW, the
// update of X in Adafactor and SM3) are compiled once more per SimdLevel and picked at each call
// by the level in use (kernels/cpu/optim_cpu_loops.h); the sums stay the scalar loops here.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/nn_cpu_launch.h"
#include "kernels/cpu/optim_cpu_loops.h"
#include "kernels/nn_scalar.h"
#include "kernels/optim.h"
#include "kernels/optim_scalar.h"

namespace ebb::optim::cpu {
namespace {

using nn::cpu::for_each_chunk;
using nn::cpu::for_each_task;
using nn::cpu::kElementwiseChunk;

constexpr Index kColumnBlock = 64;  // columns per task of a sum over rows: 256 B of a row

// parts[0] + parts[stride] + ... (count terms) in order, from +0: the last level of every tree.
float ordered_sum(const float* parts, Index count, Index stride = 1) {
  float sum = 0.0F;
  for (Index i = 0; i < count; i++) sum += parts[i * stride];
  return sum;
}

// fn(Views<P, G>) for the storage types of the parameter and the gradient.
template <typename Fn>
void with_views(FloatType param_t, void* param, float* master, FloatType grad_t, const void* grad,
                float grad_scale, const Fn& fn) {
  nn::with_storage(param_t, [&]<typename P>(P) {
    nn::with_storage(grad_t, [&]<typename G>(G) {
      fn(Views<P, G>{static_cast<P*>(param), master, static_cast<const G*>(grad), grad_scale});
    });
  });
}

// sum of f(i) over [0, n) by the chunked tree, with the chunk sums in `partial`.
template <typename Term>
float chunked_sum(Index n, float* partial, const Term& f) {
  for_each_chunk(n, kChunk, [&](Index i0, Index i1) {
    float sum = 0.0F;
    for (Index i = i0; i < i1; i++) sum += f(i);
    partial[i0 / kChunk] = sum;
  });
  return ordered_sum(partial, chunk_count(n));
}

// sum of f(i, j) over a rows x cols matrix by rows, with the row sums in `partial`.
template <typename Term>
float row_major_sum(Index rows, Index cols, float* partial, const Term& f) {
  for_each_task(rows, [&](Index i) {
    float sum = 0.0F;
    for (Index j = 0; j < cols; j++) sum += f(i, j);
    partial[i] = sum;
  });
  return ordered_sum(partial, rows);
}

// For each column j, folds f(i, j) over i in index order from `init` with fold(acc, term) and
// hands the result to store(j, acc). Tasks own blocks of kColumnBlock columns and walk the rows,
// so that each row is read a block at a time.
template <typename Term, typename Fold, typename Store>
void fold_columns(Index rows, Index cols, float init, const Term& f, const Fold& fold,
                  const Store& store) {
  for_each_chunk(cols, kColumnBlock, [&](Index j0, Index j1) {
    float acc[kColumnBlock];
    std::fill(acc, acc + (j1 - j0), init);
    for (Index i = 0; i < rows; i++) {
      for (Index j = j0; j < j1; j++) acc[j - j0] = fold(acc[j - j0], f(i, j));
    }
    for (Index j = j0; j < j1; j++) store(j, acc[j - j0]);
  });
}

float add(float acc, float term) { return acc + term; }

// --- Adafactor's two shapes ---------------------------------------------------------------------

template <typename P, typename G>
void adafactor_vector(const Views<P, G>& a, float* v, float* m, Index n, const AdafactorStep& s,
                      const AdafactorConstants& k, float* partial) {
  float alpha = s.lr;
  if (s.relative_step) {
    const float sum = chunked_sum(n, partial, [&](Index i) { return a.x(i) * a.x(i); });
    alpha = adafactor_alpha(root_mean(sum, n), s, k);
  }
  const float sum = chunked_sum(n, partial, [&](Index i) {
    v[i] = adafactor_decay(v[i], adafactor_square(a.g(i), s), k);
    const float u = adafactor_vector_u(a.g(i), v[i]);
    return u * u;
  });
  const float clip_divisor = adafactor_clip_divisor(root_mean(sum, n), s);
  const auto update = element_loops<P, G>().adafactor_vector;
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    update(a, m, v + i0, 0.0F, 0.0F, i0, i1, clip_divisor, alpha, s);
  });
}

template <typename P, typename G>
void adafactor_matrix(const Views<P, G>& a, float* row, float* col, float* m, Index rows,
                      Index cols, const AdafactorStep& s, const AdafactorConstants& k,
                      float* partial) {
  const Index n = rows * cols;
  float alpha = s.lr;
  if (s.relative_step) {
    const float sum = row_major_sum(rows, cols, partial, [&](Index i, Index j) {
      return a.x(i * cols + j) * a.x(i * cols + j);
    });
    alpha = adafactor_alpha(root_mean(sum, n), s, k);
  }
  for_each_task(rows, [&](Index i) {
    float sum = 0.0F;
    for (Index j = 0; j < cols; j++) sum += adafactor_square(a.g(i * cols + j), s);
    row[i] = adafactor_decay(row[i], sum, k);
  });
  fold_columns(
      rows, cols, 0.0F, [&](Index i, Index j) { return adafactor_square(a.g(i * cols + j), s); },
      add, [&](Index j, float sum) { col[j] = adafactor_decay(col[j], sum, k); });
  const float row_total = ordered_sum(row, rows);
  auto u_at = [&](Index i, Index j) {
    return adafactor_factored_u(a.g(i * cols + j), row[i], row_total, col[j]);
  };
  const float sum = row_major_sum(rows, cols, partial, [&](Index i, Index j) {
    const float u = u_at(i, j);
    return u * u;
  });
  const float clip_divisor = adafactor_clip_divisor(root_mean(sum, n), s);
  const auto update = element_loops<P, G>().adafactor_row;
  for_each_task(rows, [&](Index i) {
    update(a, m, col, row[i], row_total, i * cols, (i + 1) * cols, clip_divisor, alpha, s);
  });
}

}  // namespace

void grad_stats(FloatType grad_t, const void* grad, std::int64_t n, float inv_scale, float* out,
                float* workspace) {
  nn::with_storage(grad_t, [&]<typename G>(G) {
    const auto* g = static_cast<const G*>(grad);
    for_each_chunk(n, kChunk, [&](Index i0, Index i1) {
      float sum = 0.0F;
      float count = 0.0F;
      for (Index i = i0; i < i1; i++) {
        const float x = nn::to_float(g[i]);
        const float scaled = x * inv_scale;
        sum += scaled * scaled;
        count += std::isfinite(x) ? 0.0F : 1.0F;
      }
      workspace[2 * (i0 / kChunk)] = sum;
      workspace[2 * (i0 / kChunk) + 1] = count;
    });
  });
  out[0] = ordered_sum(workspace, chunk_count(n), 2);
  out[1] = ordered_sum(workspace + 1, chunk_count(n), 2);
}

void combine_stats(const float* parts, int k, float* out) {
  out[0] = ordered_sum(parts, k, 2);
  out[1] = ordered_sum(parts + 1, k, 2);
}

void adamw(FloatType param_t, void* param, float* master, float* m, float* v, FloatType grad_t,
           const void* grad, std::int64_t n, const AdamWStep& s) {
  const AdamWConstants k = adamw_constants(s);
  with_views(param_t, param, master, grad_t, grad, s.grad_scale,
             [&]<typename P, typename G>(const Views<P, G>& a) {
               const auto update = element_loops<P, G>().adamw;
               for_each_chunk(n, kElementwiseChunk,
                              [&](Index i0, Index i1) { update(a, m, v, i0, i1, s, k); });
             });
}

void adafactor(FloatType param_t, void* param, float* master, float* row, float* col, float* v,
               float* m, FloatType grad_t, const void* grad, std::int64_t rows, std::int64_t cols,
               const AdafactorStep& s, float* workspace) {
  const AdafactorConstants k = adafactor_constants(s);
  float* partial = workspace + kAdafactorScalarFloats;
  with_views(param_t, param, master, grad_t, grad, s.grad_scale, [&](const auto& a) {
    if (cols == 1) {
      adafactor_vector(a, v, m, rows, s, k, partial);
    } else {
      adafactor_matrix(a, row, col, m, rows, cols, s, k, partial);
    }
  });
}

void sm3(FloatType param_t, void* param, float* master, float* row, float* col, float* acc,
         float* m, FloatType grad_t, const void* grad, std::int64_t rows, std::int64_t cols,
         const Sm3Step& s, float* workspace) {
  with_views(param_t, param, master, grad_t, grad, s.grad_scale,
             [&]<typename P, typename G>(const Views<P, G>& a) {
               const ElementLoops<P, G>& loops = element_loops<P, G>();
               if (cols == 1) {
                 for_each_chunk(rows, kElementwiseChunk, [&](Index i0, Index i1) {
                   loops.sm3_vector(a, m, acc + i0, 0.0F, i0, i1, s);
                 });
                 return;
               }
               // Rows: the update of every element and the new row maxima, into the workspace while
               // the old ones are still read.
               float* new_row = workspace;
               for_each_task(rows, [&](Index i) {
                 new_row[i] = loops.sm3_row(a, m, col, row[i], i * cols, (i + 1) * cols, s);
               });
               // Columns, from the old row maxima; each task reads only its own columns' old
               // maxima.
               fold_columns(
                   rows, cols, 0.0F,
                   [&](Index i, Index j) { return sm3_nu(row[i], col[j], a.g(i * cols + j)); },
                   sm3_max, [&](Index j, float max) { col[j] = max; });
               std::copy(new_row, new_row + rows, row);
             });
}

}  // namespace ebb::optim::cpu
