#include "tools/train/op_work.h"

namespace ebb::train {
namespace {

// FLOPs per element of the ops counted per element (each a count of the adds, multiplies,
// divides and transcendentals of llm.c's reference kernel of the op).
constexpr double kLayerNormFlops = 8;             // mean, variance, normalize, scale and shift
constexpr double kLayerNormBackwardFlops = 14;    // the two row reductions, dinp, dweight, dbias
constexpr double kGeluFlops = 9;                  // 0.5 x (1 + tanh(k (x + 0.044715 x^3)))
constexpr double kGeluBackwardFlops = 16;         // its derivative times dout
constexpr double kSoftmaxFlops = 5;               // max, subtract, exp, sum, divide
constexpr double kSoftmaxBackwardFlops = 4;       // sum(att * datt), att * (datt - sum)
constexpr double kCrossEntropyBackwardFlops = 2;  // (probs - onehot) * dloss
constexpr double kAdamWFlops = 12;  // two moments, bias corrections, sqrt, divide, decay, step

constexpr double kF32 = 4;  // bytes of an f32, an i32

double bytes_of(DType dtype) { return static_cast<double>(dtype_bytes(dtype)); }

// Entries of a causal T x T score matrix that are computed: t attends to 0..t.
double causal_entries(double seq) { return seq * (seq + 1) / 2; }

KernelWork work(KernelClass kind, double flops, double bytes,
                MathPrecision precision = MathPrecision::kFp32) {
  return KernelWork{.kind = kind, .flops = flops, .bytes = bytes, .precision = precision};
}

}  // namespace

MathPrecision matmul_precision(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return MathPrecision::kBf16;
    case DType::kF16:
      return MathPrecision::kFp16;
    default:
      return MathPrecision::kFp32;
  }
}

KernelWork matmul_work(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias,
                       DType dtype) {
  const double n = static_cast<double>(rows);
  const double c = static_cast<double>(in);
  const double oc = static_cast<double>(out);
  const double a = bytes_of(dtype);
  const double flops = 2 * n * c * oc + (bias ? n * oc : 0);
  const double bytes = (n * c + oc * c + (bias ? oc : 0) + n * oc) * a;
  return work(KernelClass::kGemm, flops, bytes, matmul_precision(dtype));
}

KernelWork matmul_backward_work(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias,
                                DType dtype) {
  const double n = static_cast<double>(rows);
  const double c = static_cast<double>(in);
  const double oc = static_cast<double>(out);
  const double a = bytes_of(dtype);
  // dinp = dout x weight and dweight = dout^T x in: two matmuls of the forward's size.
  const double flops = 4 * n * c * oc + (bias ? n * oc : 0);
  const double read = (n * oc + n * c + oc * c) * a;
  const double written = n * c * a + oc * c * kF32 + (bias ? oc * kF32 : 0);
  return work(KernelClass::kGemm, flops, read + written, matmul_precision(dtype));
}

KernelWork attention_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                          std::int64_t heads, DType dtype) {
  const double b = static_cast<double>(batch);
  const double t = static_cast<double>(seq);
  const double c = static_cast<double>(channels);
  const double nh = static_cast<double>(heads);
  const double a = bytes_of(dtype);
  // Per causal entry of each head: q.k and att.v over head_size = C / NH channels (2 x 2
  // head_size FLOPs, NH heads making 4C), and the softmax.
  const double flops = b * causal_entries(t) * (4 * c + kSoftmaxFlops * nh);
  const double bytes = (b * t * 3 * c + b * t * c + b * nh * t * t) * a;  // qkv, out, att
  return work(KernelClass::kAttention, flops, bytes, matmul_precision(dtype));
}

KernelWork attention_backward_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                                   std::int64_t heads, DType dtype) {
  const double b = static_cast<double>(batch);
  const double t = static_cast<double>(seq);
  const double c = static_cast<double>(channels);
  const double nh = static_cast<double>(heads);
  const double a = bytes_of(dtype);
  // Per causal entry: datt = dout.v, dv += att dout, dq += dpreatt k, dk += dpreatt q (four
  // products over head_size: 8C over the heads), and the softmax's backward.
  const double flops = b * causal_entries(t) * (8 * c + kSoftmaxBackwardFlops * nh);
  // dout, qkv and att read; dqkv written.
  const double bytes = (b * t * c + b * t * 3 * c + b * nh * t * t + b * t * 3 * c) * a;
  return work(KernelClass::kAttention, flops, bytes, matmul_precision(dtype));
}

KernelWork layernorm_work(std::int64_t rows, std::int64_t channels, DType dtype) {
  const double n = static_cast<double>(rows);
  const double c = static_cast<double>(channels);
  const double a = bytes_of(dtype);
  // in, weight and bias read; out, mean and rstd written.
  const double bytes = (n * c + 2 * c + n * c) * a + 2 * n * kF32;
  return work(KernelClass::kReduction, kLayerNormFlops * n * c, bytes);
}

KernelWork layernorm_backward_work(std::int64_t rows, std::int64_t channels, DType dtype) {
  const double n = static_cast<double>(rows);
  const double c = static_cast<double>(channels);
  const double a = bytes_of(dtype);
  // dout, in, weight, mean and rstd read; dinp, dweight and dbias written.
  const double bytes = (2 * n * c + c + n * c) * a + 2 * n * kF32 + 2 * c * kF32;
  return work(KernelClass::kReduction, kLayerNormBackwardFlops * n * c, bytes);
}

KernelWork gelu_work(std::int64_t elements, DType dtype) {
  const double n = static_cast<double>(elements);
  return work(KernelClass::kElementwise, kGeluFlops * n, 2 * n * bytes_of(dtype));
}

KernelWork gelu_backward_work(std::int64_t elements, DType dtype) {
  const double n = static_cast<double>(elements);
  return work(KernelClass::kElementwise, kGeluBackwardFlops * n, 3 * n * bytes_of(dtype));
}

KernelWork add_work(std::int64_t elements, DType dtype) {
  const double n = static_cast<double>(elements);
  return work(KernelClass::kElementwise, n, 3 * n * bytes_of(dtype));
}

KernelWork embedding_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                          DType dtype) {
  const double n = static_cast<double>(batch) * static_cast<double>(seq);
  const double t = static_cast<double>(seq);
  const double c = static_cast<double>(channels);
  const double a = bytes_of(dtype);
  // tokens read; the N rows of wte they name and wpe's T rows read; out written.
  const double bytes = n * kF32 + (n * c + t * c + n * c) * a;
  return work(KernelClass::kElementwise, n * c, bytes);
}

KernelWork embedding_backward_work(std::int64_t batch, std::int64_t seq, std::int64_t channels,
                                   std::int64_t vocab, DType dtype) {
  const double n = static_cast<double>(batch) * static_cast<double>(seq);
  const double t = static_cast<double>(seq);
  const double c = static_cast<double>(channels);
  const double v = static_cast<double>(vocab);
  // dout and tokens read; all of dwte and dwpe written (each row of dout added into both).
  const double bytes = n * c * bytes_of(dtype) + n * kF32 + (v * c + t * c) * kF32;
  return work(KernelClass::kElementwise, 2 * n * c, bytes);
}

KernelWork cross_entropy_work(std::int64_t rows, std::int64_t vocab, DType dtype) {
  const double n = static_cast<double>(rows);
  const double v = static_cast<double>(vocab);
  // logits and targets read; probs and losses written.
  const double bytes = 2 * n * v * bytes_of(dtype) + 2 * n * kF32;
  return work(KernelClass::kReduction, kSoftmaxFlops * n * v, bytes);
}

KernelWork cross_entropy_backward_work(std::int64_t rows, std::int64_t vocab, DType dtype) {
  const double n = static_cast<double>(rows);
  const double v = static_cast<double>(vocab);
  // probs and targets read; dlogits written.
  const double bytes = 2 * n * v * bytes_of(dtype) + n * kF32;
  return work(KernelClass::kElementwise, kCrossEntropyBackwardFlops * n * v, bytes);
}

KernelWork mean_work(std::int64_t elements) {
  const double n = static_cast<double>(elements);
  return work(KernelClass::kReduction, n, n * kF32 + kF32);
}

KernelWork accumulate_work(std::int64_t elements, DType grad_dtype) {
  const double n = static_cast<double>(elements);
  // The f32 gradient read; the buffer read and written.
  return work(KernelClass::kElementwise, n, n * kF32 + 2 * n * bytes_of(grad_dtype));
}

KernelWork adamw_work(std::int64_t elements, DType param_dtype, DType grad_dtype) {
  const double n = static_cast<double>(elements);
  const bool master = param_dtype != DType::kF32;
  // Read and written: the two moments and the f32 weights (the master copy, or the parameters
  // themselves in f32); read: the gradient; written: a 16-bit working copy beside a master.
  const double bytes =
      n * (2 * 3 * kF32 + bytes_of(grad_dtype) + (master ? bytes_of(param_dtype) : 0));
  return work(KernelClass::kElementwise, kAdamWFlops * n, bytes);
}

}  // namespace ebb::train
