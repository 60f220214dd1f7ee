// The JSON form of ChipSpec: the "chip" object of a hardware profile (profiles/README.md, "The
// chip object").
#include "engine/schema/chip_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "engine/schema/atomic_file.h"
#include "engine/schema/hardware_model_json.h"
#include "engine/schema/json_fields.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

constexpr const char* kChipPath = "chip.";
constexpr const char* kChipSourcesPath = "chip.sources.";
constexpr std::string_view kChipEstimatePrefix = "estimate:";
// The largest byte count a JSON number (a double) holds exactly: 2^53 bytes (8 PiB).
constexpr double kChipLargestExactBytes = 9007199254740992.0;

bool is_chip_field(const std::string& key) {
  for (const char* field : chip_spec_fields()) {
    if (key == field) return true;
  }
  return false;
}

// A rate or a size: a finite number > 0.
Result<double> chip_positive_figure(const JsonFieldReader& r, const Json& chip, const char* key) {
  EBB_ASSIGN_OR_RETURN(double v, r.number_field(chip, kChipPath, key));
  if (!std::isfinite(v) || v <= 0) {
    return r.fail(std::string(kChipPath) + key,
                  "must be a finite number > 0, found " + chip.at(key).dump());
  }
  return v;
}

// A byte count: a whole number > 0 (written 85899345920 or 8.589934592e10).
Result<std::size_t> chip_byte_count(const JsonFieldReader& r, const Json& chip, const char* key) {
  EBB_ASSIGN_OR_RETURN(double v, chip_positive_figure(r, chip, key));
  if (v != std::floor(v) || v > kChipLargestExactBytes) {
    return r.fail(std::string(kChipPath) + key,
                  "must be a whole number of bytes > 0, found " + chip.at(key).dump());
  }
  return static_cast<std::size_t>(v);
}

// An integer in [lo, hi].
Result<int> chip_integer_in(const JsonFieldReader& r, const Json& chip, const char* key,
                            std::int64_t lo, std::int64_t hi) {
  EBB_ASSIGN_OR_RETURN(std::int64_t v, r.signed_field(chip, kChipPath, key));
  if (v < lo || v > hi) {
    return r.fail(std::string(kChipPath) + key, "must be an integer in [" + std::to_string(lo) +
                                                    ", " + std::to_string(hi) + "], found " +
                                                    std::to_string(v));
  }
  return static_cast<int>(v);
}

Status read_chip_figures(const JsonFieldReader& r, const Json& chip, ChipSpec& c) {
  for (const auto& [key, value] : chip.items()) {
    if (key != "sources" && !is_chip_field(key)) {
      return r.fail(kChipPath + key, "unknown field (profiles/README.md lists the chip object's)");
    }
  }
  EBB_ASSIGN_OR_RETURN(c.memory_bytes, chip_byte_count(r, chip, "memory_bytes"));
  EBB_ASSIGN_OR_RETURN(c.memory_bytes_per_s, chip_positive_figure(r, chip, "memory_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.bf16_flops_per_s, chip_positive_figure(r, chip, "bf16_flops_per_s"));
  EBB_ASSIGN_OR_RETURN(c.fp16_flops_per_s, chip_positive_figure(r, chip, "fp16_flops_per_s"));
  EBB_ASSIGN_OR_RETURN(c.tf32_flops_per_s, chip_positive_figure(r, chip, "tf32_flops_per_s"));
  EBB_ASSIGN_OR_RETURN(c.fp32_flops_per_s, chip_positive_figure(r, chip, "fp32_flops_per_s"));
  EBB_ASSIGN_OR_RETURN(c.pcie_generation, chip_integer_in(r, chip, "pcie_generation", 3, 6));
  EBB_ASSIGN_OR_RETURN(c.host_to_device_bytes_per_s,
                       chip_positive_figure(r, chip, "host_to_device_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.device_to_host_bytes_per_s,
                       chip_positive_figure(r, chip, "device_to_host_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.bidirectional_bytes_per_s,
                       chip_positive_figure(r, chip, "bidirectional_bytes_per_s"));
  const double one_way = std::min(c.host_to_device_bytes_per_s, c.device_to_host_bytes_per_s);
  if (c.bidirectional_bytes_per_s > one_way) {
    return r.fail("chip.bidirectional_bytes_per_s",
                  "is each way with both directions busy, so at most the slower direction "
                  "alone (" +
                      Json(one_way).dump() + "), found " +
                      Json(c.bidirectional_bytes_per_s).dump());
  }
  EBB_ASSIGN_OR_RETURN(c.host_memory_bytes_per_s,
                       chip_positive_figure(r, chip, "host_memory_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.chip_link, r.string_field(chip, kChipPath, "chip_link"));
  if (c.chip_link != "nvlink" && c.chip_link != "hccs" && c.chip_link != "pcie") {
    return r.fail("chip.chip_link", "expected \"nvlink\", \"hccs\" or \"pcie\", found " +
                                        chip.at("chip_link").dump());
  }
  EBB_ASSIGN_OR_RETURN(c.chip_link_bytes_per_s,
                       chip_positive_figure(r, chip, "chip_link_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.gpus_per_node, chip_integer_in(r, chip, "gpus_per_node", 1, 1 << 20));
  EBB_ASSIGN_OR_RETURN(c.inter_node_bytes_per_s,
                       chip_positive_figure(r, chip, "inter_node_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(c.host_memory_bytes_per_gpu,
                       chip_byte_count(r, chip, "host_memory_bytes_per_gpu"));
  EBB_ASSIGN_OR_RETURN(c.nvme_bytes_per_s_per_node,
                       chip_positive_figure(r, chip, "nvme_bytes_per_s_per_node"));
  return ok_status();
}

// Every field has a source: a public one (a datasheet's title or address), or "estimate: why".
Status read_chip_sources(const JsonFieldReader& r, const Json& chip, ChipSpec& c) {
  auto it = chip.find("sources");
  if (it == chip.end()) {
    return r.fail("chip.sources",
                  "missing: every figure names its public source or starts \"estimate:\"");
  }
  if (!it->is_object()) return r.fail("chip.sources", "expected an object");
  const Json& sources = *it;
  for (const auto& [key, value] : sources.items()) {
    if (!is_chip_field(key)) return r.fail(kChipSourcesPath + key, "names no field of the chip");
  }
  for (const char* field : chip_spec_fields()) {
    const std::string path = std::string(kChipSourcesPath) + field;
    auto s = sources.find(field);
    if (s == sources.end()) {
      return r.fail(path, "missing: every figure names its public source or starts \"estimate:\"");
    }
    if (!s->is_string()) return r.fail(path, "expected a string, found " + s->dump());
    const std::string text = s->get<std::string>();
    const bool estimate = text.starts_with(kChipEstimatePrefix);
    const std::string said = estimate ? text.substr(kChipEstimatePrefix.size()) : text;
    if (said.find_first_not_of(" \t") == std::string::npos) {
      return r.fail(path, estimate ? "an estimate says why" : "must name a public source");
    }
    c.sources.emplace(field, text);
  }
  return ok_status();
}

// A chip file is a hardware profile too; its host link fields are the chip's PCIe figures, so
// that `--hw FILE` plans with the link the chip object describes.
Status check_link_matches_chip(const JsonFieldReader& r, const HardwareModel& m,
                               const ChipSpec& c) {
  auto check = [&](const char* key, double link, double chip) -> Status {
    if (link == chip) return ok_status();
    return r.fail(key, "is " + Json(link).dump() + " but chip." + key + " is " + Json(chip).dump() +
                           ": a chip file's host link fields equal its chip's PCIe figures");
  };
  EBB_RETURN_IF_ERROR(check("host_to_device_bytes_per_s", m.host_to_device_bytes_per_s,
                            c.host_to_device_bytes_per_s));
  return check("device_to_host_bytes_per_s", m.device_to_host_bytes_per_s,
               c.device_to_host_bytes_per_s);
}

}  // namespace

std::span<const char* const> chip_spec_fields() {
  static constexpr const char* kFields[] = {
      "memory_bytes",
      "memory_bytes_per_s",
      "bf16_flops_per_s",
      "fp16_flops_per_s",
      "tf32_flops_per_s",
      "fp32_flops_per_s",
      "pcie_generation",
      "host_to_device_bytes_per_s",
      "device_to_host_bytes_per_s",
      "bidirectional_bytes_per_s",
      "host_memory_bytes_per_s",
      "chip_link",
      "chip_link_bytes_per_s",
      "gpus_per_node",
      "inter_node_bytes_per_s",
      "host_memory_bytes_per_gpu",
      "nvme_bytes_per_s_per_node",
  };
  return kFields;
}

Result<ChipSpec> chip_spec_from_json(std::string_view text, const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  JsonFieldReader r(source_name);
  if (root.is_discarded()) return r.fail("(document)", "not valid JSON");
  EBB_ASSIGN_OR_RETURN(HardwareModel link, hardware_model_from(root, r, ""));
  EBB_ASSIGN_OR_RETURN(const Json* chip, r.object_field(root, "", "chip"));
  ChipSpec c;
  c.name = link.name;
  EBB_RETURN_IF_ERROR(read_chip_figures(r, *chip, c));
  EBB_RETURN_IF_ERROR(read_chip_sources(r, *chip, c));
  EBB_RETURN_IF_ERROR(check_link_matches_chip(r, link, c));
  return c;
}

Result<ChipSpec> read_chip_spec(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "hardware profile"));
  return chip_spec_from_json(text, path);
}

Result<std::optional<ChipSpec>> read_chip_spec_if_any(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "hardware profile"));
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  // Not JSON, or no chip object: chip_spec_from_json's errors are for a profile that has one;
  // a link-only profile (or a malformed one, which read_hardware_model reports) has none here.
  if (!root.is_object() || !root.contains("chip")) return std::optional<ChipSpec>();
  EBB_ASSIGN_OR_RETURN(ChipSpec chip, chip_spec_from_json(text, path));
  return std::optional<ChipSpec>(std::move(chip));
}

}  // namespace ebb
