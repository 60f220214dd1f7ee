// The cost model's efficiency factors, its roofline and the ring collectives' formulas.
#include "engine/planner/cost_model.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace ebb {
namespace {

// The fraction of the chip's peak each kernel class sustains. One table for every chip: the
// planner compares chips by their datasheet figures, and a per-chip measurement replaces
// these where one exists (the profile's measured op times).
//
// GEMM: compute 0.75. Large cuBLAS bf16 GEMMs on an H100 SXM sustain roughly 700-800 of its
// 989 dense TFLOPS in public benchmarks (the 700 W part runs below the boost clock the peak
// assumes); on smaller parts cuBLAS gets closer (DefTruth/CUDA-Learn-Notes, hgemm README,
// measures cuBLAS fp16 at 105-115 of the L20's 119.5 TFLOPS). 0.75 is the planning figure,
// on the safe side for the smaller parts. Memory 0.80: a GEMM's operand streams are tiled
// reads, below a plain copy's bandwidth.
//
// Attention (fused, FlashAttention-style): compute 0.55. FlashAttention-2 (Dao, 2023) reaches
// 50-73% of the A100's peak in the forward pass and less in the backward; FlashAttention-3
// (Shah et al., 2024) reports up to 75% of the H100's bf16 peak forward. A training step runs
// both passes, the backward twice the forward's FLOPs at a lower rate: 0.55. Memory 0.80 as GEMM.
//
// Elementwise: memory 0.85. A streaming copy or STREAM triad on an H100 SXM sustains about
// 3.0 of its 3.35 TB/s (0.9); a fused elementwise kernel reading several tensors a little
// less. Compute 0.50: these kernels run on the CUDA cores and are rarely bound by them.
//
// Reduction: memory 0.75. It reads its input once, but the last stages of the tree and
// row-wise reductions of short rows leave part of the bandwidth unused. Compute 0.50 as
// elementwise.
KernelEfficiency efficiency_of_class(KernelClass kind) {
  switch (kind) {
    case KernelClass::kGemm:
      return {.compute = 0.75, .memory = 0.80};
    case KernelClass::kAttention:
      return {.compute = 0.55, .memory = 0.80};
    case KernelClass::kElementwise:
      return {.compute = 0.50, .memory = 0.85};
    case KernelClass::kReduction:
      return {.compute = 0.50, .memory = 0.75};
  }
  EBB_CHECK(false, "unknown KernelClass " + std::to_string(static_cast<int>(kind)));
}

// kKernelLaunchOverhead, 3 us: launching a kernel takes a few microseconds from the call to
// its start on the device, and back-to-back kernels on one stream leave a gap of about that
// between them; a planner's op is one or a few launches.

// Rounds seconds to nanoseconds (a model's time, not a measured one: nearest, not floor).
std::chrono::nanoseconds cost_seconds_to_ns(double seconds) {
  return std::chrono::nanoseconds(std::llround(seconds * 1e9));
}

// A ring collective in which each rank sends step_factor * (N-1) chunks of bytes/N, each step
// paying the link's latency: all-reduce is a reduce-scatter and then an all-gather (factor 2).
std::chrono::nanoseconds ring_collective_time(const CollectiveLink& link, int ranks, double bytes,
                                              int step_factor) {
  EBB_CHECK(ranks >= 1, "a collective needs at least one rank, got " + std::to_string(ranks));
  EBB_CHECK(bytes >= 0, "negative collective size " + std::to_string(bytes));
  EBB_CHECK(link.bytes_per_s > 0, "collective link without bandwidth");
  if (ranks == 1) return std::chrono::nanoseconds(0);
  const double n = ranks;
  const double moved = step_factor * (n - 1) / n * bytes;
  const double latency_s =
      step_factor * (n - 1) * std::chrono::duration<double>(link.step_latency).count();
  return cost_seconds_to_ns(moved / link.bytes_per_s + latency_s);
}

}  // namespace

KernelEfficiency kernel_efficiency(KernelClass kind) { return efficiency_of_class(kind); }

double peak_flops_per_s(const ChipSpec& chip, KernelClass kind, MathPrecision precision) {
  if (kind == KernelClass::kElementwise || kind == KernelClass::kReduction) {
    return chip.fp32_flops_per_s;
  }
  switch (precision) {
    case MathPrecision::kFp32:
      return chip.fp32_flops_per_s;
    case MathPrecision::kTf32:
      return chip.tf32_flops_per_s;
    case MathPrecision::kBf16:
      return chip.bf16_flops_per_s;
    case MathPrecision::kFp16:
      return chip.fp16_flops_per_s;
  }
  EBB_CHECK(false, "unknown MathPrecision " + std::to_string(static_cast<int>(precision)));
}

std::chrono::nanoseconds kernel_time(const ChipSpec& chip, const KernelWork& work) {
  EBB_CHECK(work.flops >= 0 && work.bytes >= 0, "kernel work must be >= 0: flops " +
                                                    std::to_string(work.flops) + ", bytes " +
                                                    std::to_string(work.bytes));
  const double peak = peak_flops_per_s(chip, work.kind, work.precision);
  EBB_CHECK(peak > 0 && chip.memory_bytes_per_s > 0,
            "chip " + chip.name + " has no throughput or memory bandwidth for this kernel");
  const KernelEfficiency e = efficiency_of_class(work.kind);
  const double compute_s = work.flops / (peak * e.compute);
  const double memory_s = work.bytes / (chip.memory_bytes_per_s * e.memory);
  return cost_seconds_to_ns(std::max(compute_s, memory_s)) + kKernelLaunchOverhead;
}

CollectiveLink collective_link(const ChipSpec& chip, int ranks) {
  EBB_CHECK(ranks >= 1, "a collective needs at least one rank, got " + std::to_string(ranks));
  if (ranks <= chip.gpus_per_node) {
    return {.bytes_per_s = chip.chip_link_bytes_per_s, .step_latency = kIntraNodeStepLatency};
  }
  return {.bytes_per_s = std::min(chip.chip_link_bytes_per_s, chip.inter_node_bytes_per_s),
          .step_latency = kInterNodeStepLatency};
}

LinkModel collective_link_model(const ChipSpec& chip, int ranks) {
  const CollectiveLink link = collective_link(chip, ranks);
  return {.bytes_per_second = link.bytes_per_s, .latency = (ranks - 1) * link.step_latency};
}

std::chrono::nanoseconds all_reduce_time(const CollectiveLink& link, int ranks, double bytes) {
  return ring_collective_time(link, ranks, bytes, 2);
}
std::chrono::nanoseconds reduce_scatter_time(const CollectiveLink& link, int ranks, double bytes) {
  return ring_collective_time(link, ranks, bytes, 1);
}
std::chrono::nanoseconds all_gather_time(const CollectiveLink& link, int ranks, double bytes) {
  return ring_collective_time(link, ranks, bytes, 1);
}

std::chrono::nanoseconds all_reduce_time(const ChipSpec& chip, int ranks, double bytes) {
  return all_reduce_time(collective_link(chip, ranks), ranks, bytes);
}
std::chrono::nanoseconds reduce_scatter_time(const ChipSpec& chip, int ranks, double bytes) {
  return reduce_scatter_time(collective_link(chip, ranks), ranks, bytes);
}
std::chrono::nanoseconds all_gather_time(const ChipSpec& chip, int ranks, double bytes) {
  return all_gather_time(collective_link(chip, ranks), ranks, bytes);
}

// kHostStepMemoryEfficiency, 0.5: an estimate, not a measured figure of any chip's host. The CPU
// step streams five to seven arrays per element (gradient in; master weight and one or two
// moments in and out; working parameter out) across the host's memory channels. A STREAM triad,
// three arrays, commonly reaches 70-80% of a server's theoretical DRAM bandwidth; more streams,
// NUMA placement that a pinned-memory allocator does not control, and the moments' arithmetic
// (a square root and a division per element, vectorised) leave less. tools/cost_check.sh checks
// the formula against this machine's measured CPU step (its host bandwidth a measured triad).
std::chrono::nanoseconds host_step_time(const ChipSpec& chip, const HostStepWork& work) {
  EBB_CHECK(chip.host_memory_bytes_per_s > 0 && chip.nvme_bytes_per_s_per_node > 0 &&
                chip.gpus_per_node > 0,
            "host_step_time on chip " + chip.name + " without host memory or NVMe bandwidth");
  const double host_bw = chip.host_memory_bytes_per_s * kHostStepMemoryEfficiency;
  const double nvme_bw = chip.nvme_bytes_per_s_per_node / chip.gpus_per_node;
  const double host_s = static_cast<double>(work.host_slice_bytes) / host_bw;
  const double nvme_update_s = static_cast<double>(work.nvme_slice_bytes) / host_bw;
  const double nvme_io_s =
      static_cast<double>(work.nvme_read_bytes + work.nvme_write_bytes) / nvme_bw;
  return cost_seconds_to_ns(host_s + std::max(nvme_update_s, nvme_io_s));
}

}  // namespace ebb
