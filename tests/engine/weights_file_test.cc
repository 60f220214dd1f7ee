// Weights files from bytes (parse_weights_file): what write_weights_file wrote reads back, and
// a header whose format fields are not strings is refused as not an ebb-weights file.

#include "engine/schema/weights_file.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace ebb {
namespace {

// The bytes write_weights_file writes for `w` (at `path`, removed again; empty if it failed).
std::string written_bytes(const std::string& path, const WeightsFile& w) {
  if (!write_weights_file(path, w).ok()) return {};
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::filesystem::remove(path);
  return bytes;
}

// A weights file of `header` (a JSON object), padded as the format says, and no data.
std::string weights_bytes_of_header(std::string header) {
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string file(8, '\0');
  const std::uint64_t h = header.size();
  std::memcpy(file.data(), &h, sizeof h);
  return file + header;
}

TEST(WeightsFileParse, ReadsBackWhatWasWritten) {
  const std::string path = ::testing::TempDir() + "/weights_file_parse.safetensors";
  WeightsFile w;
  w.tensors.push_back({"wte", {2, 2}, {1, 2, 3, 4}});
  w.metadata.emplace_back("step", "7");
  const std::string bytes = written_bytes(path, w);
  ASSERT_FALSE(bytes.empty()) << "write_weights_file failed";

  Result<WeightsFile> r = parse_weights_file(bytes, "w.safetensors");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 1u);
  EXPECT_EQ(r->tensors[0].name, "wte");
  EXPECT_EQ(r->tensors[0].values, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(r->metadata, w.metadata);
}

// A tensor with a 0 dimension has no data: reading it copied 0 bytes into a null pointer, which
// UBSan reports (tests/fuzz/corpus/weights_file/regress-empty-tensor-memcpy-null.safetensors).
TEST(WeightsFileParse, ReadsATensorWithoutElements) {
  const std::string path = ::testing::TempDir() + "/weights_file_empty.safetensors";
  WeightsFile w;
  w.tensors.push_back({"empty", {3, 0}, {}});
  const std::string bytes = written_bytes(path, w);
  ASSERT_FALSE(bytes.empty()) << "write_weights_file failed";

  Result<WeightsFile> r = parse_weights_file(bytes, "w.safetensors");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 1u);
  EXPECT_EQ(r->tensors[0].shape, (std::vector<std::int64_t>{3, 0}));
  EXPECT_TRUE(r->tensors[0].values.empty());
}

// nlohmann's value("format", "") threw on a number and the uncaught exception ended the process
// (tests/fuzz/corpus/weights_file/regress-metadata-format-not-string.safetensors).
TEST(WeightsFileParse, FormatFieldsThatAreNotStringsAreRefused) {
  for (const char* header : {R"({"__metadata__":{"format":1,"version":"1"}})",
                             R"({"__metadata__":{"format":"ebb-weights","version":[1]}})",
                             R"({"__metadata__":{"format":null}})"}) {
    Result<WeightsFile> r = parse_weights_file(weights_bytes_of_header(header), "w.safetensors");
    ASSERT_FALSE(r.ok()) << header;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
    EXPECT_NE(r.status().message().find("not an ebb-weights file"), std::string::npos)
        << r.status().to_string();
  }
}

// nlohmann's get<std::vector<std::int64_t>>() cast 3e27 to an integer, which is undefined
// (tests/fuzz/corpus/weights_file/regress-float-dimension-cast.safetensors).
TEST(WeightsFileParse, ShapesAndOffsetsMustBeIntegers) {
  for (const char* tensor : {R"("t":{"dtype":"F32","shape":[2,3e27],"data_offsets":[0,0]})",
                             R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]})",
                             R"("t":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]})"}) {
    const std::string header =
        std::string(R"({"__metadata__":{"format":"ebb-weights","version":"1"},)") + tensor + "}";
    Result<WeightsFile> r = parse_weights_file(weights_bytes_of_header(header), "w.safetensors");
    ASSERT_FALSE(r.ok()) << header;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
    EXPECT_NE(r.status().message().find("not arrays of integers"), std::string::npos)
        << r.status().to_string();
  }
}

}  // namespace
}  // namespace ebb
