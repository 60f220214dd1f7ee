// Cost model of kernels and collectives on a ChipSpec (issue 18), for the sim device's clock.
//
// Kernels, a roofline with a stated efficiency per kernel class:
//   kernel_time = max(flops / (peak(kind, precision) * efficiency(kind).compute),
//                     bytes / (chip.memory_bytes_per_s * efficiency(kind).memory))
//                 + kKernelLaunchOverhead
// where peak is the chip's dense tensor-core throughput in the kernel's precision for GEMM and
// attention (plain fp32 for MathPrecision::kFp32) and its plain fp32 throughput for
// elementwise and reduction kernels, which do not run on tensor cores. The efficiencies and
// the reasoning behind each are in cost_model.cc.
//
// Collectives among N ranks of one buffer of `bytes` (the whole buffer: all-reduce's input,
// reduce-scatter's input, all-gather's output), over a link of bandwidth bw (one direction,
// per GPU) and per-step latency a, as a ring runs them:
//   all-reduce      2(N-1)/N * bytes / bw + 2(N-1) * a
//   reduce-scatter   (N-1)/N * bytes / bw +  (N-1) * a
//   all-gather       (N-1)/N * bytes / bw +  (N-1) * a
// N = 1 costs nothing. The link: the chip-to-chip link (NVLink, HCCS or PCIe) while all N ranks
// fit in one node (N <= gpus_per_node); past that the ring crosses nodes and the slower of the
// chip link and the inter-node bandwidth per GPU bounds it.
//
// The optimizer's step off the device (ZeRO-Offload's CPU step; Optimizer::set_host_step_cost),
// memory bound on the host, each NVMe slice's chunks streamed so that reading, updating and
// writing back overlap:
//   host_step_time = host_slice_bytes / (host_bw * e)
//                  + max(nvme_slice_bytes / (host_bw * e), (nvme_read + nvme_write) / nvme_bw)
// host_bw: the chip's host memory bandwidth per GPU; nvme_bw: the node's NVMe bandwidth over its
// GPUs (every rank streams its state at once); e = kHostStepMemoryEfficiency.
//
// Thread safety: pure functions.
#pragma once

#include <chrono>

#include "engine/optim/optimizer.h"
#include "engine/schema/chip_spec.h"
#include "kernels/device.h"

namespace ebb {

// The kernel classes the efficiency factors are stated for.
enum class KernelClass { kGemm, kAttention, kElementwise, kReduction };
// The arithmetic a kernel's FLOPs run in (which throughput of the chip applies).
enum class MathPrecision { kFp32, kTf32, kBf16, kFp16 };

// What one kernel launch does: its FLOPs and the bytes it moves to and from device memory.
struct KernelWork {
  KernelClass kind = KernelClass::kElementwise;
  double flops = 0;
  double bytes = 0;
  MathPrecision precision = MathPrecision::kFp32;
};

// The fraction of the chip's peak a kernel class sustains, in (0, 1].
struct KernelEfficiency {
  double compute = 1;  // of peak_flops_per_s
  double memory = 1;   // of ChipSpec::memory_bytes_per_s
};

// The fixed cost of each launch on top of the roofline: launch latency and the gap between
// back-to-back kernels on one stream (reasoning in cost_model.cc).
inline constexpr std::chrono::nanoseconds kKernelLaunchOverhead{3000};  // 3 us

KernelEfficiency kernel_efficiency(KernelClass kind);
// The throughput a kernel of `kind` in `precision` runs against (see the header comment).
double peak_flops_per_s(const ChipSpec& chip, KernelClass kind, MathPrecision precision);

// Roofline: max(flops / (peak(precision) * compute efficiency(kind)),
//               bytes / (memory bandwidth * memory efficiency(kind))) + launch overhead.
// REQUIRES: work.flops >= 0, work.bytes >= 0, the chip's figures > 0 (as read_chip_spec gives).
std::chrono::nanoseconds kernel_time(const ChipSpec& chip, const KernelWork& work);

// The link a collective's ring runs over.
struct CollectiveLink {
  double bytes_per_s = 0;                    // per GPU, one direction
  std::chrono::nanoseconds step_latency{0};  // per ring step
};

// Per ring step, from NCCL's tuning model (src/graph/tuning.cc, hwLat, Ring algorithm, Simple
// protocol, which NCCL picks for the large buffers a training step reduces): 5.7 us a hop over
// NVLink or PCIe, 6.6 us over the network. HCCS is taken as NVLink's.
inline constexpr std::chrono::nanoseconds kIntraNodeStepLatency{5700};
inline constexpr std::chrono::nanoseconds kInterNodeStepLatency{6600};

// The chip link within a node (ranks <= gpus_per_node), else min(chip link, inter-node).
// REQUIRES: ranks >= 1.
CollectiveLink collective_link(const ChipSpec& chip, int ranks);

// The formulas of the header comment. REQUIRES: ranks >= 1, bytes >= 0, link.bytes_per_s > 0.
std::chrono::nanoseconds all_reduce_time(const CollectiveLink& link, int ranks, double bytes);
std::chrono::nanoseconds reduce_scatter_time(const CollectiveLink& link, int ranks, double bytes);
std::chrono::nanoseconds all_gather_time(const CollectiveLink& link, int ranks, double bytes);

// The link model whose transfer_time(sent), for the bytes one rank sends in a ring step
// sequence ((N-1)/N of the buffer: reduce-scatter, all-gather, all-to-all), is the ring's time
// above: collective_link's bandwidth and N - 1 steps of latency. ZeRO costs its collective ops
// with it on the sim communicator (kernels/comm/sim_communicator.h).
LinkModel collective_link_model(const ChipSpec& chip, int ranks);

// The same over collective_link(chip, ranks).
std::chrono::nanoseconds all_reduce_time(const ChipSpec& chip, int ranks, double bytes);
std::chrono::nanoseconds reduce_scatter_time(const ChipSpec& chip, int ranks, double bytes);
std::chrono::nanoseconds all_gather_time(const ChipSpec& chip, int ranks, double bytes);

// The fraction of the host's memory bandwidth a CPU optimizer step sustains (reasoning in
// cost_model.cc).
inline constexpr double kHostStepMemoryEfficiency = 0.5;
// The header comment's formula. REQUIRES: the chip's figures > 0 (as read_chip_spec gives).
std::chrono::nanoseconds host_step_time(const ChipSpec& chip, const HostStepWork& work);

}  // namespace ebb
