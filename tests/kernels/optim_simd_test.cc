// Tests of the cpu optimizer kernels at each SimdLevel (kernels/optim.h, the loops of
// kernels/cpu/optim_cpu_loops.h):
// - the level detected is the one __builtin_cpu_supports names, set_simd_level sets it (clamped
//   to the detected one), and EBB_CPU_SIMD chooses it at first use (in a fresh process);
// - at every level this CPU has, AdamW, Adafactor and SM3 against the reference bit for bit, for
//   fp32, bf16 and fp16 parameters and gradients, with and without masters, weight decay on and
//   off, grad_scale != 1, lengths that leave tails in every block, and gradients holding
//   infinities, NaNs and fp16 subnormals;
// - the rounding of every class of float into bf16 and fp16 at every level, through AdamW's store;
// - the scalar and the widest level against each other. A level the CPU lacks is skipped, but the
//   comparison of levels fails on a CPU with avx2 if it compared one level with itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/nn.h"
#include "kernels/optim.h"
#include "kernels/optim_reference.h"
#include "kernels/optim_scalar.h"
#include "tests/kernels/nn_test_support.h"
#include "tests/kernels/optim_test_support.h"

namespace ebb::optim {
namespace {

using cpu::SimdLevel;
using test_support::Config;
using test_support::cpu_step;
using test_support::data_or_null;
using test_support::expect_same_state;
using test_support::initial_state;
using test_support::kConfigs;
using test_support::kTypes;
using test_support::ModelState;
using test_support::Optimizer;
using test_support::random_gradient;
using test_support::reference_step;
using test_support::Types;

const LaunchContext kCpu{DeviceKind::kCpu, nullptr};
constexpr SimdLevel kLevels[] = {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512};

// Sets a level for one scope and puts the previous one back.
class ScopedLevel {
 public:
  explicit ScopedLevel(SimdLevel level) : previous_(cpu::simd_level()) {
    cpu::set_simd_level(level);
  }
  ~ScopedLevel() { cpu::set_simd_level(previous_); }
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;

 private:
  SimdLevel previous_;
};

// --- the level ----------------------------------------------------------------------------------

TEST(OptimSimdLevelTest, DetectsWhatTheCpuSupports) {
  SimdLevel expected = SimdLevel::kScalar;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx2") != 0) expected = SimdLevel::kAvx2;
  if (__builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
      __builtin_cpu_supports("avx512vl") != 0) {
    expected = SimdLevel::kAvx512;
  }
#endif
  EXPECT_EQ(cpu::detected_simd_level(), expected);
}

TEST(OptimSimdLevelTest, SetClampsToTheDetectedLevel) {
  const ScopedLevel restore(cpu::simd_level());
  for (const SimdLevel level : kLevels) {
    cpu::set_simd_level(level);
    EXPECT_EQ(cpu::simd_level(), std::min(level, cpu::detected_simd_level()))
        << cpu::simd_level_name(level);
  }
  EXPECT_EQ(cpu::simd_level_name(SimdLevel::kScalar), "scalar");
  EXPECT_EQ(cpu::simd_level_name(SimdLevel::kAvx2), "avx2");
  EXPECT_EQ(cpu::simd_level_name(SimdLevel::kAvx512), "avx512");
}

// EBB_CPU_SIMD is read at the first use of the level, so each case runs in a fresh process: the
// "threadsafe" death-test style re-runs this binary for the statement.
TEST(OptimSimdLevelDeathTest, EnvironmentChoosesTheLevelAtFirstUse) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("EBB_CPU_SIMD", "scalar", 1);
        std::exit(cpu::simd_level() == SimdLevel::kScalar ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("EBB_CPU_SIMD", "avx512", 1);
        std::exit(cpu::simd_level() == cpu::detected_simd_level() ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("EBB_CPU_SIMD", "sse9", 1);
        try {
          cpu::simd_level();
        } catch (const std::invalid_argument&) {
          std::exit(0);
        }
        std::exit(1);
      },
      testing::ExitedWithCode(0), "");
}

// --- every level against the reference ---------------------------------------------------------

// The configurations of optim_test.cc, plus AdamW without weight decay.
std::vector<Config> configs() {
  std::vector<Config> all(std::begin(kConfigs), std::end(kConfigs));
  all.push_back({"AdamWNoDecay",
                 Optimizer::kAdamW,
                 AdamWStep{.lr = 1e-2F, .weight_decay = 0.0F, .grad_scale = 2.0F},
                 {},
                 {}});
  return all;
}

// Matrices with rows longer and shorter than a block of the loops (256) and odd lengths; vectors
// of several elementwise tasks with a tail, of 1 and of 33 elements.
const std::pair<std::int64_t, std::int64_t> kShapes[] = {{19, 301},           {1, 9}, {3, 2},
                                                         {2 * 16384 + 37, 1}, {1, 1}, {33, 1}};

// A gradient with the special values in a few places: +-inf and NaN in the last element (so the
// rest of a vector keeps finite values), and for fp16 a subnormal and fp16's largest value.
std::vector<std::uint8_t> special_gradient(FloatType t, std::int64_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> grad = random_gradient(t, n, seed);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {inf,   -inf,     std::numeric_limits<float>::quiet_NaN(),
                            3e-7F, 65504.0F, -0.0F};
  for (std::int64_t k = 0; k < std::min<std::int64_t>(n - 1, 5); k++) {
    store(t, grad.data(), n - 2 - k, specials[k + 1]);
  }
  if (n >= 1) store(t, grad.data(), n - 1, specials[seed % 3]);
  return grad;
}

// The states after each of three steps of c, with the cpu kernels at the level in use or with the
// reference: two steps of finite gradients, then one with special values (compared step by step,
// since a NaN that spreads in the last step would hide a difference of the steps before).
std::vector<ModelState> three_steps(const Config& c, const Types& t, std::int64_t rows,
                                    std::int64_t cols, bool reference) {
  ModelState s = initial_state(c, t, rows, cols);
  std::vector<ModelState> after;
  for (int step = 1; step <= 3; step++) {
    const std::vector<std::uint8_t> grad = step < 3
                                               ? random_gradient(t.grad, rows * cols, 40 + step)
                                               : special_gradient(t.grad, rows * cols, 40 + step);
    if (reference) {
      reference_step(c, t, s, grad, rows, cols, step);
    } else {
      cpu_step(c, t, s, grad, rows, cols, step);
    }
    after.push_back(s);
  }
  return after;
}

void expect_same_steps(const std::vector<ModelState>& a, const std::vector<ModelState>& b,
                       const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t step = 0; step < a.size(); step++) {
    expect_same_state(a[step], b[step], what + ", step " + std::to_string(step + 1));
  }
}

class OptimSimdTest : public testing::TestWithParam<SimdLevel> {};

TEST_P(OptimSimdTest, EveryOptimizerMatchesReferenceBitForBit) {
  const SimdLevel level = GetParam();
  if (level > cpu::detected_simd_level()) {
    GTEST_SKIP() << "this CPU has no " << cpu::simd_level_name(level);
  }
  const ScopedLevel scoped(level);
  ASSERT_EQ(cpu::simd_level(), level);
  for (const Config& c : configs()) {
    for (const Types& t : kTypes) {
      for (const auto& [rows, cols] : kShapes) {
        const std::string what = c.name + " " + testing::PrintToString(t) + " " +
                                 std::to_string(rows) + "x" + std::to_string(cols);
        expect_same_steps(three_steps(c, t, rows, cols, false), three_steps(c, t, rows, cols, true),
                          what);
      }
    }
  }
}

// AdamW with lr = 0 stores X as it was: the parameter is then the rounding of the master, for
// masters that step through every exponent and many fractions of float, the bf16 and fp16 ties,
// subnormals, infinities and NaNs.
TEST_P(OptimSimdTest, StoresRoundEveryClassOfFloatAsTheReference) {
  const SimdLevel level = GetParam();
  if (level > cpu::detected_simd_level()) {
    GTEST_SKIP() << "this CPU has no " << cpu::simd_level_name(level);
  }
  const ScopedLevel scoped(level);
  std::vector<float> values;
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 65521) {
    values.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(bits)));
  }
  for (const std::uint32_t tie : {0x3F808000U, 0x3F818000U, 0x38801000U, 0x33000000U, 0x477FF000U,
                                  0x7FC00001U, 0x7F800001U, 0xFF800000U}) {
    values.push_back(std::bit_cast<float>(tie));
    values.push_back(std::bit_cast<float>(tie ^ 0x80000000U));
  }
  const auto n = static_cast<std::int64_t>(values.size());
  const std::vector<float> grad(n, 0.5F);
  for (const FloatType t : {FloatType::kBF16, FloatType::kF16}) {
    std::vector<std::uint8_t> param(n * nn::float_bytes(t)), expected_param = param;
    std::vector<float> master = values, expected_master = values;
    std::vector<float> m(n), v(n), expected_m(n), expected_v(n);
    const AdamWStep s{.lr = 0.0F, .weight_decay = 0.0F};
    adamw(kCpu, t, param.data(), master.data(), m.data(), v.data(), FloatType::kF32, grad.data(), n,
          s);
    reference::adamw(t, expected_param.data(), expected_master.data(), expected_m.data(),
                     expected_v.data(), FloatType::kF32, grad.data(), n, s);
    nn::expect_same_bits(param, expected_param, std::string(nn::float_type_name(t)));
    nn::expect_same_bits(master, expected_master, std::string(nn::float_type_name(t)));
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, OptimSimdTest, testing::ValuesIn(kLevels),
                         [](const testing::TestParamInfo<SimdLevel>& info) {
                           return std::string(cpu::simd_level_name(info.param));
                         });

// --- levels against each other ------------------------------------------------------------------

TEST(OptimSimdLevelsTest, ScalarAndWidestLevelGiveTheSameBits) {
  const SimdLevel widest = cpu::detected_simd_level();
  if (widest == SimdLevel::kScalar) GTEST_SKIP() << "this CPU has no vector level";
  for (const Config& c : configs()) {
    for (const Types& t : kTypes) {
      const std::string what = c.name + " " + testing::PrintToString(t);
      std::vector<ModelState> scalar;
      std::vector<ModelState> wide;
      {
        const ScopedLevel scoped(SimdLevel::kScalar);
        ASSERT_EQ(cpu::simd_level(), SimdLevel::kScalar);
        scalar = three_steps(c, t, 19, 301, false);
      }
      {
        const ScopedLevel scoped(widest);
        ASSERT_EQ(cpu::simd_level(), widest) << "the comparison would be of scalar with itself";
        wide = three_steps(c, t, 19, 301, false);
      }
      expect_same_steps(wide, scalar, what);
    }
  }
}

}  // namespace
}  // namespace ebb::optim
