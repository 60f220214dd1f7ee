// The dispatchers of kernels/optim.h: each checks the preconditions that are cheap to check, then
// calls the cpu or the cuda backend by ctx.kind. Also the state and workspace sizes.
#include "kernels/optim.h"

#include <stdexcept>
#include <string>

#include "kernels/optim_scalar.h"

#if EBB_HAVE_CUDA
#define EBB_OPTIM_CUDA(call) cuda::call
#else
// A cuda LaunchContext cannot exist in a build without the cuda backend; say so if it does.
#define EBB_OPTIM_CUDA(call) throw std::logic_error("optim: cuda kernel in a build without CUDA")
#endif

namespace ebb::optim {
namespace {

// Throws std::invalid_argument naming the kernel and the precondition it broke.
void require(bool ok, const char* kernel, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("optim::") + kernel + ": " + what);
}

bool valid(FloatType t) {
  return t == FloatType::kF32 || t == FloatType::kBF16 || t == FloatType::kF16;
}

// The checks every optimizer shares: known storage types, and a master wherever the parameter
// is not fp32 itself.
void require_parameter(const char* kernel, FloatType param_t, const float* master,
                       FloatType grad_t) {
  require(valid(param_t) && valid(grad_t), kernel, "unknown FloatType");
  require(master != nullptr || param_t == FloatType::kF32, kernel,
          "a bf16 or fp16 parameter needs an fp32 master");
}

// The checks Adafactor and SM3 share: the shape, and the state of a matrix or of a vector.
void require_factored_state(const char* kernel, std::int64_t rows, std::int64_t cols,
                            const float* row, const float* col, const float* vector_state,
                            const float* workspace, std::int64_t workspace_floats) {
  require(rows >= 1 && cols >= 1, kernel, "rows and cols must be at least 1");
  if (cols == 1) {
    require(vector_state != nullptr, kernel, "a vector (cols == 1) needs its accumulator");
  } else {
    require(row != nullptr && col != nullptr, kernel, "a matrix needs row and col");
  }
  require(workspace != nullptr || workspace_floats == 0, kernel, "workspace is null");
}

}  // namespace

std::int64_t grad_stats_workspace_floats(std::int64_t n) { return 2 * chunk_count(n); }

void grad_stats(const LaunchContext& ctx, FloatType grad_t, const void* grad, std::int64_t n,
                float inv_scale, float* out, float* workspace) {
  require(valid(grad_t), "grad_stats", "unknown FloatType");
  require(n >= 0, "grad_stats", "n is negative");
  require(workspace != nullptr || n == 0, "grad_stats", "workspace is null");
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_OPTIM_CUDA(grad_stats(ctx.native_stream, grad_t, grad, n, inv_scale, out, workspace));
  } else {
    cpu::grad_stats(grad_t, grad, n, inv_scale, out, workspace);
  }
}

void combine_stats(const LaunchContext& ctx, const float* parts, int k, float* out) {
  require(k >= 0, "combine_stats", "k is negative");
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_OPTIM_CUDA(combine_stats(ctx.native_stream, parts, k, out));
  } else {
    cpu::combine_stats(parts, k, out);
  }
}

std::int64_t adamw_state_floats(std::int64_t rows, std::int64_t cols) { return 2 * rows * cols; }

void adamw(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* m,
           float* v, FloatType grad_t, const void* grad, std::int64_t n, const AdamWStep& s) {
  require_parameter("adamw", param_t, master, grad_t);
  require(n >= 0, "adamw", "n is negative");
  require(s.step >= 1, "adamw", "step counts from 1");
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_OPTIM_CUDA(adamw(ctx.native_stream, param_t, param, master, m, v, grad_t, grad, n, s));
  } else {
    cpu::adamw(param_t, param, master, m, v, grad_t, grad, n, s);
  }
}

std::int64_t adafactor_state_floats(std::int64_t rows, std::int64_t cols, bool first_moment) {
  const std::int64_t second_moment = cols == 1 ? rows : rows + cols;
  return second_moment + (first_moment ? rows * cols : 0);
}

std::int64_t adafactor_workspace_floats(std::int64_t rows, std::int64_t cols) {
  return kAdafactorScalarFloats + (cols == 1 ? chunk_count(rows) : rows);
}

void adafactor(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* row,
               float* col, float* v, float* m, FloatType grad_t, const void* grad,
               std::int64_t rows, std::int64_t cols, const AdafactorStep& s, float* workspace) {
  require_parameter("adafactor", param_t, master, grad_t);
  require_factored_state("adafactor", rows, cols, row, col, v, workspace,
                         adafactor_workspace_floats(rows, cols));
  require(s.step >= 1, "adafactor", "step counts from 1");
  require(!(s.beta1 > 0.0F) || m != nullptr, "adafactor", "beta1 > 0 needs the first moment m");
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_OPTIM_CUDA(adafactor(ctx.native_stream, param_t, param, master, row, col, v, m, grad_t,
                             grad, rows, cols, s, workspace));
  } else {
    cpu::adafactor(param_t, param, master, row, col, v, m, grad_t, grad, rows, cols, s, workspace);
  }
}

std::int64_t sm3_state_floats(std::int64_t rows, std::int64_t cols, bool momentum) {
  const std::int64_t accumulators = cols == 1 ? rows : rows + cols;
  return accumulators + (momentum ? rows * cols : 0);
}

std::int64_t sm3_workspace_floats(std::int64_t rows, std::int64_t cols) {
  return cols == 1 ? 0 : rows;  // the new row maxima, while the old ones are still read
}

void sm3(const LaunchContext& ctx, FloatType param_t, void* param, float* master, float* row,
         float* col, float* acc, float* m, FloatType grad_t, const void* grad, std::int64_t rows,
         std::int64_t cols, const Sm3Step& s, float* workspace) {
  require_parameter("sm3", param_t, master, grad_t);
  require_factored_state("sm3", rows, cols, row, col, acc, workspace,
                         sm3_workspace_floats(rows, cols));
  require(!(s.momentum > 0.0F) || m != nullptr, "sm3", "momentum > 0 needs m");
  if (ctx.kind == DeviceKind::kCuda) {
    EBB_OPTIM_CUDA(sm3(ctx.native_stream, param_t, param, master, row, col, acc, m, grad_t, grad,
                       rows, cols, s, workspace));
  } else {
    cpu::sm3(param_t, param, master, row, col, acc, m, grad_t, grad, rows, cols, s, workspace);
  }
}

}  // namespace ebb::optim
