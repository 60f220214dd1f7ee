#include "kernels/nn.h"

#include <stdexcept>

#include "kernels/cpu/nn_cpu.h"
#if EBB_HAVE_CUDA
#include "kernels/cuda/nn_cuda.h"
#define EBB_NN_CUDA(call) cuda::call
#else
// A cuda LaunchContext cannot exist in a build without the cuda backend; say so if it does.
#define EBB_NN_CUDA(call) throw std::logic_error("nn: cuda kernel in a build without CUDA")
#endif

namespace ebb::nn {

void embedding_forward(const LaunchContext& ctx, float* out, const std::int32_t* tokens,
                       const float* wte, const float* wpe, int B, int T, int C, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(embedding_forward(ctx.native_stream, out, tokens, wte, wpe, B, T, C, V));
  } else {
    cpu::embedding_forward(out, tokens, wte, wpe, B, T, C, V);
  }
}

void embedding_backward(const LaunchContext& ctx, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, int B, int T, int C, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(embedding_backward(ctx.native_stream, dwte, dwpe, dout, tokens, B, T, C, V));
  } else {
    cpu::embedding_backward(dwte, dwpe, dout, tokens, B, T, C, V);
  }
}

void layernorm_forward(const LaunchContext& ctx, float* out, float* mean, float* rstd,
                       const float* inp, const float* weight, const float* bias, int N, int C) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(layernorm_forward(ctx.native_stream, out, mean, rstd, inp, weight, bias, N, C));
  } else {
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
  }
}

void layernorm_backward(const LaunchContext& ctx, float* dinp, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(layernorm_backward(ctx.native_stream, dinp, dweight, dbias, dout, inp, weight, mean,
                                   rstd, N, C));
  } else {
    cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
}

void matmul_forward(const LaunchContext& ctx, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int C, int OC) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(matmul_forward(ctx.native_stream, out, inp, weight, bias, N, C, OC));
  } else {
    cpu::matmul_forward(out, inp, weight, bias, N, C, OC);
  }
}

void matmul_backward(const LaunchContext& ctx, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, int N, int C,
                     int OC) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        matmul_backward(ctx.native_stream, dinp, dweight, dbias, dout, inp, weight, N, C, OC));
  } else {
    cpu::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  }
}

void gelu_forward(const LaunchContext& ctx, float* out, const float* inp, std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(gelu_forward(ctx.native_stream, out, inp, n));
  } else {
    cpu::gelu_forward(out, inp, n);
  }
}

void gelu_backward(const LaunchContext& ctx, float* dinp, const float* inp, const float* dout,
                   std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(gelu_backward(ctx.native_stream, dinp, inp, dout, n));
  } else {
    cpu::gelu_backward(dinp, inp, dout, n);
  }
}

void add(const LaunchContext& ctx, float* out, const float* a, const float* b, std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(add(ctx.native_stream, out, a, b, n));
  } else {
    cpu::add(out, a, b, n);
  }
}

void attention_forward(const LaunchContext& ctx, float* out, float* att, const float* qkv, int B,
                       int T, int C, int NH) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(attention_forward(ctx.native_stream, out, att, qkv, B, T, C, NH));
  } else {
    cpu::attention_forward(out, att, qkv, B, T, C, NH);
  }
}

void attention_backward(const LaunchContext& ctx, float* dqkv, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(attention_backward(ctx.native_stream, dqkv, dout, qkv, att, B, T, C, NH));
  } else {
    cpu::attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
  }
}

void softmax_cross_entropy_forward(const LaunchContext& ctx, float* losses, float* probs,
                                   const float* logits, const std::int32_t* targets, int N, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        softmax_cross_entropy_forward(ctx.native_stream, losses, probs, logits, targets, N, V));
  } else {
    cpu::softmax_cross_entropy_forward(losses, probs, logits, targets, N, V);
  }
}

void softmax_cross_entropy_backward(const LaunchContext& ctx, float* dlogits, const float* probs,
                                    const std::int32_t* targets, float dloss, int N, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        softmax_cross_entropy_backward(ctx.native_stream, dlogits, probs, targets, dloss, N, V));
  } else {
    cpu::softmax_cross_entropy_backward(dlogits, probs, targets, dloss, N, V);
  }
}

void mean(const LaunchContext& ctx, float* out, const float* in, std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(mean(ctx.native_stream, out, in, n));
  } else {
    cpu::mean(out, in, n);
  }
}

void adamw(const LaunchContext& ctx, float* param_out, float* m_out, float* v_out,
           const float* param, const float* grad, const float* m, const float* v, std::int64_t n,
           const AdamWConfig& config, int step) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        adamw(ctx.native_stream, param_out, m_out, v_out, param, grad, m, v, n, config, step));
  } else {
    cpu::adamw(param_out, m_out, v_out, param, grad, m, v, n, config, step);
  }
}

void cast_f32_to_bf16(const LaunchContext& ctx, std::uint16_t* out, const float* in,
                      std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(cast_f32_to_bf16(ctx.native_stream, out, in, n));
  } else {
    cpu::cast_f32_to_bf16(out, in, n);
  }
}

void cast_bf16_to_f32(const LaunchContext& ctx, float* out, const std::uint16_t* in,
                      std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(cast_bf16_to_f32(ctx.native_stream, out, in, n));
  } else {
    cpu::cast_bf16_to_f32(out, in, n);
  }
}

}  // namespace ebb::nn
