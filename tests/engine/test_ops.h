// Small deterministic CPU ops for the engine tests: each OpFn reads args.inputs and writes
// args.outputs directly (on the cpu device, device pointers are host addresses). Every op is a
// pure function of its inputs with a fixed evaluation order, so a replay gives the same bits.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/ebb.h"

namespace ebb::test_ops {

inline std::unique_ptr<Device> make_cpu_device(std::size_t capacity_bytes = 256 * kMiB) {
  DeviceOptions options;
  options.capacity_bytes = capacity_bytes;
  options.page_bytes = 64 * kKiB;  // fine-grained budgets for expandable segments
  return create_device(options).value();
}

inline TensorSpec f32(std::string name, std::vector<std::int64_t> shape,
                      TensorKind kind = TensorKind::kActivation) {
  return TensorSpec{std::move(name), std::move(shape), DType::kF32, kind};
}

inline const float* in(const OpArgs& a, std::size_t i) {
  return static_cast<const float*>(a.inputs[i]);
}
inline float* out(const OpArgs& a, std::size_t i) { return static_cast<float*>(a.outputs[i]); }

// out = a + b
inline OpFn add(std::size_t n) {
  return [n](const OpArgs& a) {
    for (std::size_t i = 0; i < n; ++i) out(a, 0)[i] = in(a, 0)[i] + in(a, 1)[i];
  };
}
// out = a * b
inline OpFn mul(std::size_t n) {
  return [n](const OpArgs& a) {
    for (std::size_t i = 0; i < n; ++i) out(a, 0)[i] = in(a, 0)[i] * in(a, 1)[i];
  };
}
// out = a * s + t
inline OpFn scale(std::size_t n, float s, float t = 0) {
  return [n, s, t](const OpArgs& a) {
    for (std::size_t i = 0; i < n; ++i) out(a, 0)[i] = in(a, 0)[i] * s + t;
  };
}
// out = tanh(a)
inline OpFn tanh_op(std::size_t n) {
  return [n](const OpArgs& a) {
    for (std::size_t i = 0; i < n; ++i) out(a, 0)[i] = std::tanh(in(a, 0)[i]);
  };
}
// out = grad * (1 - y^2), the gradient through y = tanh(x)
inline OpFn tanh_backward(std::size_t n) {
  return [n](const OpArgs& a) {
    for (std::size_t i = 0; i < n; ++i) {
      const float y = in(a, 1)[i];
      out(a, 0)[i] = in(a, 0)[i] * (1.0F - y * y);
    }
  };
}
// out[0] = sum of a, in index order
inline OpFn sum(std::size_t n) {
  return [n](const OpArgs& a) {
    float s = 0;
    for (std::size_t i = 0; i < n; ++i) s += in(a, 0)[i];
    out(a, 0)[0] = s;
  };
}
// C[m,n] = op(A) op(B), with op(A) of shape [m,k] (A stored [k,m] when trans_a), op(B) of shape
// [k,n] (B stored [n,k] when trans_b). Naive, fixed summation order.
inline OpFn matmul(std::size_t m, std::size_t k, std::size_t n, bool trans_a = false,
                   bool trans_b = false) {
  return [=](const OpArgs& args) {
    const float* a = in(args, 0);
    const float* b = in(args, 1);
    float* c = out(args, 0);
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        float s = 0;
        for (std::size_t p = 0; p < k; ++p) {
          const float av = trans_a ? a[p * m + i] : a[i * k + p];
          const float bv = trans_b ? b[j * k + p] : b[p * n + j];
          s += av * bv;
        }
        c[i * n + j] = s;
      }
    }
  };
}

// Deterministic pseudo-random floats in [-1, 1).
inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::vector<float> v(n);
  std::uint32_t x = seed * 2654435761U + 1;
  for (float& f : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    f = static_cast<float>(x % 20000) / 10000.0F - 1.0F;
  }
  return v;
}

}  // namespace ebb::test_ops
