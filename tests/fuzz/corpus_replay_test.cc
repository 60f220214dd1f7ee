// Replays every file of every fuzz corpus (tests/fuzz/corpus/<target>/: the seeds and the
// inputs that once crashed a parser) through its fuzz target, so that the ordinary build, with
// any compiler and under the ASan stage's sanitizers, keeps each regression fixed. A target
// aborts or a sanitizer reports on a bug; bad input alone must not.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_targets.h"

namespace ebb::fuzz {

// GoogleTest looks this name up to print a parameter: the target's name, not its bytes.
void PrintTo(const FuzzTarget& target, std::ostream* os) {  // NOLINT(readability-identifier-naming)
  *os << target.name;
}

namespace {

namespace fs = std::filesystem;

fs::path corpus_root() { return fs::path(EBB_SOURCE_DIR) / "tests" / "fuzz" / "corpus"; }

std::vector<fs::path> corpus_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(CorpusReplay, EveryCorpusFolderNamesATarget) {
  for (const auto& entry : fs::directory_iterator(corpus_root())) {
    const std::string name = entry.path().filename().string();
    const auto targets = fuzz_targets();
    const bool known = std::any_of(targets.begin(), targets.end(),
                                   [&](const FuzzTarget& t) { return t.name == name; });
    EXPECT_TRUE(known) << entry.path() << " is the corpus of no target in fuzz_targets.h";
  }
}

class CorpusReplayTarget : public ::testing::TestWithParam<FuzzTarget> {};

TEST_P(CorpusReplayTarget, EveryFileRunsThroughItsTarget) {
  const FuzzTarget& target = GetParam();
  const fs::path dir = corpus_root() / std::string(target.name);
  ASSERT_TRUE(fs::is_directory(dir)) << "no seed corpus for fuzz_" << target.name << ": " << dir;
  const std::vector<fs::path> files = corpus_files(dir);
  // A valid input and a malformed one at least, so that the target's both sides run.
  EXPECT_GE(files.size(), 2u) << dir;
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    const std::vector<std::uint8_t> bytes = file_bytes(file);
    target.run(bytes.data(), bytes.size());
  }
}

INSTANTIATE_TEST_SUITE_P(CorpusReplay, CorpusReplayTarget, ::testing::ValuesIn(fuzz_targets()),
                         [](const ::testing::TestParamInfo<FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace ebb::fuzz
