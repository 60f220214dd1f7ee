// ChipSpec: every bundled hardware profile parses, and a chip object with a figure or a source
// missing, zero or negative is refused naming the field.
#include "engine/schema/chip_spec.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/schema/atomic_file.h"
#include "engine/schema/hardware_model.h"

namespace ebb {
namespace {

const std::string kHwDir = EBB_SOURCE_DIR "/profiles/hw/";

// The chip object's fields, as profiles/README.md lists them.
const std::vector<std::string> kChipFieldNames(chip_spec_fields().begin(),
                                               chip_spec_fields().end());

void expect_chip_error(const Result<ChipSpec>& r, const std::string& text) {
  ASSERT_FALSE(r.ok()) << "expected an error containing \"" << text << "\"";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_NE(r.status().message().find(text), std::string::npos)
      << "expected \"" << text << "\" in: " << r.status().message();
}

nlohmann::json h100_document() {
  Result<std::string> text = read_text_file(kHwDir + "h100-sxm.json", "hardware profile");
  EXPECT_TRUE(text.ok()) << text.status().to_string();
  return nlohmann::json::parse(*text);
}

Result<ChipSpec> parse_chip(const nlohmann::json& doc) {
  return chip_spec_from_json(doc.dump(), "h100.json");
}

TEST(ChipSpec, EveryBundledProfileParses) {
  std::set<std::string> chips;
  for (const auto& entry : std::filesystem::directory_iterator(kHwDir)) {
    if (entry.path().extension() != ".json") continue;
    const std::string path = entry.path().string();
    const std::string stem = entry.path().stem().string();
    Result<HardwareModel> link = read_hardware_model(path);
    ASSERT_TRUE(link.ok()) << link.status().to_string();
    EXPECT_EQ(link->name, stem);
    Result<std::string> text = read_text_file(path, "hardware profile");
    ASSERT_TRUE(text.ok());
    if (!nlohmann::json::parse(*text).contains("chip")) continue;
    Result<ChipSpec> chip = read_chip_spec(path);
    ASSERT_TRUE(chip.ok()) << chip.status().to_string();
    EXPECT_EQ(chip->name, stem);
    EXPECT_EQ(chip->sources.size(), kChipFieldNames.size()) << path;
    // The host link a chip file plans with is its chip's PCIe figures.
    EXPECT_EQ(link->host_to_device_bytes_per_s, chip->host_to_device_bytes_per_s) << path;
    EXPECT_EQ(link->device_to_host_bytes_per_s, chip->device_to_host_bytes_per_s) << path;
    chips.insert(stem);
  }
  const std::set<std::string> expected = {
      "h100-sxm", "h200-sxm", "h800-sxm", "a100-80gb-sxm", "a800-80gb-sxm", "h20",
      "l40s",     "l20",      "l2",       "ascend-910b"};
  EXPECT_EQ(chips, expected);
}

TEST(ChipSpec, ReadsTheH100Figures) {
  Result<ChipSpec> c = read_chip_spec(kHwDir + "h100-sxm.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->memory_bytes, std::size_t{80} << 30);
  EXPECT_DOUBLE_EQ(c->memory_bytes_per_s, 3.35e12);
  EXPECT_DOUBLE_EQ(c->bf16_flops_per_s, 989.4e12);  // dense: the datasheet's 1,979 is sparse
  EXPECT_EQ(c->pcie_generation, 5);
  EXPECT_EQ(c->chip_link, "nvlink");
  EXPECT_EQ(c->gpus_per_node, 8);
  EXPECT_TRUE(c->sources.at("host_to_device_bytes_per_s").starts_with("estimate:"));
}

TEST(ChipSpec, EachFigureMissingZeroOrNegativeIsRefusedByName) {
  const nlohmann::json doc = h100_document();
  ASSERT_TRUE(parse_chip(doc).ok()) << parse_chip(doc).status().to_string();
  for (const std::string& field : kChipFieldNames) {
    SCOPED_TRACE(field);
    nlohmann::json removed = doc;
    removed["chip"].erase(field);
    expect_chip_error(parse_chip(removed), "h100.json: chip." + field + ": missing");
    for (double bad : {0.0, -1.0}) {
      nlohmann::json changed = doc;
      changed["chip"][field] = bad;
      expect_chip_error(parse_chip(changed), "h100.json: chip." + field + ": ");
    }
    nlohmann::json text = doc;
    text["chip"][field] = "many";
    expect_chip_error(parse_chip(text), "h100.json: chip." + field + ": expected");
  }
}

// A profile may have no chip (a host link only): none, not an error; a chip with a bad figure is
// refused as read_chip_spec refuses it, not taken for a profile without one.
TEST(ChipSpec, AProfileWithoutAChipHasNone) {
  Result<std::optional<ChipSpec>> link_only = read_chip_spec_if_any(kHwDir + "pcie4-25gbps.json");
  ASSERT_TRUE(link_only.ok()) << link_only.status().to_string();
  EXPECT_FALSE(link_only->has_value());
  Result<std::optional<ChipSpec>> h100 = read_chip_spec_if_any(kHwDir + "h100-sxm.json");
  ASSERT_TRUE(h100.ok()) << h100.status().to_string();
  ASSERT_TRUE(h100->has_value());
  EXPECT_EQ(**h100, *read_chip_spec(kHwDir + "h100-sxm.json"));
  nlohmann::json bad = h100_document();
  bad["chip"]["memory_bytes"] = 0;
  const std::string path = testing::TempDir() + "chip_spec_test_bad_chip.json";
  ASSERT_TRUE(write_file_atomically(path, bad.dump()).ok());
  Result<std::optional<ChipSpec>> refused = read_chip_spec_if_any(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("chip.memory_bytes"), std::string::npos)
      << refused.status().message();
  std::remove(path.c_str());
}

TEST(ChipSpec, RangesAndKindsAreChecked) {
  const nlohmann::json doc = h100_document();
  auto with = [&](const std::string& field, const nlohmann::json& value) {
    nlohmann::json d = doc;
    d["chip"][field] = value;
    return parse_chip(d);
  };
  expect_chip_error(with("pcie_generation", 7),
                    "chip.pcie_generation: must be an integer in [3, 6]");
  expect_chip_error(with("pcie_generation", 2),
                    "chip.pcie_generation: must be an integer in [3, 6]");
  expect_chip_error(with("gpus_per_node", 2.5), "chip.gpus_per_node: expected an integer");
  expect_chip_error(with("chip_link", "infiniband"), "chip.chip_link: expected \"nvlink\"");
  expect_chip_error(with("memory_bytes", 1.5), "chip.memory_bytes: must be a whole number");
  expect_chip_error(with("bidirectional_bytes_per_s", 60e9),
                    "chip.bidirectional_bytes_per_s: is each way with both directions busy");
  expect_chip_error(with("nvme_per_node", 1e9), "chip.nvme_per_node: unknown field");
  EXPECT_TRUE(with("chip_link", "hccs").ok());
  EXPECT_TRUE(with("pcie_generation", 6).ok());
}

TEST(ChipSpec, EachFigureNeedsASource) {
  const nlohmann::json doc = h100_document();
  for (const std::string& field : kChipFieldNames) {
    SCOPED_TRACE(field);
    nlohmann::json d = doc;
    d["chip"]["sources"].erase(field);
    expect_chip_error(parse_chip(d), "h100.json: chip.sources." + field + ": missing");
  }
  auto with_source = [&](const nlohmann::json& value) {
    nlohmann::json d = doc;
    d["chip"]["sources"]["memory_bytes"] = value;
    return parse_chip(d);
  };
  expect_chip_error(with_source(""), "chip.sources.memory_bytes: must name a public source");
  expect_chip_error(with_source("estimate:  "), "chip.sources.memory_bytes: an estimate says why");
  expect_chip_error(with_source(80), "chip.sources.memory_bytes: expected a string");
  EXPECT_TRUE(with_source("estimate: a guess, for the test").ok());

  nlohmann::json no_sources = doc;
  no_sources["chip"].erase("sources");
  expect_chip_error(parse_chip(no_sources), "h100.json: chip.sources: missing");
  nlohmann::json stray = doc;
  stray["chip"]["sources"]["fp8_flops_per_s"] = "a datasheet";
  expect_chip_error(parse_chip(stray), "chip.sources.fp8_flops_per_s: names no field of the chip");
}

TEST(ChipSpec, HostLinkFieldsEqualTheChipsPcieFigures) {
  nlohmann::json doc = h100_document();
  doc["host_to_device_bytes_per_s"] = 45e9;
  expect_chip_error(parse_chip(doc),
                    "h100.json: host_to_device_bytes_per_s: is 45000000000.0 but "
                    "chip.host_to_device_bytes_per_s is 50000000000.0");
  nlohmann::json no_chip = h100_document();
  no_chip.erase("chip");
  expect_chip_error(parse_chip(no_chip), "h100.json: chip: missing");
  // The link fields are still checked as a hardware profile's.
  nlohmann::json no_latency = h100_document();
  no_latency.erase("link_latency_ns");
  expect_chip_error(parse_chip(no_latency), "h100.json: link_latency_ns: missing");
}

}  // namespace
}  // namespace ebb
