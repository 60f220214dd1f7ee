// The cpu backend of kernels/nn.h. Work is cut into tasks by shape alone (fixed row, tile or
// channel blocks, never by thread count), each output element is written by exactly one task, and
// every sum inside a task runs in index order: so the bits do not depend on how TBB schedules
// the tasks or on how many threads it has. No tbb::parallel_reduce anywhere for that reason.
//
// The GEMM behind matmul_forward/backward is a cache-blocked loop nest around a register tile
// of 4 rows x 8 columns held in 4-float vectors (GCC/Clang vector extensions, SSE on the x86-64
// baseline: about 30 GFLOP/s per core, against 5 for the auto-vectorized loop it replaced). No sum
// is reassociated: each lane owns one output element and adds its products in k order, exactly as
// the scalar edge code does, so tile shapes and edges do not change the bits. No intrinsics, no
// -march flags.
#include "kernels/cpu/nn_cpu.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "kernels/nn_scalar.h"

namespace ebb::nn::cpu {
namespace {

using Index = std::int64_t;

// Runs fn(task) for task in [0, count): inline when there is one task, since TBB's dispatch costs
// more than a small kernel, and always inline in a ThreadSanitizer build (EBB_SERIAL_KERNELS, see
// the root CMakeLists.txt), where TBB's uninstrumented scheduling reads as races.
template <typename Fn>
void for_each_task(Index count, const Fn& fn) {
#if EBB_SERIAL_KERNELS
  for (Index task = 0; task < count; ++task) fn(task);
#else
  if (count == 1) {
    fn(Index{0});
  } else if (count > 1) {
    tbb::parallel_for(Index{0}, count, fn);
  }
#endif
}

// Runs fn(begin, end) over fixed chunks of [0, n) in parallel.
template <typename Fn>
void for_each_chunk(Index n, Index chunk, const Fn& fn) {
  for_each_task((n + chunk - 1) / chunk,
                [&](Index task) { fn(task * chunk, std::min(n, (task + 1) * chunk)); });
}

constexpr Index kElementwiseChunk = 16384;  // 64 KiB of floats per task
constexpr int kChannelBlock = 16;           // columns per task where a sum runs over rows

// --- GEMM ---------------------------------------------------------------------------------------

constexpr int kMr = 4;  // register tile rows
constexpr int kNv = 2;  // register tile vectors of 4 columns
constexpr int kNr = 4 * kNv;
constexpr int kMb = 64;   // task tile rows
constexpr int kNb = 128;  // task tile columns
constexpr int kKc = 256;  // k block: a kKc x kNb panel of B (128 KiB) stays in L2

// Describes c[M,Ncol] = init + a[M,K] * b[K,Ncol]. a(i,k) is a[i*a_rs + k*a_cs] (so a can be a
// transposed view); b and c are row-major with leading dimensions ldb and ldc; init is a row
// added to every row of c (a bias), or null for zero.
struct Gemm {
  float* c;
  Index ldc;
  const float* a;
  Index a_rs;
  Index a_cs;
  const float* b;
  Index ldb;
  const float* init;
  int m;
  int k;
  int n;
};

// Four floats in one SSE register (GCC/Clang vector extension): spelling the vectors out keeps
// the accumulators in registers, which the auto-vectorizer does only for some tile shapes.
using Vec4 = float __attribute__((vector_size(16)));

Vec4 load4(const float* p) {
  Vec4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The register tile, Mr rows x 4*Nv columns: acc starts from init (first k block) or from c,
// then adds a(i,k) * b(k,j) for k in [k0, k1) in order.
template <int Mr, int Nv>
void gemm_tile(const Gemm& g, int i0, int j0, int k0, int k1) {
  Vec4 acc[Mr][Nv];
  for (int i = 0; i < Mr; i++) {
    for (int v = 0; v < Nv; v++) {
      if (k0 > 0) {
        acc[i][v] = load4(g.c + (i0 + i) * g.ldc + j0 + 4 * v);
      } else if (g.init != nullptr) {
        acc[i][v] = load4(g.init + j0 + 4 * v);
      } else {
        acc[i][v] = Vec4{};
      }
    }
  }
  const float* a = g.a + i0 * g.a_rs;
  for (int k = k0; k < k1; k++) {
    Vec4 b_k[Nv];
    for (int v = 0; v < Nv; v++) b_k[v] = load4(g.b + k * g.ldb + j0 + 4 * v);
    for (int i = 0; i < Mr; i++) {
      const float a_ik = a[i * g.a_rs + k * g.a_cs];
      for (int v = 0; v < Nv; v++) acc[i][v] += a_ik * b_k[v];
    }
  }
  for (int i = 0; i < Mr; i++) {
    for (int v = 0; v < Nv; v++) {
      std::memcpy(g.c + (i0 + i) * g.ldc + j0 + 4 * v, &acc[i][v], sizeof(Vec4));
    }
  }
}

// The same sums for a partial tile at the edges (same per-element order, so same bits).
void gemm_edge(const Gemm& g, int i0, int i1, int j0, int j1, int k0, int k1) {
  for (int i = i0; i < i1; i++) {
    float* c_i = g.c + i * g.ldc;
    for (int j = j0; j < j1; j++) {
      float acc = k0 == 0 ? (g.init != nullptr ? g.init[j] : 0.0F) : c_i[j];
      for (int k = k0; k < k1; k++) acc += g.a[i * g.a_rs + k * g.a_cs] * g.b[k * g.ldb + j];
      c_i[j] = acc;
    }
  }
}

void gemm(const Gemm& g) {
  const int row_tiles = (g.m + kMb - 1) / kMb;
  const int col_tiles = (g.n + kNb - 1) / kNb;
  for_each_task(Index{row_tiles} * col_tiles, [&](Index task) {
    const int ib = static_cast<int>(task / col_tiles) * kMb;
    const int jb = static_cast<int>(task % col_tiles) * kNb;
    const int ie = std::min(g.m, ib + kMb);
    const int je = std::min(g.n, jb + kNb);
    const int i_full = ib + (ie - ib) / kMr * kMr;
    const int j_full = jb + (je - jb) / kNr * kNr;
    // k = 0 must run even for an empty k range, to write init into c.
    for (int k0 = 0; k0 == 0 || k0 < g.k; k0 += kKc) {
      const int k1 = std::min(g.k, k0 + kKc);
      for (int j = jb; j < j_full; j += kNr) {
        for (int i = ib; i < i_full; i += kMr) gemm_tile<kMr, kNv>(g, i, j, k0, k1);
        gemm_edge(g, i_full, ie, j, j + kNr, k0, k1);
      }
      gemm_edge(g, ib, ie, j_full, je, k0, k1);
    }
  });
}

// c[m,n] = init + a * b with b [k,n] and c [m,n] packed row-major; a(i,k) is a[i*a_rs + k*a_cs].
void gemm_packed(float* c, const float* a, Index a_rs, Index a_cs, const float* b,
                 const float* init, int m, int k, int n) {
  gemm({.c = c,
        .ldc = n,
        .a = a,
        .a_rs = a_rs,
        .a_cs = a_cs,
        .b = b,
        .ldb = n,
        .init = init,
        .m = m,
        .k = k,
        .n = n});
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
  // The GEMM wants b as [C, OC] rows; weight is [OC, C]. Transposing costs C*OC moves against the
  // N*C*OC multiply-adds. The buffer is kept per thread (the stream's worker): allocating it per
  // call made glibc map and unmap it each time, and the page faults cost more than the transpose.
  // (The TBB tasks below run on other threads: they must reach it through this pointer, not
  // through the thread_local's name, which names each thread's own buffer.)
  thread_local std::vector<float> buffer;
  buffer.resize(static_cast<std::size_t>(C) * OC);
  float* weight_t = buffer.data();
  for_each_chunk(C, kChannelBlock, [&](Index c0, Index c1) {
    for (Index o = 0; o < OC; o++) {
      for (Index c = c0; c < c1; c++) weight_t[c * OC + o] = weight[o * C + c];
    }
  });
  // out[N,OC] = bias + inp[N,C] * weight_t[C,OC].
  gemm_packed(out, inp, C, 1, weight_t, bias, N, C, OC);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
  // dinp[N,C] = dout[N,OC] * weight[OC,C].
  gemm_packed(dinp, dout, OC, 1, weight, nullptr, N, OC, C);
  // dweight[OC,C] = dout^T[OC,N] * inp[N,C]: a is dout read column-wise.
  gemm_packed(dweight, dout, 1, OC, inp, nullptr, OC, N, C);
  if (dbias != nullptr) {
    for_each_chunk(OC, kChannelBlock * 4, [&](Index o0, Index o1) {
      for (Index o = o0; o < o1; o++) dbias[o] = 0.0F;
      for (Index n = 0; n < N; n++) {
        for (Index o = o0; o < o1; o++) dbias[o] += dout[n * OC + o];
      }
    });
  }
}

// --- embedding, layernorm ----------------------------------------------------------------------

void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                       int B, int T, int C, int /*V*/) {
  for_each_task(Index{B} * T, [&](Index bt) {
    const float* wte_ix = wte + Index{tokens[bt]} * C;
    const float* wpe_t = wpe + (bt % T) * C;
    float* out_bt = out + bt * C;
    for (int i = 0; i < C; i++) out_bt[i] = wte_ix[i] + wpe_t[i];
  });
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                        int B, int T, int C, int V) {
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
      const float* dout_bt = dout + bt * C;
      float* dwte_ix = dwte + Index{tokens[bt]} * C;
      float* dwpe_t = dwpe + (bt % T) * C;
      for (Index c = c0; c < c1; c++) {
        dwte_ix[c] += dout_bt[c];
        dwpe_t[c] += dout_bt[c];
      }
    }
  });
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
  for_each_task(N, [&](Index n) {
    const float* x = inp + n * C;
    float m = 0.0F;
    for (int i = 0; i < C; i++) m += x[i];
    m /= static_cast<float>(C);
    float v = 0.0F;
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    v /= static_cast<float>(C);
    const float s = 1.0F / std::sqrt(v + 1e-5F);
    float* out_n = out + n * C;
    for (int i = 0; i < C; i++) out_n[i] = (s * (x[i] - m)) * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
  });
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int N, int C) {
  for_each_task(N, [&](Index n) {
    const float* dout_n = dout + n * C;
    const float* inp_n = inp + n * C;
    float dnorm_mean = 0.0F;
    float dnorm_norm_mean = 0.0F;
    for (int i = 0; i < C; i++) {
      const float dnorm_i = weight[i] * dout_n[i];
      dnorm_mean += dnorm_i;
      dnorm_norm_mean += dnorm_i * ((inp_n[i] - mean[n]) * rstd[n]);
    }
    dnorm_mean /= static_cast<float>(C);
    dnorm_norm_mean /= static_cast<float>(C);
    float* dinp_n = dinp + n * C;
    for (int i = 0; i < C; i++) {
      const float norm_i = (inp_n[i] - mean[n]) * rstd[n];
      dinp_n[i] = (weight[i] * dout_n[i] - dnorm_mean - norm_i * dnorm_norm_mean) * rstd[n];
    }
  });
  // dweight and dbias sum over rows: parallel over channel blocks, rows in order inside.
  for_each_chunk(C, kChannelBlock, [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; c++) dweight[c] = dbias[c] = 0.0F;
    for (Index n = 0; n < N; n++) {
      const float* dout_n = dout + n * C;
      const float* inp_n = inp + n * C;
      for (Index c = c0; c < c1; c++) {
        dbias[c] += dout_n[c];
        dweight[c] += ((inp_n[c] - mean[n]) * rstd[n]) * dout_n[c];
      }
    }
  });
}

// --- elementwise --------------------------------------------------------------------------------

// 0.5 (1 + tanh(u)) is the logistic sigmoid of 2u: computed as 1 / (1 + exp(-2u)), with one
// expf, which costs a third of glibc's tanhf and dominated the MLP before. For u very negative
// exp overflows to inf and the sigmoid goes to 0, as it should.
constexpr float kGeluCubic = 0.044715F;

float gelu_sigmoid(float x, float scaling) {
  return 1.0F / (1.0F + std::exp(-2.0F * scaling * (x + kGeluCubic * x * x * x)));
}

void gelu_forward(float* out, const float* inp, std::int64_t n) {
  const float scaling = std::sqrt(2.0F / std::numbers::pi_v<float>);
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) out[i] = inp[i] * gelu_sigmoid(inp[i], scaling);
  });
}

void gelu_backward(float* dinp, const float* inp, const float* dout, std::int64_t n) {
  const float scaling = std::sqrt(2.0F / std::numbers::pi_v<float>);
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) {
      // With s = 0.5 (1 + tanh(u)): the tanh's derivative 1 - tanh^2 is 4 s (1 - s).
      const float x = inp[i];
      const float s = gelu_sigmoid(x, scaling);
      const float local_grad =
          s + 2.0F * x * s * (1.0F - s) * scaling * (1.0F + 3.0F * kGeluCubic * x * x);
      dinp[i] = local_grad * dout[i];
    }
  });
}

void add(float* out, const float* a, const float* b, std::int64_t n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) out[i] = a[i] + b[i];
  });
}

// --- attention ----------------------------------------------------------------------------------

namespace {

// What both attention kernels derive from C and NH.
struct AttentionDims {
  Index qkv_row;  // floats in one (b,t) row of qkv
  int hs;         // head size
  float scale;    // of the scores: 1 / sqrt(hs)
};

AttentionDims attention_dims(int C, int NH) {
  const int hs = C / NH;
  return {Index{3} * C, hs, 1.0F / std::sqrt(static_cast<float>(hs))};
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  const auto [qkv_row, hs, scale] = attention_dims(C, NH);
  // The dims are passed by init-capture: clang before 16 cannot capture a structured binding.
  for_each_task(Index{B} * NH, [&, qkv_row = qkv_row, hs = hs, scale = scale](Index bh) {
    const Index b = bh / NH;
    const Index h = bh % NH;
    const float* qkv_b = qkv + b * T * qkv_row + h * hs;
    for (Index t = 0; t < T; t++) {
      const float* query_t = qkv_b + t * qkv_row;
      float* att_bth = att + (bh * T + t) * T;
      float maxval = -INFINITY;
      for (Index t2 = 0; t2 <= t; t2++) {
        const float* key_t2 = qkv_b + t2 * qkv_row + C;
        float val = 0.0F;
        for (int i = 0; i < hs; i++) val += query_t[i] * key_t2[i];
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
      float* out_bth = out + (b * T + t) * C + h * hs;
      for (int i = 0; i < hs; i++) out_bth[i] = 0.0F;
      for (Index t2 = 0; t2 <= t; t2++) {
        const float* value_t2 = qkv_b + t2 * qkv_row + 2 * C;
        for (int i = 0; i < hs; i++) out_bth[i] += att_bth[t2] * value_t2[i];
      }
    }
  });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH) {
  const auto [qkv_row, hs, scale] = attention_dims(C, NH);
  // One task per (b,h): every t adds into the key and value gradients of all t2 <= t, and those
  // sums run in t order inside the task. The task's q, k and v slices of dqkv are its alone.
  for_each_task(Index{B} * NH, [&, qkv_row = qkv_row, hs = hs, scale = scale](Index bh) {
    const Index b = bh / NH;
    const Index h = bh % NH;
    const float* qkv_b = qkv + b * T * qkv_row + h * hs;
    float* dqkv_b = dqkv + b * T * qkv_row + h * hs;
    for (Index t = 0; t < T; t++) {
      for (int part = 0; part < 3; part++) {
        std::fill_n(dqkv_b + t * qkv_row + Index{part} * C, hs, 0.0F);
      }
    }
    std::vector<float> datt(T);
    for (Index t = 0; t < T; t++) {
      const float* att_bth = att + (bh * T + t) * T;
      const float* dout_bth = dout + (b * T + t) * C + h * hs;
      for (Index t2 = 0; t2 <= t; t2++) {
        const float* value_t2 = qkv_b + t2 * qkv_row + 2 * C;
        float* dvalue_t2 = dqkv_b + t2 * qkv_row + 2 * C;
        float d = 0.0F;
        for (int i = 0; i < hs; i++) {
          d += value_t2[i] * dout_bth[i];
          dvalue_t2[i] += att_bth[t2] * dout_bth[i];
        }
        datt[t2] = d;
      }
      float dot = 0.0F;
      for (Index t2 = 0; t2 <= t; t2++) dot += att_bth[t2] * datt[t2];
      const float* query_t = qkv_b + t * qkv_row;
      float* dquery_t = dqkv_b + t * qkv_row;
      for (Index t2 = 0; t2 <= t; t2++) {
        const float dpreatt = att_bth[t2] * (datt[t2] - dot) * scale;
        const float* key_t2 = qkv_b + t2 * qkv_row + C;
        float* dkey_t2 = dqkv_b + t2 * qkv_row + C;
        for (int i = 0; i < hs; i++) {
          dquery_t[i] += key_t2[i] * dpreatt;
          dkey_t2[i] += query_t[i] * dpreatt;
        }
      }
    }
  });
}

// --- loss ---------------------------------------------------------------------------------------

void softmax_cross_entropy_forward(float* losses, float* probs, const float* logits,
                                   const std::int32_t* targets, int N, int V) {
  for_each_task(N, [&](Index n) {
    const float* logits_n = logits + n * V;
    float* probs_n = probs + n * V;
    float maxval = -INFINITY;
    for (int i = 0; i < V; i++) maxval = std::max(maxval, logits_n[i]);
    float sum = 0.0F;
    for (int i = 0; i < V; i++) {
      probs_n[i] = std::exp(logits_n[i] - maxval);
      sum += probs_n[i];
    }
    for (int i = 0; i < V; i++) probs_n[i] /= sum;
    losses[n] = -std::log(probs_n[targets[n]]);
  });
}

void softmax_cross_entropy_backward(float* dlogits, const float* probs, const std::int32_t* targets,
                                    float dloss, int N, int V) {
  for_each_task(N, [&](Index n) {
    const float* probs_n = probs + n * V;
    float* dlogits_n = dlogits + n * V;
    for (int i = 0; i < V; i++) dlogits_n[i] = probs_n[i] * dloss;
    dlogits_n[targets[n]] = (probs_n[targets[n]] - 1.0F) * dloss;
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

// --- optimizer, casts ---------------------------------------------------------------------------

void adamw(float* param_out, float* m_out, float* v_out, const float* param, const float* grad,
           const float* m, const float* v, std::int64_t n, const AdamWConfig& config, int step) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    adamw_range(param_out, m_out, v_out, param, grad, m, v, i0, i1, config, step);
  });
}

void cast_f32_to_bf16(std::uint16_t* out, const float* in, std::int64_t n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) out[i] = f32_to_bf16(in[i]);
  });
}

void cast_bf16_to_f32(float* out, const std::uint16_t* in, std::int64_t n) {
  for_each_chunk(n, kElementwiseChunk, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; i++) out[i] = bf16_to_f32(in[i]);
  });
}

}  // namespace ebb::nn::cpu
