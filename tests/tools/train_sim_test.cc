// The reference trainer's model presets, and the trainer on the sim device (kernels/sim): the
// same engine, allocator and planner as on cpu, with kernels accounted instead of run, so a run
// reports simulated step times and the device memory it would take.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/schema/chip_spec.h"
#include "tests/tools/train_test_support.h"
#include "tools/train/gpt_config.h"
#include "tools/train/trainer.h"

namespace ebb::train {
namespace {

using test_support::expect_refused;

TEST(ModelPreset, GivesThePublishedShapes) {
  Result<ModelPreset> gpt2 = find_model_preset("gpt2-124m");
  ASSERT_TRUE(gpt2.ok()) << gpt2.status().to_string();
  const GptConfig c = apply_preset(*gpt2, GptConfig{.batch = 4}, {});
  EXPECT_EQ(c.layers, 12);
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.heads, 12);
  EXPECT_EQ(c.vocab, 50257);
  EXPECT_EQ(c.seq, 1024);
  EXPECT_EQ(c.batch, 4);  // not a preset's field
  EXPECT_TRUE(validate_config(c).ok());
  // GPT-2 small: 124M parameters with the tied head (wpe 1024 x 768 included).
  EXPECT_EQ(parameter_count(c), 124'439'808);

  Result<ModelPreset> llama = find_model_preset("llama-13b-like");
  ASSERT_TRUE(llama.ok());
  const GptConfig l = apply_preset(*llama, GptConfig{}, {});
  EXPECT_EQ(l.layers, 40);
  EXPECT_EQ(l.d_model, 5120);
  EXPECT_EQ(l.heads, 40);
  EXPECT_EQ(l.vocab, 32000);
  EXPECT_EQ(l.seq, 2048);
  for (const ModelPreset& p : model_presets()) {
    EXPECT_TRUE(validate_config(apply_preset(p, GptConfig{}, {})).ok()) << p.name;
  }
}

TEST(ModelPreset, FieldsGivenBesideItWin) {
  Result<ModelPreset> p = find_model_preset("gpt2-350m");
  ASSERT_TRUE(p.ok());
  const GptConfig c = apply_preset(*p, GptConfig{}, {.layers = 2, .seq = 128});
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.seq, 128);
  EXPECT_EQ(c.d_model, 1024);  // the preset's
  EXPECT_EQ(c.heads, 16);
  EXPECT_EQ(c.vocab, 50257);
}

TEST(ModelPreset, UnknownNameIsRefusedListingThePresets) {
  Result<ModelPreset> p = find_model_preset("gpt3-175b");
  ASSERT_FALSE(p.ok());
  const std::string& m = p.status().message();
  EXPECT_NE(m.find("\"gpt3-175b\""), std::string::npos) << m;
  for (const ModelPreset& preset : model_presets()) {
    EXPECT_NE(m.find(preset.name), std::string::npos) << m;
  }
}

// A small model, and the same hardware on both devices: the cpu device's 64 KiB pages, so that
// the allocator maps the same segments.
TrainOptions small_sim_options() {
  TrainOptions o;
  o.model = {.layers = 2, .d_model = 32, .heads = 2, .seq = 16, .batch = 4, .vocab = 64};
  o.steps = 3;
  o.device = DeviceKind::kSim;
  o.device_memory_bytes = std::size_t{4} << 30;
  o.sim_hardware = {.name = "test-link",
                    .host_to_device_bytes_per_s = 10e9,
                    .device_to_host_bytes_per_s = 10e9,
                    .link_latency = std::chrono::microseconds(5),
                    .page_bytes = std::size_t{64} << 10};
  return o;
}

TEST(TrainOnSim, RunsAndReportsNoLoss) {
  Result<TrainResult> r = train(small_sim_options());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->simulated);
  ASSERT_EQ(r->steps.size(), 3U);
  for (const StepStats& s : r->steps) {
    EXPECT_TRUE(std::isnan(s.loss));
    EXPECT_GE(s.ms, 0);
  }
  EXPECT_TRUE(r->final_parameters.empty());
  EXPECT_GT(r->peak_reserved_bytes, 0U);
  EXPECT_LE(r->peak_reserved_bytes, small_sim_options().device_memory_bytes);
}

// The same allocator, engine and policy on both devices: the sim device's peak is the cpu
// device's, byte for byte (sizes come from shapes, not from values or kernel times).
TEST(TrainOnSim, PeakBytesAreTheCpuDevicesUnderPolicyKeep) {
  TrainOptions sim = small_sim_options();
  Result<ChipSpec> h100 = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json");
  ASSERT_TRUE(h100.ok()) << h100.status().to_string();
  sim.sim_chip = *h100;
  sim.plan_policy = PlanPolicy::kKeep;
  sim.policy = EvictionPolicy::kBoth;
  TrainOptions cpu = sim;
  cpu.device = DeviceKind::kCpu;
  Result<TrainResult> on_sim = train(sim);
  Result<TrainResult> on_cpu = train(cpu);
  ASSERT_TRUE(on_sim.ok()) << on_sim.status().to_string();
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status().to_string();
  EXPECT_EQ(on_sim->peak_reserved_bytes, on_cpu->peak_reserved_bytes);
  EXPECT_EQ(on_sim->peak_live_bytes, on_cpu->peak_live_bytes);
  EXPECT_EQ(on_sim->steady_peak_reserved_bytes, on_cpu->steady_peak_reserved_bytes);
  EXPECT_EQ(on_sim->parameter_state_bytes, on_cpu->parameter_state_bytes);
  EXPECT_EQ(on_sim->optimizer_state_bytes, on_cpu->optimizer_state_bytes);
  // Both followed the keep plan after the warm-up.
  ASSERT_TRUE(on_sim->plan.has_value());
  ASSERT_TRUE(on_cpu->plan.has_value());
  EXPECT_EQ(on_sim->plan->evictions.size(), on_cpu->plan->evictions.size());
}

// With a chip, every kernel takes its roofline time: a step takes simulated time, less in bf16
// (tensor cores, half the bytes) than in fp32, and the device is the chip's memory.
TEST(TrainOnSim, StepsTakeTheChipsKernelTimes) {
  Result<ChipSpec> h100 = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json");
  ASSERT_TRUE(h100.ok()) << h100.status().to_string();
  TrainOptions o = small_sim_options();
  o.model = {.layers = 4, .d_model = 256, .heads = 4, .seq = 256, .batch = 8, .vocab = 1024};
  o.device_memory_bytes = 0;
  o.sim_chip = *h100;
  Result<TrainResult> fp32 = train(o);
  o.precision = Precision::kBF16;
  Result<TrainResult> bf16 = train(o);
  ASSERT_TRUE(fp32.ok()) << fp32.status().to_string();
  ASSERT_TRUE(bf16.ok()) << bf16.status().to_string();
  EXPECT_EQ(fp32->budget_bytes, h100->memory_bytes);
  for (const StepStats& s : fp32->steps) EXPECT_GT(s.ms, 0);
  EXPECT_LT(bf16->ms_per_step_median, fp32->ms_per_step_median);
  // Every step runs the same ops: the same simulated time.
  EXPECT_EQ(fp32->steps.front().ms, fp32->steps.back().ms);
}

TEST(TrainOnSim, WhatNeedsValuesIsRefused) {
  TrainOptions o = small_sim_options();
  o.device_memory_bytes = 0;
  expect_refused(o, "--device-memory");
  o = small_sim_options();
  o.checkpoint_dir = test_support::temp_dir("train_sim", "ckpt");
  o.checkpoint_every = 1;
  expect_refused(o, "checkpoints");
  o = small_sim_options();
  o.init_from = "weights.bin";
  expect_refused(o, "--init-from");
  o = small_sim_options();
  o.clip_grad_norm = 1;
  expect_refused(o, "--clip-grad-norm");
  o = small_sim_options();
  o.precision = Precision::kF16;
  expect_refused(o, "fp16");
  // State off the device needs a chip whose host times the CPU step; the delayed update's
  // thread is not modelled.
  o = small_sim_options();
  o.optimizer_state = StatePolicy::kHost;
  expect_refused(o, "--hw");
  o.sim_chip = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json").value();
  o.delayed_update = true;
  expect_refused(o, "--delayed-update");
}

// ZeRO-Offload on the sim device: master weights and AdamW's moments on the simulated host or
// NVMe leave the device (no optimizer state there), the host tier holds them (address space
// only), and the CPU step takes the cost model's time, computed here from the parameter count:
// bf16 AdamW moves 28 bytes per parameter through host memory (2 B gradient in, 2 B parameter
// out, 4 B master and 8 B of moments in and out), at half the host's bandwidth; on NVMe the 12 B
// of state are also read and written back at the node's NVMe bandwidth over its GPUs.
TEST(TrainOnSim, OptimizerStateOnTheHostAndNvme) {
  const ChipSpec h100 = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json").value();
  TrainOptions o = small_sim_options();
  o.model = {.layers = 2, .d_model = 256, .heads = 4, .seq = 64, .batch = 2, .vocab = 512};
  o.precision = Precision::kBF16;
  o.device_memory_bytes = 0;
  o.sim_chip = h100;
  Result<TrainResult> device = train(o);
  o.optimizer_state = StatePolicy::kHost;
  Result<TrainResult> host = train(o);
  o.optimizer_state = StatePolicy::kNvme;
  Result<TrainResult> nvme = train(o);
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  ASSERT_TRUE(host.ok()) << host.status().to_string();
  ASSERT_TRUE(nvme.ok()) << nvme.status().to_string();
  const double psi = static_cast<double>(parameter_count(o.model));
  EXPECT_NEAR(static_cast<double>(device->peak_optimizer_state_bytes) / (12 * psi), 1.0, 0.01);
  EXPECT_EQ(host->peak_optimizer_state_bytes, 0);
  EXPECT_EQ(nvme->peak_optimizer_state_bytes, 0);
  EXPECT_LT(host->peak_reserved_bytes, device->peak_reserved_bytes);
  // 12 B of master and moments, and 4 B of staging (bf16 gradient and parameter), per parameter.
  EXPECT_NEAR(static_cast<double>(host->offload.host_bytes) / (16 * psi), 1.0, 0.01);
  EXPECT_NEAR(static_cast<double>(nvme->offload.nvme_bytes) / (12 * psi), 1.0, 0.01);
  ASSERT_EQ(host->offload.cpu_steps, o.steps);
  const double host_step_s = 28 * psi / (h100.host_memory_bytes_per_s * 0.5);
  EXPECT_NEAR(host->offload.cpu_step_s / o.steps / host_step_s, 1.0, 1e-6);
  const double nvme_io_s = 2 * 12 * psi / (h100.nvme_bytes_per_s_per_node / h100.gpus_per_node);
  EXPECT_NEAR(nvme->offload.cpu_step_s / o.steps / std::max(host_step_s, nvme_io_s), 1.0, 1e-6);
  // The CPU step is on the step's critical path, after the gradients' copies.
  EXPECT_GE(host->steady_ms_median, device->steady_ms_median + host_step_s * 1e3 * 0.999);
  EXPECT_GE(nvme->steady_ms_median, host->steady_ms_median);
  EXPECT_GT(host->offload.gradient_bytes, 0);
  EXPECT_GT(host->offload.parameter_bytes, 0);

  // A host too small for the state: out of memory, naming the host tier.
  o.optimizer_state = StatePolicy::kHost;
  o.host_tier_bytes = std::size_t{1} << 20;
  Result<TrainResult> small = train(o);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kOutOfMemory) << small.status().to_string();
  EXPECT_NE(small.status().message().find("host tier"), std::string::npos)
      << small.status().to_string();
}

// --optimizer-state auto on the sim device places slices off the device when the budget is too
// small to keep them, with the chip's modelled rates.
TEST(TrainOnSim, AutoPlacesStateForTheBudget) {
  TrainOptions o = small_sim_options();
  o.model = {.layers = 4, .d_model = 256, .heads = 4, .seq = 64, .batch = 2, .vocab = 512};
  o.precision = Precision::kBF16;
  o.device_memory_bytes = 0;
  o.sim_chip = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json").value();
  Result<TrainResult> device = train(o);
  ASSERT_TRUE(device.ok()) << device.status().to_string();
  o.optimizer_state = StatePolicy::kAuto;
  o.policy = EvictionPolicy::kNone;
  // The device's peak less half of the optimizer state: about half the slices must leave.
  o.budget_bytes = device->peak_reserved_bytes -
                   static_cast<std::size_t>(device->peak_optimizer_state_bytes) / 2;
  Result<TrainResult> placed = train(o);
  ASSERT_TRUE(placed.ok()) << placed.status().to_string();
  ASSERT_TRUE(placed->state_plan.has_value());
  int off = 0;
  for (StatePlacement p : placed->state_placement) off += p != StatePlacement::kDevice ? 1 : 0;
  EXPECT_GT(off, 0);
  EXPECT_LT(off, static_cast<int>(placed->state_placement.size()));
  EXPECT_LE(placed->peak_reserved_bytes, o.budget_bytes);
}

// ZeRO on the sim device: one simulated rank stands for N (kernels/comm/sim_communicator.h).
// Each stage's model state per rank follows the ZeRO formula (bf16, AdamW: 2Ψ parameters, 2Ψ
// gradients, 12Ψ state, partitioned by the stage), and the collectives' time comes from the
// chip's links: a slower link never makes the step faster.
TEST(TrainOnSim, ZeroStagesOverSimulatedRanks) {
  Result<ChipSpec> h100 = read_chip_spec(EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json");
  ASSERT_TRUE(h100.ok()) << h100.status().to_string();
  TrainOptions o = small_sim_options();
  o.model = {.layers = 2, .d_model = 256, .heads = 4, .seq = 64, .batch = 2, .vocab = 512};
  o.precision = Precision::kBF16;
  o.sim_chip = *h100;
  o.sim_ranks = 8;
  const double psi = static_cast<double>(parameter_count(o.model));
  double stage0_state = 0;
  for (int stage = 0; stage <= 3; ++stage) {
    o.zero_stage = stage;
    Result<TrainResult> r = train(o);
    ASSERT_TRUE(r.ok()) << "stage " << stage << ": " << r.status().to_string();
    EXPECT_EQ(r->ranks, 8);
    EXPECT_GT(r->steady_ms_median, 0) << stage;
    const double state = static_cast<double>(r->peak_optimizer_state_bytes);
    // 12Ψ on one rank at stage 0, 12Ψ/8 from stage 1 (padding to N x 512 B aside).
    const double expected = stage == 0 ? 12 * psi : 12 * psi / 8;
    EXPECT_NEAR(state / expected, 1.0, 0.02) << "stage " << stage;
    if (stage == 0) stage0_state = state;
    if (stage > 0) EXPECT_LT(state, stage0_state / 4) << stage;
  }
  // The same step across nodes over a 10 MB/s network is slower than over NVLink: the
  // collectives' time no longer hides behind the backward.
  o.zero_stage = 2;
  Result<TrainResult> nvlink = train(o);
  ChipSpec slow = *h100;
  slow.gpus_per_node = 1;
  slow.inter_node_bytes_per_s = 1e7;
  o.sim_chip = slow;
  Result<TrainResult> network = train(o);
  ASSERT_TRUE(nvlink.ok() && network.ok());
  EXPECT_GT(network->steady_ms_median, nvlink->steady_ms_median);
  EXPECT_GT(network->zero.reduce_bytes, 0);

  o.zero_stage.reset();
  expect_refused(o, "without --zero");
  o.device = DeviceKind::kCpu;
  o.zero_stage = 1;
  expect_refused(o, "is for --device sim");
}

}  // namespace
}  // namespace ebb::train
