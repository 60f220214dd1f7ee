// The cpu backend of kernels/nn.h, matmul part: matmul_forward and matmul_backward on a
// cache-blocked GEMM. The rest of the backend: nn_cpu.cc.
//
// The GEMM is a cache-blocked loop nest around a register tile of 4 rows x 8 columns held in
// 4-float vectors (GCC/Clang vector extensions, SSE on the x86-64 baseline: about 30 GFLOP/s per
// core, against 5 for the auto-vectorized loop it replaced). Tasks are output tiles, so each
// output element has one owner. No sum is reassociated: each lane owns one output element and
// adds its products in k order, exactly as the scalar edge code does, so tile shapes and edges do
// not change the bits. No intrinsics, no -march flags.
//
// 16-bit storage: the GEMM widens each task's operand panels to float and runs the same tile code
// on them, accumulating in a float tile that is rounded once at the end (a bias is added in float
// first, as the initial value of the sum): per element the same products added in the same order
// as the fp32 GEMM on the widened operands, so the same bits before the rounding.
//
// Thread safety: reentrant (the only state is per-thread scratch).
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/nn_cpu.h"
#include "kernels/cpu/nn_cpu_launch.h"
#include "kernels/nn_scalar.h"

namespace ebb::nn::cpu {
namespace {

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

// The register tile, Mr rows x 4*Nv columns: acc starts from c when `resume` (a later k block),
// else from init, then adds a(i,k) * b(k,j) for k in [k0, k1) in order.
template <int Mr, int Nv>
void gemm_tile(const Gemm& g, int i0, int j0, int k0, int k1, bool resume) {
  Vec4 acc[Mr][Nv];
  for (int i = 0; i < Mr; i++) {
    for (int v = 0; v < Nv; v++) {
      if (resume) {
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
void gemm_edge(const Gemm& g, int i0, int i1, int j0, int j1, int k0, int k1, bool resume) {
  for (int i = i0; i < i1; i++) {
    float* c_i = g.c + i * g.ldc;
    for (int j = j0; j < j1; j++) {
      float acc = resume ? c_i[j] : (g.init != nullptr ? g.init[j] : 0.0F);
      for (int k = k0; k < k1; k++) acc += g.a[i * g.a_rs + k * g.a_cs] * g.b[k * g.ldb + j];
      c_i[j] = acc;
    }
  }
}

// One task's tile [ib, ie) x [jb, je) of c over the k block [k0, k1): register tiles, then the
// edges. `resume` when an earlier k block has written the tile.
void gemm_block(const Gemm& g, int ib, int ie, int jb, int je, int k0, int k1, bool resume) {
  const int i_full = ib + (ie - ib) / kMr * kMr;
  const int j_full = jb + (je - jb) / kNr * kNr;
  for (int j = jb; j < j_full; j += kNr) {
    for (int i = ib; i < i_full; i += kMr) gemm_tile<kMr, kNv>(g, i, j, k0, k1, resume);
    gemm_edge(g, i_full, ie, j, j + kNr, k0, k1, resume);
  }
  gemm_edge(g, ib, ie, j_full, je, k0, k1, resume);
}

// Runs fn(ib, ie, jb, je) for each task tile of an m x n output, in parallel.
template <typename Fn>
void for_each_gemm_tile(int m, int n, const Fn& fn) {
  const int row_tiles = (m + kMb - 1) / kMb;
  const int col_tiles = (n + kNb - 1) / kNb;
  for_each_task(Index{row_tiles} * col_tiles, [&](Index task) {
    const int ib = static_cast<int>(task / col_tiles) * kMb;
    const int jb = static_cast<int>(task % col_tiles) * kNb;
    fn(ib, std::min(m, ib + kMb), jb, std::min(n, jb + kNb));
  });
}

void gemm(const Gemm& g) {
  for_each_gemm_tile(g.m, g.n, [&](int ib, int ie, int jb, int je) {
    // k = 0 must run even for an empty k range, to write init into c.
    for (int k0 = 0; k0 == 0 || k0 < g.k; k0 += kKc) {
      gemm_block(g, ib, ie, jb, je, k0, std::min(g.k, k0 + kKc), k0 > 0);
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

// c[m,n] (O: float or S, row-major, leading dimension n) = init + a * b over 16-bit operands:
// a(i,k) is a[i*a_rs + k*a_cs], b(k,j) is b[k*b_rs + j*b_cs], init a float row or null.
template <Storage16 S, Storage O>
struct WideningGemm {
  O* c;
  const S* a;
  Index a_rs;
  Index a_cs;
  const S* b;
  Index b_rs;
  Index b_cs;
  const float* init;
  int m;
  int k;
  int n;
};

// The float panels of one task of a WideningGemm: a [kMb, kKc], b [kKc, kNb], c [kMb, kNb]
// (224 KiB), per thread and kept between calls.
struct GemmPanels {
  std::vector<float> a = std::vector<float>(std::size_t{kMb} * kKc);
  std::vector<float> b = std::vector<float>(std::size_t{kKc} * kNb);
  std::vector<float> c = std::vector<float>(std::size_t{kMb} * kNb);
};

// Per task tile: for each k block, widens the block's a and b panels, runs gemm_block on them
// into the float c panel, and at the end rounds the c panel into c.
template <Storage16 S, Storage O>
void gemm_widened(const WideningGemm<S, O>& g) {
  for_each_gemm_tile(g.m, g.n, [&](int ib, int ie, int jb, int je) {
    thread_local GemmPanels panels;
    const int rows = ie - ib;
    const int cols = je - jb;
    for (int k0 = 0; k0 == 0 || k0 < g.k; k0 += kKc) {
      const int depth = std::min(g.k, k0 + kKc) - k0;
      for (int i = 0; i < rows; i++) {
        for (int k = 0; k < depth; k++) {
          panels.a[Index{i} * kKc + k] = to_float(g.a[(ib + i) * g.a_rs + (k0 + k) * g.a_cs]);
        }
      }
      for (int k = 0; k < depth; k++) {
        for (int j = 0; j < cols; j++) {
          panels.b[Index{k} * kNb + j] = to_float(g.b[(k0 + k) * g.b_rs + (jb + j) * g.b_cs]);
        }
      }
      const Gemm block{.c = panels.c.data(),
                       .ldc = kNb,
                       .a = panels.a.data(),
                       .a_rs = kKc,
                       .a_cs = 1,
                       .b = panels.b.data(),
                       .ldb = kNb,
                       .init = g.init != nullptr ? g.init + jb : nullptr,
                       .m = rows,
                       .k = depth,
                       .n = cols};
      gemm_block(block, 0, rows, 0, cols, 0, depth, k0 > 0);
    }
    for (int i = 0; i < rows; i++) {
      for (int j = 0; j < cols; j++) {
        g.c[Index{ib + i} * g.n + jb + j] = from_float<O>(panels.c[Index{i} * kNb + j]);
      }
    }
  });
}

}  // namespace

template <Storage S>
void matmul_forward(S* out, const S* inp, const S* weight, const std::type_identity_t<S>* bias,
                    int N, int C, int OC) {
  if constexpr (std::same_as<S, float>) {
    // The GEMM wants b as [C, OC] rows; weight is [OC, C]. Transposing costs C*OC moves against
    // the N*C*OC multiply-adds. The buffer is kept per thread (the stream's worker): allocating
    // it per call made glibc map and unmap it each time, and the page faults cost more than the
    // transpose. (The TBB tasks below run on other threads: they must reach it through this
    // pointer, not through the thread_local's name, which names each thread's own buffer.)
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
  } else {
    // The panels read weight transposed in place (b(c,o) = weight[o*C + c]); only the bias is
    // widened up front, being added in float before the single rounding.
    thread_local std::vector<float> bias_buffer;
    const float* bias_f32 = nullptr;
    if (bias != nullptr) {
      bias_buffer.resize(static_cast<std::size_t>(OC));
      for (Index o = 0; o < OC; o++) bias_buffer[o] = to_float(bias[o]);
      bias_f32 = bias_buffer.data();
    }
    gemm_widened<S, S>({.c = out,
                        .a = inp,
                        .a_rs = C,
                        .a_cs = 1,
                        .b = weight,
                        .b_rs = 1,
                        .b_cs = C,
                        .init = bias_f32,
                        .m = N,
                        .k = C,
                        .n = OC});
  }
}

template <Storage S>
void matmul_backward(S* dinp, float* dweight, float* dbias, const S* dout, const S* inp,
                     const S* weight, int N, int C, int OC) {
  if constexpr (std::same_as<S, float>) {
    // dinp[N,C] = dout[N,OC] * weight[OC,C].
    gemm_packed(dinp, dout, OC, 1, weight, nullptr, N, OC, C);
    // dweight[OC,C] = dout^T[OC,N] * inp[N,C]: a is dout read column-wise.
    gemm_packed(dweight, dout, 1, OC, inp, nullptr, OC, N, C);
  } else {
    gemm_widened<S, S>({.c = dinp,
                        .a = dout,
                        .a_rs = OC,
                        .a_cs = 1,
                        .b = weight,
                        .b_rs = C,
                        .b_cs = 1,
                        .init = nullptr,
                        .m = N,
                        .k = OC,
                        .n = C});
    gemm_widened<S, float>({.c = dweight,
                            .a = dout,
                            .a_rs = 1,
                            .a_cs = OC,
                            .b = inp,
                            .b_rs = C,
                            .b_cs = 1,
                            .init = nullptr,
                            .m = OC,
                            .k = N,
                            .n = C});
  }
  if (dbias != nullptr) {
    for_each_chunk(OC, kChannelBlock * 4, [&](Index o0, Index o1) {
      for (Index o = o0; o < o1; o++) dbias[o] = 0.0F;
      for (Index n = 0; n < N; n++) {
        for (Index o = o0; o < o1; o++) dbias[o] += to_float(dout[n * OC + o]);
      }
    });
  }
}

template void matmul_forward<float>(float*, const float*, const float*, const float*, int, int,
                                    int);
template void matmul_forward<Bf16>(Bf16*, const Bf16*, const Bf16*, const Bf16*, int, int, int);
template void matmul_forward<F16>(F16*, const F16*, const F16*, const F16*, int, int, int);
template void matmul_backward<float>(float*, float*, float*, const float*, const float*,
                                     const float*, int, int, int);
template void matmul_backward<Bf16>(Bf16*, float*, float*, const Bf16*, const Bf16*, const Bf16*,
                                    int, int, int);
template void matmul_backward<F16>(F16*, float*, float*, const F16*, const F16*, const F16*, int,
                                   int, int);

}  // namespace ebb::nn::cpu
