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
// (a) disallows atomics, (b) uses pedantic math, so no TF32 or other reduced-precision
// emulation even if the environment asks for it, and (c) gives cuBLAS no workspace: with the
// default per-stream workspace pool cuBLAS may pick different algorithms when several streams
// run at once, and a shared user workspace would race between streams; workspace-free
// algorithms avoid both.
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
#include <utility>
#include <vector>

#include "kernels/cuda/nn_cuda.h"
#include "kernels/cuda/nn_cuda_launch.h"

namespace ebb::nn::cuda {
namespace {

// The cuBLAS entry points used, at their cublas_v2.h signatures.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetWorkspace_v2) set_workspace = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSetAtomicsMode) set_atomics_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
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
    check_cublas(api.set_math_mode(handle, CUBLAS_PEDANTIC_MATH), kernel, "cublasSetMathMode");
    check_cublas(api.set_atomics_mode(handle, CUBLAS_ATOMICS_NOT_ALLOWED), kernel,
                 "cublasSetAtomicsMode");
    return handle;
  }

 private:
  std::vector<std::pair<int, cublasHandle_t>> handles_;
};

// The calling thread's handle for the current device, bound to `stream` with no workspace.
cublasHandle_t handle_for(cudaStream_t stream, const char* kernel) {
  thread_local ThreadHandles handles;
  cublasHandle_t handle = handles.get(kernel);
  const CublasApi& api = cublas();
  // SetStream resets the workspace to the default pool, so the workspace is set after it.
  check_cublas(api.set_stream(handle, stream), kernel, "cublasSetStream");
  check_cublas(api.set_workspace(handle, nullptr, 0), kernel, "cublasSetWorkspace");
  return handle;
}

// C := op(A) op(B), all column-major, beta 0 so C is overwritten (and not read).
void sgemm(cudaStream_t stream, const char* kernel, cublasOperation_t op_a, cublasOperation_t op_b,
           int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
           int ldc) {
  cublasHandle_t handle = handle_for(stream, kernel);
  const float alpha = 1.0F;
  const float beta = 0.0F;
  check_cublas(cublas().sgemm(handle, op_a, op_b, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc),
               kernel, "cublasSgemm");
}

__global__ void add_bias_kernel(float* out, const float* bias, std::int64_t n, int OC) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    out[i] += bias[i % OC];
  }
}

}  // namespace

void matmul_forward(void* stream, float* out, const float* inp, const float* weight,
                    const float* bias, int N, int C, int OC) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // Column-major out^T [OC, N] = (W as col-major [C, OC])^T * (inp as col-major [C, N]).
  sgemm(s, "matmul_forward", CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, out, OC);
  if (bias != nullptr) {
    const std::int64_t n = std::int64_t{N} * OC;
    add_bias_kernel<<<grid_for(n), kBlockThreads, 0, s>>>(out, bias, n, OC);
    check_launch("matmul_forward (bias)");
  }
}

void matmul_backward(void* stream, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // dinp[N,C] = dout[N,OC] W[OC,C]; column-major dinp^T [C, N] = (W as [C, OC]) (dout as
  // [OC, N]).
  sgemm(s, "matmul_backward (dinp)", CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, dinp,
        C);
  // dweight[OC,C] = dout^T inp; column-major dweight^T [C, OC] = (inp as [C, N]) (dout as
  // [OC, N])^T.
  sgemm(s, "matmul_backward (dweight)", CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC,
        dweight, C);
  if (dbias != nullptr) column_sums(s, dbias, dout, N, OC, "matmul_backward (dbias)");
}

}  // namespace ebb::nn::cuda
