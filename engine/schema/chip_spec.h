// ChipSpec: one accelerator as a hardware profile describes it at full model scale (issue 18):
// its memory, its HBM bandwidth, dense tensor-core and plain throughput per precision, its host
// link, the chip-to-chip and inter-node links, and the host memory and NVMe a node gives each
// GPU by default. Read from profiles/hw/NAME.json (the "chip" object, format in
// profiles/README.md); every figure carries its source in `sources`.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kernels/status.h"

namespace ebb {

struct ChipSpec {
  std::string name;               // "h100-sxm", "h20", "ascend-910b"
  std::size_t memory_bytes = 0;   // device memory
  double memory_bytes_per_s = 0;  // HBM (or GDDR) bandwidth
  double bf16_flops_per_s = 0;    // dense tensor-core throughput, not the sparse figure
  double fp16_flops_per_s = 0;
  double tf32_flops_per_s = 0;
  double fp32_flops_per_s = 0;            // plain fp32 (CUDA cores)
  int pcie_generation = 0;                // of the host link
  double host_to_device_bytes_per_s = 0;  // typical measured, one direction busy
  double device_to_host_bytes_per_s = 0;
  double bidirectional_bytes_per_s = 0;  // each way, with both directions busy
  double host_memory_bytes_per_s = 0;    // the host's memory bandwidth per GPU
  std::string chip_link;                 // "nvlink", "hccs" or "pcie"
  double chip_link_bytes_per_s = 0;      // per GPU, one direction
  int gpus_per_node = 0;
  double inter_node_bytes_per_s = 0;          // per GPU, one direction
  std::size_t host_memory_bytes_per_gpu = 0;  // default; the user overrides
  double nvme_bytes_per_s_per_node = 0;       // default; the user overrides
  // Field name -> its public source, or "estimate: why".
  std::map<std::string, std::string> sources;

  friend bool operator==(const ChipSpec&, const ChipSpec&) = default;
};

// Parses a hardware profile that carries a "chip" object. A missing, non-numeric or non-positive
// figure, or a figure without a source, is kInvalidArgument naming source_name and the field.
// The file is a hardware profile too (hardware_model.h reads its link fields and ignores the
// chip object), and its host_to_device_bytes_per_s and device_to_host_bytes_per_s equal the
// chip's PCIe figures, or the file is refused naming them.
// Every field of the chip object, in the order profiles/README.md lists them; each needs a
// source.
std::span<const char* const> chip_spec_fields();

Result<ChipSpec> chip_spec_from_json(std::string_view text, const std::string& source_name);
Result<ChipSpec> read_chip_spec(const std::string& path);
// The chip of a hardware profile that may have none: nullopt for a profile without a "chip"
// object (a host link only); for one with it, read_chip_spec's answer, errors included.
Result<std::optional<ChipSpec>> read_chip_spec_if_any(const std::string& path);

}  // namespace ebb
