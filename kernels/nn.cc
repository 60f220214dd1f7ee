// The dispatch of kernels/nn.h: each kernel goes to the cuda backend (kernels/cuda/nn_cuda.h),
// which takes the FloatType and untyped pointers as they come, or to the cpu backend
// (kernels/cpu/nn_cpu.h), whose templates get the storage type that with_storage
// (kernels/nn_scalar.h) maps the FloatType to.
#include "kernels/nn.h"

#include <stdexcept>
#include <string>

#include "kernels/cpu/nn_cpu.h"
#include "kernels/nn_scalar.h"
#if EBB_HAVE_CUDA
#include "kernels/cuda/nn_cuda.h"
#define EBB_NN_CUDA(call) cuda::call
#else
// A cuda LaunchContext cannot exist in a build without the cuda backend; say so if it does.
#define EBB_NN_CUDA(call) throw std::logic_error("nn: cuda kernel in a build without CUDA")
#endif

namespace ebb::nn {
namespace {

// The cpu backend's view of an untyped pointer to elements of storage type S.
template <Storage S>
S* typed(void* p) {
  return static_cast<S*>(p);
}
template <Storage S>
const S* typed(const void* p) {
  return static_cast<const S*>(p);
}

}  // namespace

std::size_t float_bytes(FloatType t) {
  return with_storage(t, [](auto s) { return sizeof(s); });
}

std::string_view float_type_name(FloatType t) {
  switch (t) {
    case FloatType::kF32:
      return "f32";
    case FloatType::kBF16:
      return "bf16";
    case FloatType::kF16:
      return "f16";
  }
  throw std::invalid_argument("nn: FloatType " + std::to_string(static_cast<int>(t)) +
                              " is none of f32, bf16, f16");
}

void embedding_forward(const LaunchContext& ctx, FloatType t, void* out, const std::int32_t* tokens,
                       const void* wte, const void* wpe, int B, int T, int C, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(embedding_forward(ctx.native_stream, t, out, tokens, wte, wpe, B, T, C, V));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::embedding_forward(typed<S>(out), tokens, typed<S>(wte), typed<S>(wpe), B, T, C, V);
  });
}

void embedding_backward(const LaunchContext& ctx, FloatType t, float* dwte, float* dwpe,
                        const void* dout, const std::int32_t* tokens, int B, int T, int C, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(embedding_backward(ctx.native_stream, t, dwte, dwpe, dout, tokens, B, T, C, V));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::embedding_backward(dwte, dwpe, typed<S>(dout), tokens, B, T, C, V);
  });
}

void layernorm_forward(const LaunchContext& ctx, FloatType t, void* out, float* mean, float* rstd,
                       const void* inp, const void* weight, const void* bias, int N, int C) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(layernorm_forward(ctx.native_stream, t, out, mean, rstd, inp, weight, bias, N, C));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::layernorm_forward(typed<S>(out), mean, rstd, typed<S>(inp), typed<S>(weight),
                           typed<S>(bias), N, C);
  });
}

void layernorm_backward(const LaunchContext& ctx, FloatType t, void* dinp, float* dweight,
                        float* dbias, const void* dout, const void* inp, const void* weight,
                        const float* mean, const float* rstd, int N, int C) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(layernorm_backward(ctx.native_stream, t, dinp, dweight, dbias, dout, inp, weight,
                                   mean, rstd, N, C));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::layernorm_backward(typed<S>(dinp), dweight, dbias, typed<S>(dout), typed<S>(inp),
                            typed<S>(weight), mean, rstd, N, C);
  });
}

void matmul_forward(const LaunchContext& ctx, FloatType t, void* out, const void* inp,
                    const void* weight, const void* bias, int N, int C, int OC) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(matmul_forward(ctx.native_stream, t, out, inp, weight, bias, N, C, OC));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::matmul_forward(typed<S>(out), typed<S>(inp), typed<S>(weight), typed<S>(bias), N, C, OC);
  });
}

void matmul_backward(const LaunchContext& ctx, FloatType t, void* dinp, float* dweight,
                     float* dbias, const void* dout, const void* inp, const void* weight, int N,
                     int C, int OC) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        matmul_backward(ctx.native_stream, t, dinp, dweight, dbias, dout, inp, weight, N, C, OC));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::matmul_backward(typed<S>(dinp), dweight, dbias, typed<S>(dout), typed<S>(inp),
                         typed<S>(weight), N, C, OC);
  });
}

void gelu_forward(const LaunchContext& ctx, FloatType t, void* out, const void* inp,
                  std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(gelu_forward(ctx.native_stream, t, out, inp, n));
    return;
  }
  with_storage(t, [&]<Storage S>(S) { cpu::gelu_forward(typed<S>(out), typed<S>(inp), n); });
}

void gelu_backward(const LaunchContext& ctx, FloatType t, void* dinp, const void* inp,
                   const void* dout, std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(gelu_backward(ctx.native_stream, t, dinp, inp, dout, n));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::gelu_backward(typed<S>(dinp), typed<S>(inp), typed<S>(dout), n);
  });
}

void add(const LaunchContext& ctx, FloatType t, void* out, const void* a, const void* b,
         std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(add(ctx.native_stream, t, out, a, b, n));
    return;
  }
  with_storage(t, [&]<Storage S>(S) { cpu::add(typed<S>(out), typed<S>(a), typed<S>(b), n); });
}

void attention_forward(const LaunchContext& ctx, FloatType t, void* out, void* att, const void* qkv,
                       int B, int T, int C, int NH) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(attention_forward(ctx.native_stream, t, out, att, qkv, B, T, C, NH));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::attention_forward(typed<S>(out), typed<S>(att), typed<S>(qkv), B, T, C, NH);
  });
}

void attention_backward(const LaunchContext& ctx, FloatType t, void* dqkv, const void* dout,
                        const void* qkv, const void* att, int B, int T, int C, int NH) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(attention_backward(ctx.native_stream, t, dqkv, dout, qkv, att, B, T, C, NH));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::attention_backward(typed<S>(dqkv), typed<S>(dout), typed<S>(qkv), typed<S>(att), B, T, C,
                            NH);
  });
}

void softmax_cross_entropy_forward(const LaunchContext& ctx, FloatType t, float* losses,
                                   void* probs, const void* logits, const std::int32_t* targets,
                                   int N, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        softmax_cross_entropy_forward(ctx.native_stream, t, losses, probs, logits, targets, N, V));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::softmax_cross_entropy_forward(losses, typed<S>(probs), typed<S>(logits), targets, N, V);
  });
}

void softmax_cross_entropy_backward(const LaunchContext& ctx, FloatType t, void* dlogits,
                                    const void* probs, const std::int32_t* targets, float dloss,
                                    int N, int V) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(
        softmax_cross_entropy_backward(ctx.native_stream, t, dlogits, probs, targets, dloss, N, V));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::softmax_cross_entropy_backward(typed<S>(dlogits), typed<S>(probs), targets, dloss, N, V);
  });
}

void mean(const LaunchContext& ctx, FloatType /*t*/, float* out, const float* in, std::int64_t n) {
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

void cast(const LaunchContext& ctx, FloatType to, void* out, FloatType from, const void* in,
          std::int64_t n) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(cast(ctx.native_stream, to, out, from, in, n));
    return;
  }
  with_storage(to, [&]<Storage To>(To) {
    with_storage(from, [&]<Storage From>(From) { cpu::cast(typed<To>(out), typed<From>(in), n); });
  });
}

void accumulate(const LaunchContext& ctx, FloatType t, void* acc, const float* add, std::int64_t n,
                bool assign) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(accumulate(ctx.native_stream, t, acc, add, n, assign));
    return;
  }
  with_storage(t, [&]<Storage S>(S) { cpu::accumulate(typed<S>(acc), add, n, assign); });
}

void fold_chunks(const LaunchContext& ctx, FloatType t, void* out, const void* in, int chunks,
                 std::int64_t stride, std::int64_t n, float divisor) {
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_NN_CUDA(fold_chunks(ctx.native_stream, t, out, in, chunks, stride, n, divisor));
    return;
  }
  with_storage(t, [&]<Storage S>(S) {
    cpu::fold_chunks(typed<S>(out), static_cast<const S*>(in), chunks, stride, n, divisor);
  });
}

}  // namespace ebb::nn
