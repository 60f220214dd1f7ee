// Helpers the optimizer kernel tests share (optim_test.cc for the cpu kernels, optim_cuda_test.cc
// for the cuda kernels): the optimizer configurations and storage types every backend is checked
// over, one parameter's model state on the host, seeded gradients, and a step of the reference
// (kernels/optim_reference.h) that both backends are compared with bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/nn.h"
#include "kernels/optim.h"
#include "kernels/optim_reference.h"
#include "kernels/optim_scalar.h"
#include "tests/kernels/nn_test_support.h"

namespace ebb::optim::test_support {

enum class Optimizer { kAdamW, kAdafactor, kSm3 };

// One optimizer and its hyperparameters (the step counter is set at each step).
struct Config {
  std::string name;
  Optimizer optimizer;
  AdamWStep adamw;
  AdafactorStep adafactor;
  Sm3Step sm3;
};

// The storage of a parameter and of its gradient.
struct Types {
  FloatType param;
  bool master;  // an fp32 master; always there for bf16 and fp16 parameters
  FloatType grad;
};

// One parameter's model state on the host: every buffer a step reads or writes. An empty vector
// is a buffer the configuration does not use, passed as null.
struct ModelState {
  std::vector<std::uint8_t> param;
  std::vector<float> master, m, v, row, col;
};

// gtest prints parameters with these (the names, not the bytes).
inline void PrintTo(const Config& config, std::ostream* os) { *os << config.name; }
inline void PrintTo(const Types& types, std::ostream* os) {
  *os << nn::float_type_name(types.param) << (types.master ? " with master" : "") << ", grad "
      << nn::float_type_name(types.grad);
}

inline float* data_or_null(std::vector<float>& buffer) {
  return buffer.empty() ? nullptr : buffer.data();
}

// A rows x cols parameter (cols == 1: a vector) drawn from a fixed seed, its state at zero.
inline ModelState initial_state(const Config& c, const Types& t, std::int64_t rows,
                                std::int64_t cols) {
  const std::int64_t n = rows * cols;
  const std::vector<float> x = nn::random_vector(n, 20, -2, 2);
  ModelState s;
  s.param.resize(n * nn::float_bytes(t.param));
  for (std::int64_t i = 0; i < n; i++) store(t.param, s.param.data(), i, x[i]);
  if (t.master) s.master = x;
  bool first_moment = true;
  if (c.optimizer == Optimizer::kAdamW) {
    s.v.assign(n, 0.0F);
  } else {
    if (cols == 1) {
      s.v.assign(n, 0.0F);
    } else {
      s.row.assign(rows, 0.0F);
      s.col.assign(cols, 0.0F);
    }
    first_moment =
        c.optimizer == Optimizer::kAdafactor ? c.adafactor.beta1 > 0.0F : c.sm3.momentum > 0.0F;
  }
  if (first_moment) s.m.assign(n, 0.0F);
  return s;
}

// A gradient: n values in [-1, 1) from `seed`, stored as t.
inline std::vector<std::uint8_t> random_gradient(FloatType t, std::int64_t n, std::uint32_t seed) {
  const std::vector<float> values = nn::random_vector(n, seed, -1, 1);
  std::vector<std::uint8_t> grad(values.size() * nn::float_bytes(t));
  for (std::size_t i = 0; i < values.size(); i++) {
    store(t, grad.data(), static_cast<std::int64_t>(i), values[i]);
  }
  return grad;
}

// Step `step` of c on s with the reference.
inline void reference_step(const Config& c, const Types& t, ModelState& s,
                           const std::vector<std::uint8_t>& grad, std::int64_t rows,
                           std::int64_t cols, int step) {
  void* p = s.param.data();
  float* master = data_or_null(s.master);
  float* m = data_or_null(s.m);
  float* v = data_or_null(s.v);
  float* row = data_or_null(s.row);
  float* col = data_or_null(s.col);
  switch (c.optimizer) {
    case Optimizer::kAdamW: {
      AdamWStep a = c.adamw;
      a.step = step;
      reference::adamw(t.param, p, master, m, v, t.grad, grad.data(), rows * cols, a);
      return;
    }
    case Optimizer::kAdafactor: {
      AdafactorStep a = c.adafactor;
      a.step = step;
      reference::adafactor(t.param, p, master, row, col, v, m, t.grad, grad.data(), rows, cols, a);
      return;
    }
    case Optimizer::kSm3:
      reference::sm3(t.param, p, master, row, col, v, m, t.grad, grad.data(), rows, cols, c.sm3);
      return;
  }
}

// Step `step` of c on s with the cpu kernels through the dispatchers (at the SIMD level in use).
inline void cpu_step(const Config& c, const Types& t, ModelState& s,
                     const std::vector<std::uint8_t>& grad, std::int64_t rows, std::int64_t cols,
                     int step) {
  const LaunchContext cpu{DeviceKind::kCpu, nullptr};
  void* p = s.param.data();
  float* master = data_or_null(s.master);
  float* m = data_or_null(s.m);
  float* v = data_or_null(s.v);
  float* row = data_or_null(s.row);
  float* col = data_or_null(s.col);
  switch (c.optimizer) {
    case Optimizer::kAdamW: {
      AdamWStep a = c.adamw;
      a.step = step;
      adamw(cpu, t.param, p, master, m, v, t.grad, grad.data(), rows * cols, a);
      return;
    }
    case Optimizer::kAdafactor: {
      AdafactorStep a = c.adafactor;
      a.step = step;
      std::vector<float> workspace(adafactor_workspace_floats(rows, cols));
      adafactor(cpu, t.param, p, master, row, col, v, m, t.grad, grad.data(), rows, cols, a,
                workspace.data());
      return;
    }
    case Optimizer::kSm3: {
      std::vector<float> workspace(sm3_workspace_floats(rows, cols));
      sm3(cpu, t.param, p, master, row, col, v, m, t.grad, grad.data(), rows, cols, c.sm3,
          workspace.data());
      return;
    }
  }
}

// Every buffer of a and b, bit for bit.
inline void expect_same_state(const ModelState& a, const ModelState& b, const std::string& what) {
  nn::expect_same_bits(a.param, b.param, what + ": param");
  nn::expect_same_bits(a.master, b.master, what + ": master");
  nn::expect_same_bits(a.m, b.m, what + ": m");
  nn::expect_same_bits(a.v, b.v, what + ": v");
  nn::expect_same_bits(a.row, b.row, what + ": row");
  nn::expect_same_bits(a.col, b.col, what + ": col");
}

// Each optimizer plainly, and with every option.
inline const Config kConfigs[] = {
    {"AdamW",
     Optimizer::kAdamW,
     AdamWStep{.lr = 1e-2F, .weight_decay = 0.05F, .grad_scale = 0.5F},
     {},
     {}},
    {"Adafactor", Optimizer::kAdafactor, {}, AdafactorStep{.lr = 1e-2F, .grad_scale = 0.5F}, {}},
    // Every option, and a d that clips.
    {"AdafactorRelativeStepFirstMomentDecayClip",
     Optimizer::kAdafactor,
     {},
     AdafactorStep{.relative_step = true,
                   .clip_d = 0.25F,
                   .beta1 = 0.9F,
                   .weight_decay = 0.1F,
                   .grad_scale = 2.0F},
     {}},
    {"Sm3", Optimizer::kSm3, {}, {}, Sm3Step{.lr = 1e-2F, .grad_scale = 0.5F}},
    {"Sm3MomentumDecay",
     Optimizer::kSm3,
     {},
     {},
     Sm3Step{.lr = 1e-2F, .momentum = 0.9F, .weight_decay = 0.1F, .grad_scale = 0.5F}},
};

inline const Types kTypes[] = {
    {FloatType::kF32, false, FloatType::kF32}, {FloatType::kF32, false, FloatType::kBF16},
    {FloatType::kF32, true, FloatType::kF16},  {FloatType::kBF16, true, FloatType::kBF16},
    {FloatType::kBF16, true, FloatType::kF32}, {FloatType::kF16, true, FloatType::kF16},
    {FloatType::kF16, true, FloatType::kBF16},
};

inline std::string test_name(const testing::TestParamInfo<std::tuple<Config, Types>>& info) {
  const auto& [config, types] = info.param;
  return config.name + "_" + std::string(nn::float_type_name(types.param)) +
         (types.master ? "Master" : "") + "_grad" + std::string(nn::float_type_name(types.grad));
}

}  // namespace ebb::optim::test_support
