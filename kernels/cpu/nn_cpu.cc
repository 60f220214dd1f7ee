// The cpu backend of kernels/nn.h, all but the matmuls (nn_cpu_matmul.cc). Work is cut into
// tasks by shape alone (fixed row, tile or channel blocks, never by thread count), each output
// element is written by exactly one task, and every sum inside a task runs in index order: so the
// bits do not depend on how TBB schedules the tasks or on how many threads it has. No
// tbb::parallel_reduce anywhere for that reason.
//
// 16-bit storage (nn.h): every GPT kernel is a template on the storage type S, loading with
// to_float and storing with from_float<S> (kernels/nn_scalar.h), which for S = float are the
// value itself, so the fp32 instantiation is the fp32 kernel. Where a kernel reads back an output
// before it is final (the attention and softmax rows, attention's gradient sums) the fp32 kernel
// uses the output itself and a 16-bit one a float scratch row, rounded into the output once.
//
// Thread safety: reentrant (the only state is per-thread scratch).
#include "kernels/cpu/nn_cpu.h"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "kernels/cpu/nn_cpu_launch.h"
#include "kernels/nn_scalar.h"

namespace ebb::nn::cpu {
namespace {

// --- float rows of 16-bit outputs ----------------------------------------------------------------

// At least n floats of the calling thread's scratch, kept between calls: allocating per task cost
// more than the work of a small kernel. One call per task body (a second would reuse the first's
// floats); task bodies never nest on one thread, so a pointer stays the task's own.
float* thread_scratch(std::size_t n) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// Where a kernel keeps an output row that it reads back before the row is final: the output
// itself when S is float (as the fp32 kernels always have), else `scratch`, which store_row then
// rounds into the output once.
template <Storage S>
float* float_row(S* out, float* scratch) {
  if constexpr (std::same_as<S, float>) {
    return out;
  } else {
    return scratch;
  }
}

// out[0, n) = row rounded to S; nothing for float, whose row is the output.
template <Storage S>
void store_row(S* out, const float* row, Index n) {
  if constexpr (!std::same_as<S, float>) {
    for (Index i = 0; i < n; i++) out[i] = from_float<S>(row[i]);
  }
}

}  // namespace

// --- embedding, layernorm ----------------------------------------------------------------------

template <Storage S>
void embedding_forward(S* out, const std::int32_t* tokens, const S* wte, const S* wpe, int B, int T,
                       int C, int /*V*/) {
  for_each_task(Index{B} * T, [&](Index bt) {
    const S* wte_ix = wte + Index{tokens[bt]} * C;
    const S* wpe_t = wpe + (bt % T) * C;
    S* out_bt = out + bt * C;
    for (int i = 0; i < C; i++) out_bt[i] = from_float<S>(to_float(wte_ix[i]) + to_float(wpe_t[i]));
  });
}

template <Storage S>
void embedding_backward(float* dwte, float* dwpe, const S* dout, const std::int32_t* tokens, int B,
                        int T, int C, int V) {
  // Parallel over channel blocks, sequential over (b,t) inside: two tokens equal to each other
  // add into the same dwte row, so splitting over (b,t) would need atomics or an order.
  for_each_chunk(C, kChannelBlock, [&](Index c0, Index c1) {
    for (Index v = 0; v < V; v++) {
      for (Index c = c0; c < c1; c++) dwte[v * C + c] = 0.0F;
    }
    for (Index t = 0; t < T; t++) {
      for (Index c = c0; c < c1; c++) dwpe[t * C + c] = 0.0F;
    }
    for (Index bt = 0; bt < Index{B} * T; bt++) {
      const S* dout_bt = dout + bt * C;
      float* dwte_ix = dwte + Index{tokens[bt]} * C;
      float* dwpe_t = dwpe + (bt % T) * C;
      for (Index c = c0; c < c1; c++) {
        dwte_ix[c] += to_float(dout_bt[c]);
        dwpe_t[c] += to_float(dout_bt[c]);
      }
    }
  });
}

template <Storage S>
void layernorm_forward(S* out, float* mean, float* rstd, const S* inp, const S* weight,
                       const S* bias, int N, int C) {
  for_each_task(N, [&](Index n) {
    const S* x = inp + n * C;
    float m = 0.0F;
    for (int i = 0; i < C; i++) m += to_float(x[i]);
    m /= static_cast<float>(C);
    float v = 0.0F;
    for (int i = 0; i < C; i++) v += (to_float(x[i]) - m) * (to_float(x[i]) - m);
    v /= static_cast<float>(C);
    const float s = 1.0F / std::sqrt(v + 1e-5F);
    S* out_n = out + n * C;
    for (int i = 0; i < C; i++) {
      out_n[i] =
          from_float<S>((s * (to_float(x[i]) - m)) * to_float(weight[i]) + to_float(bias[i]));
    }
    mean[n] = m;
    rstd[n] = s;
  });
}

template <Storage S>
void layernorm_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                        const S* weight, const float* mean, const float* rstd, int N, int C) {
  for_each_task(N, [&](Index n) {
    const S* dout_n = dout + n * C;
    const S* inp_n = inp + n * C;
    float dnorm_mean = 0.0F;
    float dnorm_norm_mean = 0.0F;
    for (int i = 0; i < C; i++) {
      const float dnorm_i = to_float(weight[i]) * to_float(dout_n[i]);
      dnorm_mean += dnorm_i;
      dnorm_norm_mean += dnorm_i * ((to_float(inp_n[i]) - mean[n]) * rstd[n]);
    }
    dnorm_mean /= static_cast<float>(C);
    dnorm_norm_mean /= static_cast<float>(C);
    S* dinp_n = dinp + n * C;
    for (int i = 0; i < C; i++) {
      const float norm_i = (to_float(inp_n[i]) - mean[n]) * rstd[n];
      dinp_n[i] = from_float<S>(
          (to_float(weight[i]) * to_float(dout_n[i]) - dnorm_mean - norm_i * dnorm_norm_mean) *
          rstd[n]);
    }
  });
  // dweight and dbias sum over rows: parallel over channel blocks, rows in order inside.
  for_each_chunk(C, kChannelBlock, [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; c++) dweight[c] = dbias[c] = 0.0F;
    for (Index n = 0; n < N; n++) {
      const S* dout_n = dout + n * C;
      const S* inp_n = inp + n * C;
      for (Index c = c0; c < c1; c++) {
        dbias[c] += to_float(dout_n[c]);
        dweight[c] += ((to_float(inp_n[c]) - mean[n]) * rstd[n]) * to_float(dout_n[c]);
      }
    }
  });
}

// --- elementwise --------------------------------------------------------------------------------

namespace {

// 0.5 (1 + tanh(u)) is the logistic sigmoid of 2u: computed as 1 / (1 + exp(-2u)), with one
// expf, which costs a third of glibc's tanhf and dominated the MLP before. For u very negative
// exp overflows to inf and the sigmoid goes to 0, as it should.
constexpr float kGeluCubic = 0.044715F;

float gelu_sigmoid(float x, float scaling) {
  return 1.0F / (1.0F + std::exp(-2.0F * scaling * (x + kGeluCubic * x * x * x)));
}

}  // namespace

template <Storage S>
void gelu_forward(S* out, const S* inp, std::int64_t n) {
  const float scaling = std::sqrt(2.0F / std::numbers::pi_v<float>);
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) {
      const float x = to_float(inp[i]);
      out[i] = from_float<S>(x * gelu_sigmoid(x, scaling));
    }
  });
}

template <Storage S>
void gelu_backward(S* dinp, const S* inp, const S* dout, std::int64_t n) {
  const float scaling = std::sqrt(2.0F / std::numbers::pi_v<float>);
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) {
      // With s = 0.5 (1 + tanh(u)): the tanh's derivative 1 - tanh^2 is 4 s (1 - s).
      const float x = to_float(inp[i]);
      const float s = gelu_sigmoid(x, scaling);
      const float local_grad =
          s + 2.0F * x * s * (1.0F - s) * scaling * (1.0F + 3.0F * kGeluCubic * x * x);
      dinp[i] = from_float<S>(local_grad * to_float(dout[i]));
    }
  });
}

template <Storage S>
void add(S* out, const S* a, const S* b, std::int64_t n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) out[i] = from_float<S>(to_float(a[i]) + to_float(b[i]));
  });
}

// --- attention ----------------------------------------------------------------------------------

namespace {

// What both attention kernels derive from C and NH.
struct AttentionDims {
  Index qkv_row;  // elements in one (b,t) row of qkv
  int hs;         // head size
  float scale;    // of the scores: 1 / sqrt(hs)
};

AttentionDims attention_dims(int C, int NH) {
  const int hs = C / NH;
  return {Index{3} * C, hs, 1.0F / std::sqrt(static_cast<float>(hs))};
}

}  // namespace

template <Storage S>
void attention_forward(S* out, S* att, const S* qkv, int B, int T, int C, int NH) {
  const auto [qkv_row, hs, scale] = attention_dims(C, NH);
  // The dims are passed by init-capture: clang before 16 cannot capture a structured binding.
  for_each_task(Index{B} * NH, [&, qkv_row = qkv_row, hs = hs, scale = scale](Index bh) {
    const Index b = bh / NH;
    const Index h = bh % NH;
    const S* qkv_b = qkv + b * T * qkv_row + h * hs;
    // The att and out rows in float (16-bit storage): T + hs floats.
    float* scratch = std::same_as<S, float> ? nullptr : thread_scratch(std::size_t(T) + hs);
    for (Index t = 0; t < T; t++) {
      const S* query_t = qkv_b + t * qkv_row;
      S* att_out = att + (bh * T + t) * T;
      float* att_bth = float_row(att_out, scratch);
      float maxval = -INFINITY;
      for (Index t2 = 0; t2 <= t; t2++) {
        const S* key_t2 = qkv_b + t2 * qkv_row + C;
        float val = 0.0F;
        for (int i = 0; i < hs; i++) val += to_float(query_t[i]) * to_float(key_t2[i]);
        val *= scale;
        maxval = std::max(maxval, val);
        att_bth[t2] = val;
      }
      float expsum = 0.0F;
      for (Index t2 = 0; t2 <= t; t2++) {
        att_bth[t2] = std::exp(att_bth[t2] - maxval);
        expsum += att_bth[t2];
      }
      const float expsum_inv = 1.0F / expsum;
      for (Index t2 = 0; t2 <= t; t2++) att_bth[t2] *= expsum_inv;
      for (Index t2 = t + 1; t2 < T; t2++) att_bth[t2] = 0.0F;
      S* out_final = out + (b * T + t) * C + h * hs;
      float* out_bth = float_row(out_final, scratch == nullptr ? nullptr : scratch + T);
      for (int i = 0; i < hs; i++) out_bth[i] = 0.0F;
      for (Index t2 = 0; t2 <= t; t2++) {
        const S* value_t2 = qkv_b + t2 * qkv_row + 2 * C;
        for (int i = 0; i < hs; i++) out_bth[i] += att_bth[t2] * to_float(value_t2[i]);
      }
      store_row(att_out, att_bth, T);
      store_row(out_final, out_bth, hs);
    }
  });
}

template <Storage S>
void attention_backward(S* dqkv, const S* dout, const S* qkv, const S* att, int B, int T, int C,
                        int NH) {
  const auto [qkv_row, hs, scale] = attention_dims(C, NH);
  // One task per (b,h): every t adds into the key and value gradients of all t2 <= t, and those
  // sums run in t order inside the task. The task's q, k and v slices of dqkv are its alone.
  for_each_task(Index{B} * NH, [&, qkv_row = qkv_row, hs = hs, scale = scale](Index bh) {
    const Index b = bh / NH;
    const Index h = bh % NH;
    const S* qkv_b = qkv + b * T * qkv_row + h * hs;
    S* dqkv_b = dqkv + b * T * qkv_row + h * hs;
    // The gradient sums of row t's part (0 q, 1 k, 2 v): in dqkv itself for fp32, else in a
    // float copy of the task's slice, [T, 3, hs], rounded into dqkv at the end.
    float* scratch = std::same_as<S, float> ? nullptr : thread_scratch(std::size_t(T) * 3 * hs);
    const auto sums = [&](Index t, int part) -> float* {
      if constexpr (std::same_as<S, float>) {
        return dqkv_b + t * qkv_row + Index{part} * C;
      } else {
        return scratch + (t * 3 + part) * hs;
      }
    };
    for (Index t = 0; t < T; t++) {
      for (int part = 0; part < 3; part++) std::fill_n(sums(t, part), hs, 0.0F);
    }
    std::vector<float> datt(T);
    for (Index t = 0; t < T; t++) {
      const S* att_bth = att + (bh * T + t) * T;
      const S* dout_bth = dout + (b * T + t) * C + h * hs;
      for (Index t2 = 0; t2 <= t; t2++) {
        const S* value_t2 = qkv_b + t2 * qkv_row + 2 * C;
        float* dvalue_t2 = sums(t2, 2);
        float d = 0.0F;
        for (int i = 0; i < hs; i++) {
          d += to_float(value_t2[i]) * to_float(dout_bth[i]);
          dvalue_t2[i] += to_float(att_bth[t2]) * to_float(dout_bth[i]);
        }
        datt[t2] = d;
      }
      float dot = 0.0F;
      for (Index t2 = 0; t2 <= t; t2++) dot += to_float(att_bth[t2]) * datt[t2];
      const S* query_t = qkv_b + t * qkv_row;
      float* dquery_t = sums(t, 0);
      for (Index t2 = 0; t2 <= t; t2++) {
        const float dpreatt = to_float(att_bth[t2]) * (datt[t2] - dot) * scale;
        const S* key_t2 = qkv_b + t2 * qkv_row + C;
        float* dkey_t2 = sums(t2, 1);
        for (int i = 0; i < hs; i++) {
          dquery_t[i] += to_float(key_t2[i]) * dpreatt;
          dkey_t2[i] += to_float(query_t[i]) * dpreatt;
        }
      }
    }
    for (Index t = 0; t < T; t++) {
      for (int part = 0; part < 3; part++) {
        store_row(dqkv_b + t * qkv_row + Index{part} * C, sums(t, part), hs);
      }
    }
  });
}

// --- loss ---------------------------------------------------------------------------------------

template <Storage S>
void softmax_cross_entropy_forward(float* losses, S* probs, const S* logits,
                                   const std::int32_t* targets, int N, int V) {
  for_each_task(N, [&](Index n) {
    const S* logits_n = logits + n * V;
    S* probs_out = probs + n * V;
    float* probs_n =
        float_row(probs_out, std::same_as<S, float> ? nullptr : thread_scratch(std::size_t(V)));
    float maxval = -INFINITY;
    for (int i = 0; i < V; i++) maxval = std::max(maxval, to_float(logits_n[i]));
    float sum = 0.0F;
    for (int i = 0; i < V; i++) {
      probs_n[i] = std::exp(to_float(logits_n[i]) - maxval);
      sum += probs_n[i];
    }
    for (int i = 0; i < V; i++) probs_n[i] /= sum;
    losses[n] = -std::log(probs_n[targets[n]]);
    store_row(probs_out, probs_n, V);
  });
}

template <Storage S>
void softmax_cross_entropy_backward(S* dlogits, const S* probs, const std::int32_t* targets,
                                    float dloss, int N, int V) {
  for_each_task(N, [&](Index n) {
    const S* probs_n = probs + n * V;
    S* dlogits_n = dlogits + n * V;
    for (int i = 0; i < V; i++) dlogits_n[i] = from_float<S>(to_float(probs_n[i]) * dloss);
    dlogits_n[targets[n]] = from_float<S>((to_float(probs_n[targets[n]]) - 1.0F) * dloss);
  });
}

void mean(float* out, const float* in, std::int64_t n) {
  // Fixed chunks summed in double, then the chunk sums in chunk order, in double: the order is a
  // function of n alone, and double keeps the loss exact to float precision for any n.
  const Index chunks = (n + kElementwiseChunk - 1) / kElementwiseChunk;
  std::vector<double> partial(chunks);
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    double sum = 0.0;
    for (Index i = i0; i < i1; i++) sum += in[i];
    partial[i0 / kElementwiseChunk] = sum;
  });
  double sum = 0.0;
  for (const double s : partial) sum += s;
  out[0] = static_cast<float>(sum / static_cast<double>(n));
}

// --- optimizer, conversions ---------------------------------------------------------------------

void adamw(float* param_out, float* m_out, float* v_out, const float* param, const float* grad,
           const float* m, const float* v, std::int64_t n, const AdamWConfig& config, int step) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    adamw_range(param_out, m_out, v_out, param, grad, m, v, i0, i1, config, step);
  });
}

template <Storage To, Storage From>
void cast(To* out, const From* in, std::int64_t n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    if constexpr (std::same_as<To, From>) {
      // A copy: rounding a value to its own type would quiet a signalling NaN.
      std::memcpy(out + i0, in + i0, static_cast<std::size_t>(i1 - i0) * sizeof(To));
    } else {
      for (Index i = i0; i < i1; i++) out[i] = from_float<To>(to_float(in[i]));
    }
  });
}

template <Storage S>
void accumulate(S* acc, const float* add, std::int64_t n, bool assign) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    if (assign) {
      for (Index i = i0; i < i1; i++) acc[i] = from_float<S>(add[i]);
    } else {
      for (Index i = i0; i < i1; i++) acc[i] = from_float<S>(to_float(acc[i]) + add[i]);
    }
  });
}

template <Storage S>
void fold_chunks(S* out, const S* in, int chunks, std::int64_t stride, std::int64_t n,
                 float divisor) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) {
      float sum = to_float(in[i]);
      for (int c = 1; c < chunks; c++) sum += to_float(in[c * stride + i]);
      out[i] = from_float<S>(sum / divisor);
    }
  });
}

// --- instantiations for the three storage types ------------------------------------------------

#define EBB_NN_CPU_INSTANTIATE(S)                                                                 \
  template void embedding_forward<S>(S*, const std::int32_t*, const S*, const S*, int, int, int,  \
                                     int);                                                        \
  template void embedding_backward<S>(float*, float*, const S*, const std::int32_t*, int, int,    \
                                      int, int);                                                  \
  template void layernorm_forward<S>(S*, float*, float*, const S*, const S*, const S*, int, int); \
  template void layernorm_backward<S>(S*, float*, float*, const S*, const S*, const S*,           \
                                      const float*, const float*, int, int);                      \
  template void gelu_forward<S>(S*, const S*, std::int64_t);                                      \
  template void gelu_backward<S>(S*, const S*, const S*, std::int64_t);                           \
  template void add<S>(S*, const S*, const S*, std::int64_t);                                     \
  template void attention_forward<S>(S*, S*, const S*, int, int, int, int);                       \
  template void attention_backward<S>(S*, const S*, const S*, const S*, int, int, int, int);      \
  template void softmax_cross_entropy_forward<S>(float*, S*, const S*, const std::int32_t*, int,  \
                                                 int);                                            \
  template void softmax_cross_entropy_backward<S>(S*, const S*, const std::int32_t*, float, int,  \
                                                  int);                                           \
  template void accumulate<S>(S*, const float*, std::int64_t, bool);                              \
  template void fold_chunks<S>(S*, const S*, int, std::int64_t, std::int64_t, float);             \
  template void cast<S, float>(S*, const float*, std::int64_t);                                   \
  template void cast<S, Bf16>(S*, const Bf16*, std::int64_t);                                     \
  template void cast<S, F16>(S*, const F16*, std::int64_t);

EBB_NN_CPU_INSTANTIATE(float)
EBB_NN_CPU_INSTANTIATE(Bf16)
EBB_NN_CPU_INSTANTIATE(F16)
#undef EBB_NN_CPU_INSTANTIATE

}  // namespace ebb::nn::cpu
