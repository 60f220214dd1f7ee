// Plain reference versions of every kernel of kernels/nn.h, for tests to compare the fast
// backends with and to check the backward kernels against finite differences. Written as
// llm.c's train_gpt2.c writes them (one loop nest per kernel, no parallelism, no blocking) so that
// each can be checked by reading it; templated on the scalar type (float to compare with the fast
// kernels, double for finite differences). Same shapes, layouts and contracts as kernels/nn.h:
// outputs are overwritten, never accumulated into, and inputs are never written. Reductions run
// sequentially in index order, in Real.
//
// The 16-bit versions (storage types Bf16 and F16 of kernels/nn_scalar.h) are nn.h's definition
// of 16-bit arithmetic written out: every 16-bit input widened exactly to float, the float
// reference run on the widened copies, and every 16-bit output rounded once with the helpers the
// cpu backend uses; the fp32 outputs (statistics, losses, weight gradients) are written by the
// float reference directly.
//
// Thread safety: reentrant (no shared state).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "kernels/nn.h"
#include "kernels/nn_scalar.h"

namespace ebb::nn::reference {

template <std::floating_point Real>
void embedding_forward(Real* out, const std::int32_t* tokens, const Real* wte, const Real* wpe,
                       int B, int T, int C, int /*V*/) {
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      Real* out_bt = out + (static_cast<std::int64_t>(b) * T + t) * C;
      const Real* wte_ix = wte + static_cast<std::int64_t>(tokens[b * T + t]) * C;
      const Real* wpe_t = wpe + static_cast<std::int64_t>(t) * C;
      for (int i = 0; i < C; i++) out_bt[i] = wte_ix[i] + wpe_t[i];
    }
  }
}

template <std::floating_point Real>
void embedding_backward(Real* dwte, Real* dwpe, const Real* dout, const std::int32_t* tokens, int B,
                        int T, int C, int V) {
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(V) * C; i++) dwte[i] = 0;
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(T) * C; i++) dwpe[i] = 0;
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      const Real* dout_bt = dout + (static_cast<std::int64_t>(b) * T + t) * C;
      Real* dwte_ix = dwte + static_cast<std::int64_t>(tokens[b * T + t]) * C;
      Real* dwpe_t = dwpe + static_cast<std::int64_t>(t) * C;
      for (int i = 0; i < C; i++) {
        dwte_ix[i] += dout_bt[i];
        dwpe_t[i] += dout_bt[i];
      }
    }
  }
}

template <std::floating_point Real>
void layernorm_forward(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                       const Real* bias, int N, int C) {
  const Real eps = 1e-5;
  for (int n = 0; n < N; n++) {
    const Real* x = inp + static_cast<std::int64_t>(n) * C;
    Real m = 0;
    for (int i = 0; i < C; i++) m += x[i];
    m = m / C;
    Real v = 0;
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    v = v / C;
    const Real s = 1 / std::sqrt(v + eps);
    Real* out_n = out + static_cast<std::int64_t>(n) * C;
    for (int i = 0; i < C; i++) out_n[i] = (s * (x[i] - m)) * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <std::floating_point Real>
void layernorm_backward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                        const Real* weight, const Real* mean, const Real* rstd, int N, int C) {
  for (int i = 0; i < C; i++) dweight[i] = dbias[i] = 0;
  for (int n = 0; n < N; n++) {
    const Real* dout_n = dout + static_cast<std::int64_t>(n) * C;
    const Real* inp_n = inp + static_cast<std::int64_t>(n) * C;
    Real* dinp_n = dinp + static_cast<std::int64_t>(n) * C;
    // Two reductions first (the mean of dnorm and of dnorm * norm), then the gradient.
    Real dnorm_mean = 0;
    Real dnorm_norm_mean = 0;
    for (int i = 0; i < C; i++) {
      const Real norm_i = (inp_n[i] - mean[n]) * rstd[n];
      const Real dnorm_i = weight[i] * dout_n[i];
      dnorm_mean += dnorm_i;
      dnorm_norm_mean += dnorm_i * norm_i;
    }
    dnorm_mean = dnorm_mean / C;
    dnorm_norm_mean = dnorm_norm_mean / C;
    for (int i = 0; i < C; i++) {
      const Real norm_i = (inp_n[i] - mean[n]) * rstd[n];
      const Real dnorm_i = weight[i] * dout_n[i];
      dbias[i] += dout_n[i];
      dweight[i] += norm_i * dout_n[i];
      dinp_n[i] = (dnorm_i - dnorm_mean - norm_i * dnorm_norm_mean) * rstd[n];
    }
  }
}

template <std::floating_point Real>
void matmul_forward(Real* out, const Real* inp, const Real* weight, const Real* bias, int N, int C,
                    int OC) {
  for (int n = 0; n < N; n++) {
    for (int o = 0; o < OC; o++) {
      Real val = bias != nullptr ? bias[o] : Real{0};
      for (int i = 0; i < C; i++) {
        val += inp[static_cast<std::int64_t>(n) * C + i] *
               weight[static_cast<std::int64_t>(o) * C + i];
      }
      out[static_cast<std::int64_t>(n) * OC + o] = val;
    }
  }
}

template <std::floating_point Real>
void matmul_backward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                     const Real* weight, int N, int C, int OC) {
  for (int n = 0; n < N; n++) {
    for (int i = 0; i < C; i++) {
      Real val = 0;
      for (int o = 0; o < OC; o++) {
        val += dout[static_cast<std::int64_t>(n) * OC + o] *
               weight[static_cast<std::int64_t>(o) * C + i];
      }
      dinp[static_cast<std::int64_t>(n) * C + i] = val;
    }
  }
  for (int o = 0; o < OC; o++) {
    for (int i = 0; i < C; i++) {
      Real val = 0;
      for (int n = 0; n < N; n++) {
        val +=
            dout[static_cast<std::int64_t>(n) * OC + o] * inp[static_cast<std::int64_t>(n) * C + i];
      }
      dweight[static_cast<std::int64_t>(o) * C + i] = val;
    }
    if (dbias != nullptr) {
      Real val = 0;
      for (int n = 0; n < N; n++) val += dout[static_cast<std::int64_t>(n) * OC + o];
      dbias[o] = val;
    }
  }
}

// GPT-2's tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <std::floating_point Real>
void gelu_forward(Real* out, const Real* inp, std::int64_t n) {
  const Real scaling = std::sqrt(Real{2} / std::numbers::pi_v<Real>);
  for (std::int64_t i = 0; i < n; i++) {
    const Real x = inp[i];
    const Real cube = Real{0.044715} * x * x * x;
    out[i] = Real{0.5} * x * (1 + std::tanh(scaling * (x + cube)));
  }
}

template <std::floating_point Real>
void gelu_backward(Real* dinp, const Real* inp, const Real* dout, std::int64_t n) {
  const Real scaling = std::sqrt(Real{2} / std::numbers::pi_v<Real>);
  for (std::int64_t i = 0; i < n; i++) {
    const Real x = inp[i];
    const Real tanh_arg = scaling * (x + Real{0.044715} * x * x * x);
    const Real tanh_out = std::tanh(tanh_arg);
    // sech^2 = 1 - tanh^2 (llm.c's 1/cosh^2 overflows cosh for large |x|; this form does not).
    const Real sech2 = 1 - tanh_out * tanh_out;
    const Real local_grad = Real{0.5} * (1 + tanh_out) + x * Real{0.5} * sech2 * scaling *
                                                             (1 + Real{3} * Real{0.044715} * x * x);
    dinp[i] = local_grad * dout[i];
  }
}

template <std::floating_point Real>
void add(Real* out, const Real* a, const Real* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

template <std::floating_point Real>
void attention_forward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH) {
  const std::int64_t qkv_row = 3 * static_cast<std::int64_t>(C);
  const int hs = C / NH;
  const Real scale = 1 / std::sqrt(static_cast<Real>(hs));
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      for (int h = 0; h < NH; h++) {
        const Real* query_t = qkv + (static_cast<std::int64_t>(b) * T + t) * qkv_row + h * hs;
        Real* att_bth = att + ((static_cast<std::int64_t>(b) * NH + h) * T + t) * T;
        // Scores q.k for the visible keys, their max for a stable softmax.
        Real maxval = -INFINITY;
        for (int t2 = 0; t2 <= t; t2++) {
          const Real* key_t2 = qkv + (static_cast<std::int64_t>(b) * T + t2) * qkv_row + h * hs + C;
          Real val = 0;
          for (int i = 0; i < hs; i++) val += query_t[i] * key_t2[i];
          val *= scale;
          if (val > maxval) maxval = val;
          att_bth[t2] = val;
        }
        Real expsum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const Real expv = std::exp(att_bth[t2] - maxval);
          expsum += expv;
          att_bth[t2] = expv;
        }
        const Real expsum_inv = 1 / expsum;
        for (int t2 = 0; t2 < T; t2++) att_bth[t2] = t2 <= t ? att_bth[t2] * expsum_inv : Real{0};
        Real* out_bth = out + (static_cast<std::int64_t>(b) * T + t) * C + h * hs;
        for (int i = 0; i < hs; i++) out_bth[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          const Real* value_t2 =
              qkv + (static_cast<std::int64_t>(b) * T + t2) * qkv_row + h * hs + 2 * C;
          for (int i = 0; i < hs; i++) out_bth[i] += att_bth[t2] * value_t2[i];
        }
      }
    }
  }
}

template <std::floating_point Real>
void attention_backward(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                        int T, int C, int NH) {
  const std::int64_t qkv_row = 3 * static_cast<std::int64_t>(C);
  const int hs = C / NH;
  const Real scale = 1 / std::sqrt(static_cast<Real>(hs));
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(B) * T * qkv_row; i++) dqkv[i] = 0;
  std::vector<Real> datt(T);
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      for (int h = 0; h < NH; h++) {
        const std::int64_t q_off = (static_cast<std::int64_t>(b) * T + t) * qkv_row + h * hs;
        const Real* att_bth = att + ((static_cast<std::int64_t>(b) * NH + h) * T + t) * T;
        const Real* dout_bth = dout + (static_cast<std::int64_t>(b) * T + t) * C + h * hs;
        // Through out = att . value: gradients of att and of value.
        for (int t2 = 0; t2 <= t; t2++) {
          const std::int64_t v_off =
              (static_cast<std::int64_t>(b) * T + t2) * qkv_row + h * hs + 2 * C;
          Real d = 0;
          for (int i = 0; i < hs; i++) {
            d += qkv[v_off + i] * dout_bth[i];
            dqkv[v_off + i] += att_bth[t2] * dout_bth[i];
          }
          datt[t2] = d;
        }
        // Through the softmax: dpreatt = att * (datt - sum(att * datt)).
        Real dot = 0;
        for (int t2 = 0; t2 <= t; t2++) dot += att_bth[t2] * datt[t2];
        // Through the scores q.k * scale: gradients of query and key.
        for (int t2 = 0; t2 <= t; t2++) {
          const Real dpreatt = att_bth[t2] * (datt[t2] - dot) * scale;
          const std::int64_t k_off = (static_cast<std::int64_t>(b) * T + t2) * qkv_row + h * hs + C;
          for (int i = 0; i < hs; i++) {
            dqkv[q_off + i] += qkv[k_off + i] * dpreatt;
            dqkv[k_off + i] += qkv[q_off + i] * dpreatt;
          }
        }
      }
    }
  }
}

template <std::floating_point Real>
void softmax_cross_entropy_forward(Real* losses, Real* probs, const Real* logits,
                                   const std::int32_t* targets, int N, int V) {
  for (int n = 0; n < N; n++) {
    const Real* logits_n = logits + static_cast<std::int64_t>(n) * V;
    Real* probs_n = probs + static_cast<std::int64_t>(n) * V;
    Real maxval = -INFINITY;
    for (int i = 0; i < V; i++) maxval = logits_n[i] > maxval ? logits_n[i] : maxval;
    Real sum = 0;
    for (int i = 0; i < V; i++) {
      probs_n[i] = std::exp(logits_n[i] - maxval);
      sum += probs_n[i];
    }
    for (int i = 0; i < V; i++) probs_n[i] /= sum;
    losses[n] = -std::log(probs_n[targets[n]]);
  }
}

template <std::floating_point Real>
void softmax_cross_entropy_backward(Real* dlogits, const Real* probs, const std::int32_t* targets,
                                    Real dloss, int N, int V) {
  for (int n = 0; n < N; n++) {
    for (int i = 0; i < V; i++) {
      const std::int64_t at = static_cast<std::int64_t>(n) * V + i;
      const Real indicator = i == targets[n] ? Real{1} : Real{0};
      dlogits[at] = (probs[at] - indicator) * dloss;
    }
  }
}

template <std::floating_point Real>
void mean(Real* out, const Real* in, std::int64_t n) {
  Real sum = 0;
  for (std::int64_t i = 0; i < n; i++) sum += in[i];
  out[0] = sum / static_cast<Real>(n);
}

// In float, as the fast kernel computes it; the update as nn.h states it (kernels/nn_scalar.h).
inline void adamw(float* param_out, float* m_out, float* v_out, const float* param,
                  const float* grad, const float* m, const float* v, std::int64_t n,
                  const AdamWConfig& config, int step) {
  adamw_range(param_out, m_out, v_out, param, grad, m, v, 0, n, config, step);
}

// nn.h's cast element by element with kernels/nn_scalar.h's conversions; the same type copies.
template <Storage To, Storage From>
void cast(To* out, const From* in, std::int64_t n) {
  if constexpr (std::same_as<To, From>) {
    std::memcpy(out, in, static_cast<std::size_t>(n) * sizeof(To));
  } else {
    for (std::int64_t i = 0; i < n; i++) out[i] = from_float<To>(to_float(in[i]));
  }
}

template <Storage S>
void accumulate(S* acc, const float* add, std::int64_t n, bool assign) {
  for (std::int64_t i = 0; i < n; i++) {
    acc[i] = from_float<S>(assign ? add[i] : to_float(acc[i]) + add[i]);
  }
}

// --- 16-bit storage ------------------------------------------------------------------------------

// in[0, n) widened to float.
template <Storage16 S>
std::vector<float> widened(const S* in, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; i++) out[static_cast<std::size_t>(i)] = to_float(in[i]);
  return out;
}

// n floats for a 16-bit output, which round_into then stores.
inline std::vector<float> float_output(std::int64_t n) {
  return std::vector<float>(static_cast<std::size_t>(n));
}

// out[i] = values[i] rounded to S.
template <Storage16 S>
void round_into(S* out, const std::vector<float>& values) {
  for (std::size_t i = 0; i < values.size(); i++) out[i] = from_float<S>(values[i]);
}

template <Storage16 S>
void embedding_forward(S* out, const std::int32_t* tokens, const S* wte, const S* wpe, int B, int T,
                       int C, int V) {
  std::vector<float> out_f = float_output(std::int64_t{B} * T * C);
  embedding_forward(out_f.data(), tokens, widened(wte, std::int64_t{V} * C).data(),
                    widened(wpe, std::int64_t{T} * C).data(), B, T, C, V);
  round_into(out, out_f);
}

template <Storage16 S>
void embedding_backward(float* dwte, float* dwpe, const S* dout, const std::int32_t* tokens, int B,
                        int T, int C, int V) {
  embedding_backward(dwte, dwpe, widened(dout, std::int64_t{B} * T * C).data(), tokens, B, T, C, V);
}

template <Storage16 S>
void layernorm_forward(S* out, float* mean, float* rstd, const S* inp, const S* weight,
                       const S* bias, int N, int C) {
  std::vector<float> out_f = float_output(std::int64_t{N} * C);
  layernorm_forward(out_f.data(), mean, rstd, widened(inp, std::int64_t{N} * C).data(),
                    widened(weight, C).data(), widened(bias, C).data(), N, C);
  round_into(out, out_f);
}

template <Storage16 S>
void layernorm_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                        const S* weight, const float* mean, const float* rstd, int N, int C) {
  std::vector<float> dinp_f = float_output(std::int64_t{N} * C);
  layernorm_backward(dinp_f.data(), dweight, dbias, widened(dout, std::int64_t{N} * C).data(),
                     widened(inp, std::int64_t{N} * C).data(), widened(weight, C).data(), mean,
                     rstd, N, C);
  round_into(dinp, dinp_f);
}

template <Storage16 S>
void matmul_forward(S* out, const S* inp, const S* weight, const S* bias, int N, int C, int OC) {
  std::vector<float> out_f = float_output(std::int64_t{N} * OC);
  const std::vector<float> bias_f = bias != nullptr ? widened(bias, OC) : std::vector<float>();
  matmul_forward(out_f.data(), widened(inp, std::int64_t{N} * C).data(),
                 widened(weight, std::int64_t{OC} * C).data(),
                 bias != nullptr ? bias_f.data() : nullptr, N, C, OC);
  round_into(out, out_f);
}

template <Storage16 S>
void matmul_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                     const S* weight, int N, int C, int OC) {
  std::vector<float> dinp_f = float_output(std::int64_t{N} * C);
  matmul_backward(dinp_f.data(), dweight, dbias, widened(dout, std::int64_t{N} * OC).data(),
                  widened(inp, std::int64_t{N} * C).data(),
                  widened(weight, std::int64_t{OC} * C).data(), N, C, OC);
  round_into(dinp, dinp_f);
}

template <Storage16 S>
void gelu_forward(S* out, const S* inp, std::int64_t n) {
  std::vector<float> out_f = float_output(n);
  gelu_forward(out_f.data(), widened(inp, n).data(), n);
  round_into(out, out_f);
}

template <Storage16 S>
void gelu_backward(S* dinp, const S* inp, const S* dout, std::int64_t n) {
  std::vector<float> dinp_f = float_output(n);
  gelu_backward(dinp_f.data(), widened(inp, n).data(), widened(dout, n).data(), n);
  round_into(dinp, dinp_f);
}

template <Storage16 S>
void add(S* out, const S* a, const S* b, std::int64_t n) {
  std::vector<float> out_f = float_output(n);
  add(out_f.data(), widened(a, n).data(), widened(b, n).data(), n);
  round_into(out, out_f);
}

template <Storage16 S>
void attention_forward(S* out, S* att, const S* qkv, int B, int T, int C, int NH) {
  std::vector<float> out_f = float_output(std::int64_t{B} * T * C);
  std::vector<float> att_f = float_output(std::int64_t{B} * NH * T * T);
  attention_forward(out_f.data(), att_f.data(), widened(qkv, std::int64_t{B} * T * 3 * C).data(), B,
                    T, C, NH);
  round_into(out, out_f);
  round_into(att, att_f);
}

template <Storage16 S>
void attention_backward(S* dqkv, const S* dout, const S* qkv, const S* att, int B, int T, int C,
                        int NH) {
  std::vector<float> dqkv_f = float_output(std::int64_t{B} * T * 3 * C);
  attention_backward(dqkv_f.data(), widened(dout, std::int64_t{B} * T * C).data(),
                     widened(qkv, std::int64_t{B} * T * 3 * C).data(),
                     widened(att, std::int64_t{B} * NH * T * T).data(), B, T, C, NH);
  round_into(dqkv, dqkv_f);
}

template <Storage16 S>
void softmax_cross_entropy_forward(float* losses, S* probs, const S* logits,
                                   const std::int32_t* targets, int N, int V) {
  std::vector<float> probs_f = float_output(std::int64_t{N} * V);
  softmax_cross_entropy_forward(losses, probs_f.data(), widened(logits, std::int64_t{N} * V).data(),
                                targets, N, V);
  round_into(probs, probs_f);
}

template <Storage16 S>
void softmax_cross_entropy_backward(S* dlogits, const S* probs, const std::int32_t* targets,
                                    float dloss, int N, int V) {
  std::vector<float> dlogits_f = float_output(std::int64_t{N} * V);
  softmax_cross_entropy_backward(dlogits_f.data(), widened(probs, std::int64_t{N} * V).data(),
                                 targets, dloss, N, V);
  round_into(dlogits, dlogits_f);
}

}  // namespace ebb::nn::reference
