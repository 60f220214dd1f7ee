// The cuda backend of kernels/nn.h, matmul part: forward and backward GEMMs on cuBLAS, plus
// the bias kernels (bias add; dbias through the deterministic column sums of nn_cuda.cu).
//
// cuBLAS is loaded at run time with dlopen ("libcublas.so.13", then "libcublas.so"), not
// linked: ebb's binaries must start on machines without it, and the GPU bundle stays small.
// <cublas_v2.h> is used for its types and constants only; every call goes through a pointer
// from dlsym. The library is loaded once per process (thread-safe static initialization); a
// load failure is remembered and thrown by every matmul.
//
// Each thread keeps one cuBLAS handle per GPU (a handle is tied to the device current when it
// is created), bound to the caller's stream on every call. For determinism each call also
// (a) disallows atomics, (b) sets the math mode of its GEMM: for fp32 (cublasSgemm) pedantic
// math, so no TF32 or other reduced-precision emulation even if the environment asks for it; for
// 16-bit (cublasGemmEx, A, B and C in bf16 or fp16, CUBLAS_COMPUTE_32F) the default math, whose
// tensor cores multiply 16-bit values exactly and accumulate in fp32, with
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION, so that split-K partial sums are reduced in
// fp32 rather than in the 16-bit output type, and (c) gives cuBLAS no workspace: with the
// default per-stream workspace pool cuBLAS may pick different algorithms when several streams
// run at once, and a shared user workspace would race between streams; workspace-free
// algorithms avoid both.
//
// A 16-bit forward with a bias adds it inside the GEMM: out is first filled with the bias rows
// and the GEMM runs with beta = 1, so cuBLAS adds the fp32 sum and the bias in fp32 and rounds
// out once (a bias kernel after the GEMM would round twice). dweight stays fp32: its GEMM reads
// 16-bit operands and writes fp32 (C type CUDA_R_32F).
//
// Row-major to cuBLAS's column-major: a row-major [R, K] matrix read column-major is its
// transpose [K, R] with leading dimension K. So each GEMM computes the transpose of its output
// (out^T = W inp^T, and so on); the comment at each call gives the mapping.
//
// Thread safety: reentrant; the handle cache is thread-local.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_float.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

// cublasGemmEx's C entry point (cublas_api.h also declares a C++ overload of that name, so
// decltype cannot name it).
using GemmExFn = cublasStatus_t (*)(cublasHandle_t handle, cublasOperation_t transa,
                                    cublasOperation_t transb, int m, int n, int k,
                                    const void* alpha, const void* A, cudaDataType Atype, int lda,
                                    const void* B, cudaDataType Btype, int ldb, const void* beta,
                                    void* C, cudaDataType Ctype, int ldc,
                                    cublasComputeType_t computeType, cublasGemmAlgo_t algo);

// The cuBLAS entry points used, at their cublas_v2.h signatures.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetWorkspace_v2) set_workspace = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSetAtomicsMode) set_atomics_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  GemmExFn gemm_ex = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
  std::string error;  // why loading failed; empty when the pointers above are all set
};

template <typename Fn>
bool load_symbol(void* library, const char* name, Fn& fn, std::string& error) {
  void* address = dlsym(library, name);
  if (address == nullptr) {
    const char* why = dlerror();
    error = std::string("nn: matmul needs cuBLAS: the loaded library has no ") + name + " (" +
            (why != nullptr ? why : "no dlerror") + ")";
    return false;
  }
  fn = reinterpret_cast<Fn>(address);
  return true;
}

CublasApi load_cublas() {
  CublasApi api;
  // The toolkit's major version first; the unversioned name is what a development install or
  // a directory on LD_LIBRARY_PATH may provide.
  constexpr const char* kVersioned = "libcublas.so.13";
  constexpr const char* kUnversioned = "libcublas.so";
  void* library = dlopen(kVersioned, RTLD_NOW | RTLD_LOCAL);
  std::string versioned_error;
  if (library == nullptr) {
    const char* why = dlerror();
    versioned_error = why != nullptr ? why : "no dlerror";
    library = dlopen(kUnversioned, RTLD_NOW | RTLD_LOCAL);
  }
  if (library == nullptr) {
    const char* why = dlerror();
    api.error = std::string("nn: matmul needs cuBLAS: could not load ") + kVersioned + " (" +
                versioned_error + ") or " + kUnversioned + " (" +
                (why != nullptr ? why : "no dlerror") +
                "); put the directory holding it on LD_LIBRARY_PATH";
    return api;
  }
  // Never dlclose'd: handles on other threads may outlive any point where it would be safe.
  if (!load_symbol(library, "cublasCreate_v2", api.create, api.error) ||
      !load_symbol(library, "cublasDestroy_v2", api.destroy, api.error) ||
      !load_symbol(library, "cublasSetStream_v2", api.set_stream, api.error) ||
      !load_symbol(library, "cublasSetWorkspace_v2", api.set_workspace, api.error) ||
      !load_symbol(library, "cublasSetMathMode", api.set_math_mode, api.error) ||
      !load_symbol(library, "cublasSetAtomicsMode", api.set_atomics_mode, api.error) ||
      !load_symbol(library, "cublasSgemm_v2", api.sgemm, api.error) ||
      !load_symbol(library, "cublasGemmEx", api.gemm_ex, api.error) ||
      !load_symbol(library, "cublasGetStatusString", api.status_string, api.error)) {
    api.create = nullptr;  // loaded only in part: unusable
  }
  return api;
}

const CublasApi& cublas() {
  static const CublasApi kApi = load_cublas();  // C++ static init: once, thread-safe
  if (!kApi.error.empty()) throw std::runtime_error(kApi.error);
  return kApi;
}

void check_cublas(cublasStatus_t status, const char* kernel, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const char* words = cublas().status_string(status);
  throw std::runtime_error(std::string("nn: ") + kernel + ": " + call +
                           " failed: " + (words != nullptr ? words : "unknown cuBLAS status") +
                           " (" + std::to_string(static_cast<int>(status)) + ")");
}

// This thread's handles, one per device ordinal, destroyed when the thread exits.
class ThreadHandles {
 public:
  ThreadHandles() = default;
  ThreadHandles(const ThreadHandles&) = delete;
  ThreadHandles& operator=(const ThreadHandles&) = delete;
  ~ThreadHandles() {
    for (auto& [device, handle] : handles_) {
      // Errors are ignored: at thread exit nobody is left to report them to.
      int previous = 0;
      if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
        (void)cublas().destroy(handle);
        (void)cudaSetDevice(previous);
      }
      (void)cudaGetLastError();
    }
  }

  // The handle for the current device, created on first use.
  cublasHandle_t get(const char* kernel) {
    int device = 0;
    check_call(cudaGetDevice(&device), kernel, "cudaGetDevice");
    for (const auto& [d, handle] : handles_) {
      if (d == device) return handle;
    }
    const CublasApi& api = cublas();
    cublasHandle_t handle = nullptr;
    check_cublas(api.create(&handle), kernel, "cublasCreate");
    handles_.emplace_back(device, handle);
    check_cublas(api.set_atomics_mode(handle, CUBLAS_ATOMICS_NOT_ALLOWED), kernel,
                 "cublasSetAtomicsMode");
    return handle;
  }

 private:
  std::vector<std::pair<int, cublasHandle_t>> handles_;
};

// The calling thread's handle for the current device, bound to `stream` with no workspace and
// in math mode `math`.
cublasHandle_t handle_for(cudaStream_t stream, cublasMath_t math, const char* kernel) {
  thread_local ThreadHandles handles;
  cublasHandle_t handle = handles.get(kernel);
  const CublasApi& api = cublas();
  check_cublas(api.set_math_mode(handle, math), kernel, "cublasSetMathMode");
  // SetStream resets the workspace to the default pool, so the workspace is set after it.
  check_cublas(api.set_stream(handle, stream), kernel, "cublasSetStream");
  check_cublas(api.set_workspace(handle, nullptr, 0), kernel, "cublasSetWorkspace");
  return handle;
}

// C := op(A) op(B), all column-major, beta 0 so C is overwritten (and not read).
void sgemm(cudaStream_t stream, const char* kernel, cublasOperation_t op_a, cublasOperation_t op_b,
           int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
           int ldc) {
  cublasHandle_t handle = handle_for(stream, CUBLAS_PEDANTIC_MATH, kernel);
  const float alpha = 1.0F;
  const float beta = 0.0F;
  check_cublas(cublas().sgemm(handle, op_a, op_b, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc),
               kernel, "cublasSgemm");
}

// The cuBLAS type of storage type S.
template <typename S>
constexpr cudaDataType data_type() {
  if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return CUDA_R_16BF;
  } else if constexpr (std::is_same_v<S, __half>) {
    return CUDA_R_16F;
  } else {
    return CUDA_R_32F;
  }
}

// C := op(A) op(B) + beta C, column-major, A and B 16-bit of type S, C of type Out (S or float),
// summed in fp32 and C rounded once. beta is 0 (C is overwritten and not read) or 1.
template <typename S, typename Out>
void gemm_16bit(cudaStream_t stream, const char* kernel, cublasOperation_t op_a,
                cublasOperation_t op_b, int m, int n, int k, const S* a, int lda, const S* b,
                int ldb, float beta, Out* c, int ldc) {
  const auto math = static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                              CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  cublasHandle_t handle = handle_for(stream, math, kernel);
  const float alpha = 1.0F;
  check_cublas(cublas().gemm_ex(handle, op_a, op_b, m, n, k, &alpha, a, data_type<S>(), lda, b,
                                data_type<S>(), ldb, &beta, c, data_type<Out>(), ldc,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               kernel, "cublasGemmEx");
}

__global__ void add_bias_kernel(float* out, const float* bias, std::int64_t n, int OC) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    out[i] += bias[i % OC];
  }
}

// out[i] = bias[i % OC]: every row of out a copy of the bias, for a GEMM with beta = 1.
template <typename S>
__global__ void bias_rows_kernel(S* out, const S* bias, std::int64_t n, int OC) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    out[i] = bias[i % OC];
  }
}

}  // namespace

void matmul_forward(void* stream, FloatType t, void* out, const void* inp, const void* weight,
                    const void* bias, int N, int C, int OC) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const std::int64_t n = std::int64_t{N} * OC;
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    S* out_s = static_cast<S*>(out);
    const S* inp_s = static_cast<const S*>(inp);
    const S* weight_s = static_cast<const S*>(weight);
    const S* bias_s = static_cast<const S*>(bias);
    // Column-major out^T [OC, N] = (W as col-major [C, OC])^T * (inp as col-major [C, N]).
    if constexpr (kIsFloat<S>) {
      sgemm(s, "matmul_forward", CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight_s, C, inp_s, C, out_s,
            OC);
      if (bias_s != nullptr) {
        add_bias_kernel<<<grid_for(n), kBlockThreads, 0, s>>>(out_s, bias_s, n, OC);
        check_launch("matmul_forward (bias)");
      }
    } else {
      if (bias_s != nullptr) {
        bias_rows_kernel<S><<<grid_for(n), kBlockThreads, 0, s>>>(out_s, bias_s, n, OC);
        check_launch("matmul_forward (bias)");
      }
      gemm_16bit(s, "matmul_forward", CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight_s, C, inp_s, C,
                 bias_s != nullptr ? 1.0F : 0.0F, out_s, OC);
    }
  });
}

void matmul_backward(void* stream, FloatType t, void* dinp, float* dweight, float* dbias,
                     const void* dout, const void* inp, const void* weight, int N, int C, int OC) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  with_storage(t, [&]<typename S>(StorageTag<S>) {
    S* dinp_s = static_cast<S*>(dinp);
    const S* dout_s = static_cast<const S*>(dout);
    const S* inp_s = static_cast<const S*>(inp);
    const S* weight_s = static_cast<const S*>(weight);
    // dinp[N,C] = dout[N,OC] W[OC,C]; column-major dinp^T [C, N] = (W as [C, OC]) (dout as
    // [OC, N]).
    // dweight[OC,C] = dout^T inp; column-major dweight^T [C, OC] = (inp as [C, N]) (dout as
    // [OC, N])^T.
    if constexpr (kIsFloat<S>) {
      sgemm(s, "matmul_backward (dinp)", CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight_s, C, dout_s,
            OC, dinp_s, C);
      sgemm(s, "matmul_backward (dweight)", CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp_s, C, dout_s,
            OC, dweight, C);
    } else {
      gemm_16bit(s, "matmul_backward (dinp)", CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight_s, C,
                 dout_s, OC, 0.0F, dinp_s, C);
      gemm_16bit(s, "matmul_backward (dweight)", CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp_s, C,
                 dout_s, OC, 0.0F, dweight, C);
    }
  });
  if (dbias != nullptr) column_sums(s, t, dbias, dout, N, OC, "matmul_backward (dbias)");
}

}  // namespace ebb::nn::cuda
