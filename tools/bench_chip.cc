// `ebb bench chip`: the cpu device described as a chip (engine/schema/chip_spec.h), so that the
// cost model's roofline (engine/planner/cost_model.h) can be checked against the cpu device's
// measured op times (tools/cost_check.sh). Two figures are measured here, as the cpu kernels run
// (kernels/cpu/nn_cpu_launch.h: TBB over every core, this build's compiler flags): the fp32
// multiply-add throughput, and the memory bandwidth of a triad. The cpu kernels compute 16-bit
// types in fp32, so the bf16, fp16 and tf32 figures are the fp32 one. The chip's links, host and
// node figures do not apply to a cpu device (the check runs one device and moves nothing over a
// link): they are 1 GB/s and 1 GiB placeholders whose sources say so.
#include "tools/bench_chip.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "kernels/statistics.h"

namespace ebb::cli {
namespace {

constexpr int kChipProbeRepetitions = 5;
constexpr std::size_t kFmaChains = 32;             // independent accumulators per task
constexpr std::size_t kFmaChunk = 100'000;         // iterations between looks at the clock
constexpr std::chrono::milliseconds kFmaRun{200};  // each repetition runs this long
constexpr std::size_t kTriadElements = std::size_t{1} << 25;  // 32 Mi floats: 128 MiB per array

// fp32 multiply-adds per second over every core: each task runs kFmaChains independent chains
// of acc = acc * m + a (two FLOPs), which the compiler vectorises as the kernels' loops are, for
// kFmaRun (a time, not a count, so that an unoptimised build takes no longer).
double measure_fp32_flops_per_s() {
  const std::size_t tasks = std::max(1U, std::thread::hardware_concurrency());
  std::vector<float> sink(tasks);
  std::vector<std::size_t> iterations(tasks);
  std::vector<double> rates;
  for (int r = 0; r < kChipProbeRepetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + kFmaRun;
    tbb::parallel_for(std::size_t{0}, tasks, [&](std::size_t t) {
      float acc[kFmaChains];
      for (std::size_t j = 0; j < kFmaChains; ++j) acc[j] = static_cast<float>(j + t);
      const float m = 0.999999F;
      const float a = 1e-6F;
      std::size_t done = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        for (std::size_t i = 0; i < kFmaChunk; ++i) {
          for (float& x : acc) x = x * m + a;
        }
        done += kFmaChunk;
      }
      float total = 0;
      for (float x : acc) total += x;
      sink[t] = total;
      iterations[t] = done;
    });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total_iterations = 0;
    for (std::size_t n : iterations) total_iterations += static_cast<double>(n);
    rates.push_back(2.0 * kFmaChains * total_iterations / seconds);
  }
  // Keep the result alive so the loop is not removed.
  volatile float keep = 0;
  for (float s : sink) keep = keep + s;
  (void)keep;
  return median(rates);
}

// Bytes per second of a = b + s * c over 128 MiB arrays (two read, one written), every core.
double measure_memory_bytes_per_s() {
  std::vector<float> a(kTriadElements), b(kTriadElements, 1.0F), c(kTriadElements, 2.0F);
  constexpr std::size_t kBlock = std::size_t{1} << 16;
  const std::size_t blocks = (kTriadElements + kBlock - 1) / kBlock;
  const auto pass = [&] {
    tbb::parallel_for(std::size_t{0}, blocks, [&](std::size_t k) {
      const std::size_t end = std::min(kTriadElements, (k + 1) * kBlock);
      for (std::size_t i = k * kBlock; i < end; ++i) a[i] = b[i] + 3.0F * c[i];
    });
  };
  pass();  // touch the pages
  std::vector<double> rates;
  for (int r = 0; r < kChipProbeRepetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(3.0 * sizeof(float) * static_cast<double>(kTriadElements) / seconds);
  }
  return median(rates);
}

}  // namespace

std::string measured_cpu_chip_json(std::size_t memory_bytes) {
  const double flops = measure_fp32_flops_per_s();
  const double bandwidth = measure_memory_bytes_per_s();
  const std::string measured_flops =
      "measured by `ebb bench chip` on this machine: fp32 multiply-adds over every core with "
      "this build's compiler flags, median of 5";
  const std::string measured_memory =
      "measured by `ebb bench chip` on this machine: a triad over 128 MiB arrays on every core, "
      "median of 5";
  const std::string no_tensor_unit =
      "estimate: the cpu kernels compute 16-bit types in fp32, so the measured fp32 rate";
  const std::string not_applicable =
      "estimate: does not apply to the cpu device; a placeholder the cost check does not use (it "
      "runs one device and moves nothing over a link)";
  nlohmann::ordered_json chip;
  chip["memory_bytes"] = memory_bytes;
  chip["memory_bytes_per_s"] = bandwidth;
  chip["bf16_flops_per_s"] = flops;
  chip["fp16_flops_per_s"] = flops;
  chip["tf32_flops_per_s"] = flops;
  chip["fp32_flops_per_s"] = flops;
  chip["pcie_generation"] = 4;
  chip["host_to_device_bytes_per_s"] = 1e9;
  chip["device_to_host_bytes_per_s"] = 1e9;
  chip["bidirectional_bytes_per_s"] = 1e9;
  chip["host_memory_bytes_per_s"] = bandwidth;
  chip["chip_link"] = "pcie";
  chip["chip_link_bytes_per_s"] = 1e9;
  chip["gpus_per_node"] = 1;
  chip["inter_node_bytes_per_s"] = 1e9;
  chip["host_memory_bytes_per_gpu"] = std::size_t{1} << 30;
  chip["nvme_bytes_per_s_per_node"] = 1e9;
  nlohmann::ordered_json sources;
  for (const char* field : chip_spec_fields()) sources[field] = not_applicable;
  sources["memory_bytes"] = "estimate: the cpu device's capacity in the trainer, address space";
  sources["memory_bytes_per_s"] = measured_memory;
  sources["host_memory_bytes_per_s"] = measured_memory;
  sources["fp32_flops_per_s"] = measured_flops;
  for (const char* f : {"bf16_flops_per_s", "fp16_flops_per_s", "tf32_flops_per_s"}) {
    sources[f] = no_tensor_unit;
  }
  chip["sources"] = sources;
  nlohmann::ordered_json profile;
  profile["name"] = "cpu-measured";
  profile["source"] = "the cpu device of this machine, measured by `ebb bench chip`";
  profile["host_to_device_bytes_per_s"] = 1e9;
  profile["device_to_host_bytes_per_s"] = 1e9;
  profile["link_latency_ns"] = 0;
  profile["duplex"] = true;
  profile["page_bytes"] = std::size_t{64} << 10;
  profile["chip"] = chip;
  return profile.dump(2) + "\n";
}

}  // namespace ebb::cli
