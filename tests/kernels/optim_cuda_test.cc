// Tests of the cuda optimizer kernels (kernels/cuda/optim_cuda.cu), called through the
// dispatching ebb::optim API inside Stream::launch on a cuda Device, against the references
// (kernels/optim_reference.h) run on the host, bit for bit:
// - grad_stats with a NaN and infinities, and of finite gradients, in fp32, bf16 and fp16, and
//   combine_stats adding in order;
// - every optimizer over several steps, for fp32, bf16 and fp16 parameters and gradients, on
//   shapes that need more than one block in every kernel (rows and columns past 256, more than
//   256 chunks) and on the smallest ones.
// After every step the whole model state (parameter, master, moments, accumulators) is
// downloaded and compared; workspaces start as NaN, so a partial sum read before it is written
// shows. Every test skips itself where no GPU is visible, so the binary runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/device.h"
#include "kernels/nn.h"
#include "kernels/optim.h"
#include "kernels/optim_reference.h"
#include "kernels/optim_scalar.h"
#include "tests/kernels/cuda_kernel_test.h"
#include "tests/kernels/nn_test_support.h"
#include "tests/kernels/optim_test_support.h"

namespace ebb::optim {
namespace {

using nn::expect_same_bits;
using nn::random_vector;
using test_support::Config;
using test_support::initial_state;
using test_support::kConfigs;
using test_support::kTypes;
using test_support::ModelState;
using test_support::Optimizer;
using test_support::random_gradient;
using test_support::reference_step;
using test_support::test_name;
using test_support::Types;

using ::ebb::test_support::check;
using ::ebb::test_support::value;

class OptimCudaTest : public ::ebb::test_support::CudaKernelTest {
 protected:
  // A workspace of `floats` floats, filled with NaN so that a partial read before it is written
  // shows.
  float* workspace(std::int64_t floats) {
    return upload(std::vector<float>(floats, std::numeric_limits<float>::quiet_NaN()));
  }
};

// --- gradient statistics -------------------------------------------------------------------------

TEST_F(OptimCudaTest, GradStatsMatchesReferenceBitForBit) {
  const std::int64_t n = 300 * kChunk + 1001;  // more than one block of chunks and of partials
  std::vector<float> values = random_vector(n, 1, -3, 3);
  for (const bool special : {false, true}) {
    if (special) {
      values[5] = std::numeric_limits<float>::quiet_NaN();
      values[kChunk + 1] = std::numeric_limits<float>::infinity();
      values[n - 1] = -std::numeric_limits<float>::infinity();
    }
    for (const FloatType t : {FloatType::kF32, FloatType::kBF16, FloatType::kF16}) {
      std::vector<std::uint8_t> grad(n * nn::float_bytes(t));
      for (std::int64_t i = 0; i < n; i++) store(t, grad.data(), i, values[i]);
      std::vector<float> expected(2);
      reference::grad_stats(t, grad.data(), n, 0.5F, expected.data());
      const std::uint8_t* d_grad = upload(grad);
      float* d_out = workspace(2);
      float* d_workspace = workspace(grad_stats_workspace_floats(n));
      run([&](const LaunchContext& ctx) {
        grad_stats(ctx, t, d_grad, n, 0.5F, d_out, d_workspace);
      });
      const std::vector<float> out = download(d_out, 2);
      EXPECT_EQ(out[1], special ? 3.0F : 0.0F) << nn::float_type_name(t);
      expect_same_bits(out, expected, std::string(nn::float_type_name(t)));
    }
  }
  float* d_out = workspace(2);
  run([&](const LaunchContext& ctx) {
    grad_stats(ctx, FloatType::kF32, nullptr, 0, 1.0F, d_out, nullptr);
  });
  EXPECT_EQ(download(d_out, 2), (std::vector<float>{0.0F, 0.0F}));
}

TEST_F(OptimCudaTest, CombineStatsAddsInOrder) {
  // In order, 1e8 + 1 rounds back to 1e8 and the total is 0; any other order gives 1. 300 parts:
  // more than the block stages at once.
  std::vector<float> parts(600, 0.0F);
  parts[0] = 1e8F;
  parts[2] = 1.0F;
  parts[598] = -1e8F;
  parts[599] = 5.0F;
  const float* d_parts = upload(parts);
  float* d_out = workspace(2);
  run([&](const LaunchContext& ctx) { combine_stats(ctx, d_parts, 300, d_out); });
  EXPECT_EQ(download(d_out, 2), (std::vector<float>{0.0F, 5.0F}));
}

// --- optimizers ----------------------------------------------------------------------------------

// Device pointers of a model state (null where the host vector is empty).
struct DeviceState {
  void* param;
  float *master, *m, *v, *row, *col;
};

class OptimCudaStepTest : public OptimCudaTest,
                          public testing::WithParamInterface<std::tuple<Config, Types>> {
 protected:
  // Step `step` of c: on the device state d, or with the reference on the host state h.
  void step(const Config& c, const Types& t, const DeviceState& d, ModelState& h,
            const std::vector<std::uint8_t>& grad, std::int64_t rows, std::int64_t cols, int step) {
    const std::uint8_t* d_grad = upload(grad);
    reference_step(c, t, h, grad, rows, cols, step);
    const std::int64_t n = rows * cols;
    switch (c.optimizer) {
      case Optimizer::kAdamW: {
        AdamWStep a = c.adamw;
        a.step = step;
        run([&](const LaunchContext& ctx) {
          adamw(ctx, t.param, d.param, d.master, d.m, d.v, t.grad, d_grad, n, a);
        });
        return;
      }
      case Optimizer::kAdafactor: {
        AdafactorStep a = c.adafactor;
        a.step = step;
        float* ws = workspace(adafactor_workspace_floats(rows, cols));
        run([&](const LaunchContext& ctx) {
          adafactor(ctx, t.param, d.param, d.master, d.row, d.col, d.v, d.m, t.grad, d_grad, rows,
                    cols, a, ws);
        });
        return;
      }
      case Optimizer::kSm3: {
        float* ws = workspace(sm3_workspace_floats(rows, cols));
        run([&](const LaunchContext& ctx) {
          sm3(ctx, t.param, d.param, d.master, d.row, d.col, d.v, d.m, t.grad, d_grad, rows, cols,
              c.sm3, ws);
        });
        return;
      }
    }
  }
};

TEST_P(OptimCudaStepTest, MatchesReferenceBitForBit) {
  const auto& [config, types] = GetParam();
  // Rows and columns past one block of the segment and column kernels, a vector of more than
  // 256 chunks (two blocks of segments, two stagings of the ordered sum), and the smallest.
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {
      {300, 301}, {1, 9}, {3, 2}, {300 * kChunk + 7, 1}, {7, 1}};
  for (const auto& [rows, cols] : shapes) {
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    ModelState host = initial_state(config, types, rows, cols);
    const DeviceState d{upload(host.param), upload(host.master), upload(host.m),
                        upload(host.v),     upload(host.row),    upload(host.col)};
    for (int s = 1; s <= 3; s++) {
      const std::vector<std::uint8_t> grad = random_gradient(types.grad, rows * cols, 30 + s);
      step(config, types, d, host, grad, rows, cols, s);
      const std::string what = shape + ", step " + std::to_string(s);
      expect_same_bits(download(static_cast<const std::uint8_t*>(d.param), host.param.size()),
                       host.param, what + ": param");
      expect_same_bits(download(d.master, host.master.size()), host.master, what + ": master");
      expect_same_bits(download(d.m, host.m.size()), host.m, what + ": m");
      expect_same_bits(download(d.v, host.v.size()), host.v, what + ": v");
      expect_same_bits(download(d.row, host.row.size()), host.row, what + ": row");
      expect_same_bits(download(d.col, host.col.size()), host.col, what + ": col");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, OptimCudaStepTest,
                         testing::Combine(testing::ValuesIn(kConfigs), testing::ValuesIn(kTypes)),
                         test_name);

}  // namespace
}  // namespace ebb::optim
