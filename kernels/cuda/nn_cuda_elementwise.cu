// The cuda backend of kernels/nn.h, elementwise part: GELU, add, AdamW and the bf16 casts. Each
// output element is computed by one thread from its own inputs, so these are deterministic by
// construction; grid-stride loops with 64-bit indices cover any n.
//
// The casts work on the bits with integer operations (as the cpu backend does), so both
// backends give the same bf16 bits: round to nearest even, and a NaN stays a (quiet) NaN with
// its sign instead of rounding into infinity.
//
// Thread safety: reentrant (the functions only enqueue work on the stream they are given).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/nn_cuda.h"
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

__global__ void gelu_forward_kernel(float* out, const float* inp, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const float x = inp[i];
    const float cube = kGeluCubic * x * x * x;
    out[i] = 0.5F * x * (1.0F + tanhf(kGeluScale * (x + cube)));
  }
}

__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout,
                                     std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const float x = inp[i];
    const float cube = kGeluCubic * x * x * x;
    const float tanh_arg = kGeluScale * (x + cube);
    const float tanh_out = tanhf(tanh_arg);
    const float cosh_out = coshf(tanh_arg);
    const float sech_out = 1.0F / (cosh_out * cosh_out);
    const float local_grad = 0.5F * (1.0F + tanh_out) +
                             x * 0.5F * sech_out * kGeluScale * (1.0F + 3.0F * kGeluCubic * x * x);
    dinp[i] = local_grad * dout[i];
  }
}

__global__ void add_kernel(float* out, const float* a, const float* b, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) { out[i] = a[i] + b[i]; }
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

__global__ void cast_f32_to_bf16_kernel(std::uint16_t* out, const float* in, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) {
    const std::uint32_t bits = __float_as_uint(in[i]);
    if ((bits & 0x7fffffffU) > 0x7f800000U) {
      // NaN: keep the sign and the top of the payload, and set the quiet bit so that truncating
      // the low half cannot leave an infinity.
      out[i] = static_cast<std::uint16_t>((bits >> 16) | 0x0040U);
    } else {
      const std::uint32_t rounding = 0x7fffU + ((bits >> 16) & 1U);  // ties go to even
      out[i] = static_cast<std::uint16_t>((bits + rounding) >> 16);
    }
  }
}

__global__ void cast_bf16_to_f32_kernel(float* out, const std::uint16_t* in, std::int64_t n) {
  EBB_GRID_STRIDE_LOOP(i, n) { out[i] = __uint_as_float(std::uint32_t{in[i]} << 16); }
}

#undef EBB_GRID_STRIDE_LOOP

}  // namespace

void gelu_forward(void* stream, float* out, const float* inp, std::int64_t n) {
  if (n <= 0) return;
  gelu_forward_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(out, inp, n);
  check_launch("gelu_forward");
}

void gelu_backward(void* stream, float* dinp, const float* inp, const float* dout, std::int64_t n) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(dinp, inp, dout, n);
  check_launch("gelu_backward");
}

void add(void* stream, float* out, const float* a, const float* b, std::int64_t n) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(out, a, b, n);
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

void cast_f32_to_bf16(void* stream, std::uint16_t* out, const float* in, std::int64_t n) {
  if (n <= 0) return;
  cast_f32_to_bf16_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(out, in, n);
  check_launch("cast_f32_to_bf16");
}

void cast_bf16_to_f32(void* stream, float* out, const std::uint16_t* in, std::int64_t n) {
  if (n <= 0) return;
  cast_bf16_to_f32_kernel<<<grid_for(n), kBlockThreads, 0, as_stream(stream)>>>(out, in, n);
  check_launch("cast_bf16_to_f32");
}

}  // namespace ebb::nn::cuda
