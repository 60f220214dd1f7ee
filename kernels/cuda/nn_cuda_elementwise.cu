// The cuda backend of kernels/nn.h, elementwise part: GELU, add, AdamW, cast and accumulate.
// Each output element is computed by one thread from its own inputs, so these are deterministic
// by construction; grid-stride loops with 64-bit indices cover any n. GELU and add are templates
// on the storage type S (nn_cuda_float.h); AdamW is fp32 only.
//
// cast and accumulate round with nn_cuda_float.h's integer conversions, which give the cpu
// backend's bits: round to nearest even, and a NaN stays a (quiet) NaN with its sign instead of
// rounding into infinity.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_float.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// GPT-2's tanh approximation: sqrt(2 / pi) and the cubic coefficient.
constexpr float kGeluScale = 0.7978845608028654F;
constexpr float kGeluCubic = 0.044715F;

#define EBB_GRID_STRIDE_LOOP(i, n)                                                    \
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += std::int64_t{gridDim.x} * blockDim.x)

template <typename S>
__global__ void gelu_forward_kernel(S* out, const S* inp, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const float x = to_float(inp[i]);
    const float cube = kGeluCubic * x * x * x;
    out[i] = from_float<S>(0.5F * x * (1.0F + tanhf(kGeluScale * (x + cube))));
  }
}

template <typename S>
__global__ void gelu_backward_kernel(S* dinp, const S* inp, const S* dout, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const float x = to_float(inp[i]);
    const float cube = kGeluCubic * x * x * x;
    const float tanh_arg = kGeluScale * (x + cube);
    const float tanh_out = tanhf(tanh_arg);
    const float cosh_out = coshf(tanh_arg);
    const float sech_out = 1.0F / (cosh_out * cosh_out);
    const float local_grad = 0.5F * (1.0F + tanh_out) +
                             x * 0.5F * sech_out * kGeluScale * (1.0F + 3.0F * kGeluCubic * x * x);
    dinp[i] = from_float<S>(local_grad * to_float(dout[i]));
  }
}

template <typename S>
__global__ void add_kernel(S* out, const S* a, const S* b, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) { out[i] = from_float<S>(to_float(a[i]) + to_float(b[i])); }
}

// bias_correction1/2 are 1 - beta^step, computed once on the host.
__global__ void adamw_kernel(float* param_out, float* m_out, float* v_out, const float* param,
                             const float* grad, const float* m, const float* v, std::int64_t n,
                             float learning_rate, float beta1, float beta2, float eps,
                             float weight_decay, float bias_correction1, float bias_correction2) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const float g = grad[i];
    const float p = param[i];
    const float m1 = beta1 * m[i] + (1.0F - beta1) * g;
    const float v1 = beta2 * v[i] + (1.0F - beta2) * g * g;
    const float m_hat = m1 / bias_correction1;
    const float v_hat = v1 / bias_correction2;
    m_out[i] = m1;
    v_out[i] = v1;
    param_out[i] = p - learning_rate * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
  }
}

// Between different storage types (the same type is a copy, see cast below).
template <typename To, typename From>
__global__ void cast_kernel(To* out, const From* in, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) { out[i] = from_float<To>(to_float(in[i])); }
}

template <typename S>
__global__ void accumulate_kernel(S* acc, const float* add, std::int64_t n, bool assign) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    acc[i] = from_float<S>(assign ? add[i] : to_float(acc[i]) + add[i]);
  }
}

template <typename S>
__global__ void fold_chunks_kernel(S* out, const S* in, int chunks, std::int64_t stride,
                                   std::int64_t n, float divisor) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    float sum = to_float(in[i]);
    for (int c = 1; c < chunks; c++) sum += to_float(in[c * stride + i]);
    out[i] = from_float<S>(sum / divisor);
  }
}

#undef EBB_GRID_STRIDE_LOOP

}  // namespace

void gelu_forward(void* stream, FloatType t, void* out, const void* inp, std::int64_t n) {
  if (n <= 0) return;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    gelu_forward_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(out), static_cast<const S*>(inp), n);
  });
  check_launch("gelu_forward");
}

void gelu_backward(void* stream, FloatType t, void* dinp, const void* inp, const void* dout,
                   std::int64_t n) {
  if (n <= 0) return;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    gelu_backward_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(dinp), static_cast<const S*>(inp), static_cast<const S*>(dout), n);
  });
  check_launch("gelu_backward");
}

void add(void* stream, FloatType t, void* out, const void* a, const void* b, std::int64_t n) {
  if (n <= 0) return;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    add_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(out), static_cast<const S*>(a), static_cast<const S*>(b), n);
  });
  check_launch("add");
}

void adamw(void* stream, float* param_out, float* m_out, float* v_out, const float* param,
           const float* grad, const float* m, const float* v, std::int64_t n,
           const AdamWConfig& config, int step) {
  if (n <= 0) return;
  // In float, with powf, as the cpu backend computes them.
  const float bias_correction1 = 1.0F - powf(config.beta1, static_cast<float>(step));
  const float bias_correction2 = 1.0F - powf(config.beta2, static_cast<float>(step));
  adamw_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
      param_out, m_out, v_out, param, grad, m, v, n, config.learning_rate, config.beta1,
      config.beta2, config.eps, config.weight_decay, bias_correction1, bias_correction2);
  check_launch("adamw");
}

void cast(void* stream, FloatType to, void* out, FloatType from, const void* in, std::int64_t n) {
  if (n <= 0) return;
  cudaStream_t s = as_stream(stream);
  if (to == from) {
    // A copy: rounding a value to its own type would quiet a signalling NaN.
    check_call(cudaMemcpyAsync(out, in, static_cast<std::size_t>(n) * float_bytes(to),
                               cudaMemcpyDeviceToDevice, s),
               "cast", "cudaMemcpyAsync");
    return;
  }
  with_storage(to, [&]<typename To>(StorageTag<To>) {
    with_storage(from, [&]<typename From>(StorageTag<From>) {
      cast_kernel<To, From><<<grid_for(n), kBlockThreads, 0, s>>>(static_cast<To*>(out),
                                                                  static_cast<const From*>(in), n);
    });
  });
  check_launch("cast");
}

void accumulate(void* stream, FloatType t, void* acc, const float* add, std::int64_t n,
                bool assign) {
  if (n <= 0) return;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    accumulate_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(static_cast<S*>(acc),
                                                                               add, n, assign);
  });
  check_launch("accumulate");
}

void fold_chunks(void* stream, FloatType t, void* out, const void* in, int chunks,
                 std::int64_t stride, std::int64_t n, float divisor) {
  if (n <= 0) return;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    fold_chunks_kernel<S><<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(
        static_cast<S*>(out), static_cast<const S*>(in), chunks, stride, n, divisor);
  });
  check_launch("fold_chunks");
}

}  // namespace ebb::nn::cuda
