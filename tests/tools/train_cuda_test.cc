// The reference trainer on a GPU: its losses follow the cpu run's (to a stated tolerance: the
// backends' reductions differ in order), and under a budget the GPU run is bitwise identical to
// the unconstrained GPU run; AdamW's state on the host (the cpu kernels) gives the bits of the
// device step. Skipped where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/device.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

TrainOptions options(DeviceKind device) {
  TrainOptions o;
  o.model = {.layers = 2, .d_model = 64, .heads = 4, .seq = 64, .batch = 8, .vocab = 256};
  o.steps = 20;
  o.device = device;
  return o;
}

TEST(TrainCuda, LossesFollowTheCpuRunOverTwentySteps) {
  if (!cuda_device_present()) GTEST_SKIP() << "no GPU";
  Result<TrainResult> cpu = train(options(DeviceKind::kCpu));
  Result<TrainResult> gpu = train(options(DeviceKind::kCuda));
  ASSERT_TRUE(cpu.ok()) << cpu.status().to_string();
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  ASSERT_EQ(cpu->steps.size(), gpu->steps.size());
  // fp32 everywhere; reduction orders differ, and 20 AdamW steps amplify the differences a
  // little: the losses agree to 1e-3 relative.
  for (std::size_t i = 0; i < cpu->steps.size(); ++i) {
    const double a = cpu->steps[i].loss;
    const double b = gpu->steps[i].loss;
    EXPECT_NEAR(b, a, 1e-3 * std::abs(a)) << "step " << i + 1;
  }
  EXPECT_LT(gpu->steps.back().loss, gpu->steps.front().loss - 1.0);
}

// NCCL with one rank (a GPU machine here has one GPU, and NCCL refuses two ranks on one): the
// reduction's all-to-all and fold are copies, so every stage gives the bits of the run without
// ZeRO. The multi-rank logic is the mpi tests' (tests/tools/train_zero_test.cc), over the same
// code and interface.
TEST(TrainCuda, ZeroStagesOverNcclGiveTheBitsOfTheRunWithoutZero) {
  if (!cuda_device_present()) GTEST_SKIP() << "no GPU";
  TrainOptions base = options(DeviceKind::kCuda);
  base.steps = 4;
  base.precision = Precision::kBF16;
  base.clip_grad_norm = 1.0F;
  Result<TrainResult> plain = train(base);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  for (int stage = 0; stage <= 2; ++stage) {
    TrainOptions zero = base;
    zero.zero_stage = stage;
    Result<TrainResult> z = train(zero);
    ASSERT_TRUE(z.ok()) << "stage " << stage << ": " << z.status().to_string();
    EXPECT_TRUE(same_losses(*z, *plain)) << "stage " << stage;
    EXPECT_TRUE(same_bits(z->final_parameters, plain->final_parameters)) << "stage " << stage;
  }
}

TEST(TrainCuda, BudgetedRunIsBitwiseIdenticalOnTheGpu) {
  if (!cuda_device_present()) GTEST_SKIP() << "no GPU";
  TrainOptions base = options(DeviceKind::kCuda);
  base.steps = 6;
  Result<TrainResult> free_run = train(base);
  ASSERT_TRUE(free_run.ok()) << free_run.status().to_string();
  for (EvictionPolicy policy :
       {EvictionPolicy::kSwap, EvictionPolicy::kRecompute, EvictionPolicy::kBoth}) {
    TrainOptions budgeted = base;
    budgeted.policy = policy;
    budgeted.budget_fraction = 0.5;
    Result<TrainResult> tight = train(budgeted);
    ASSERT_TRUE(tight.ok()) << eviction_policy_name(policy) << ": " << tight.status().to_string();
    EXPECT_TRUE(same_bits(tight->final_parameters, free_run->final_parameters))
        << eviction_policy_name(policy);
    EXPECT_LE(tight->peak_reserved_bytes, tight->budget_bytes) << eviction_policy_name(policy);
  }
}

// The host step (the cpu kernels, AVX-512, AVX2 or scalar) against the device step (the CUDA
// kernel, built with --fmad=false, IEEE division and square root, the bias corrections computed
// on the host): AdamW has no reduction, so the two give the same bits, in fp32 and in bf16.
TEST(TrainCuda, HostAdamWStepGivesTheDeviceStepsBits) {
  if (!cuda_device_present()) GTEST_SKIP() << "no GPU";
  for (Precision precision : {Precision::kF32, Precision::kBF16}) {
    TrainOptions o = options(DeviceKind::kCuda);
    o.steps = 5;
    o.precision = precision;
    o.optimizer.weight_decay = 0.1F;
    Result<TrainResult> device = train(o);
    ASSERT_TRUE(device.ok()) << device.status().to_string();
    o.optimizer_state = StatePolicy::kHost;
    Result<TrainResult> host = train(o);
    ASSERT_TRUE(host.ok()) << host.status().to_string();
    EXPECT_TRUE(same_bits(host->final_parameters, device->final_parameters))
        << precision_name(precision);
    for (std::size_t i = 0; i < host->steps.size(); ++i) {
      EXPECT_TRUE(same_bits(host->steps[i].loss, device->steps[i].loss))
          << precision_name(precision) << " step " << i + 1;
    }
    EXPECT_EQ(host->optimizer_state_bytes, 0);
  }
}

}  // namespace
}  // namespace ebb::train
