// Checkpoints across numbers of ranks, through the `ebb` binary under mpirun (label mpi):
//  - a ZeRO checkpoint written by N ranks resumes under M != N ranks (4 -> 2 and 2 -> 4, stages
//    1, 2 and 3, AdamW; and Adafactor): the master weights and optimizer state the resumed run
//    starts from (--checkpoint-at-start, exported with `ebb checkpoint export
//    --optimizer-state`) are bit for bit those saved, and its losses continue those of an
//    uninterrupted run within the tolerance of another reduction order;
//  - `ebb checkpoint export` of a 2-rank stage-2 checkpoint, loaded by one process with
//    `ebb train --init-from`, starts it from the exported weights bit for bit;
//  - bad input (shards that disagree, an unwritable export path, a weights file with a wrong
//    shape, a missing tensor or a bad checksum) is refused naming the file or tensor, and
//    nothing on disk changes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/schema/weights_file.h"
#include "offload/crc32c.h"

namespace ebb {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int code = -1;
  std::string output;  // stdout and stderr
};

Outcome shell(const std::string& command) {
  Outcome r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) r.output += buffer;
  const int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const std::string kModel =
    " --layers 2 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 --seed 5 --precision bf16"
    " --clip-grad-norm 1 --bucket-mb 0.015625";

Outcome ebb(const std::string& args) {
  return shell("timeout 120 " + std::string(EBB_CLI_PATH) + " " + args);
}

Outcome ebb_mpi(int ranks, const std::string& args) {
  return shell(
      "OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 "
      "timeout 120 " +
      std::string(EBB_MPIEXEC) + " --oversubscribe --allow-run-as-root -np " +
      std::to_string(ranks) + " " + EBB_CLI_PATH + " " + args);
}

// The losses of --json's step lines, by step.
std::map<int, float> losses(const std::string& output) {
  std::map<int, float> out;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("{")) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j.contains("loss")) {
      out[j["step"].get<int>()] = j["loss"].get<float>();
    }
  }
  return out;
}

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(testing::TempDir()) / ("zero_resume_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Every tensor of two weights files equal: names, order, shapes and bits.
void expect_same_tensors(const WeightsFile& a, const WeightsFile& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape) << a.tensors[i].name;
    EXPECT_TRUE(same_bits(a.tensors[i].values, b.tensors[i].values)) << a.tensors[i].name;
  }
}

WeightsFile exported(const std::string& dir, const std::string& out, bool state) {
  const Outcome r =
      ebb("checkpoint export " + dir + " --out " + out + (state ? " --optimizer-state" : ""));
  EXPECT_EQ(r.code, 0) << r.output;
  Result<WeightsFile> w = read_weights_file(out);
  EXPECT_TRUE(w.ok()) << w.status().to_string();
  return w.ok() ? *std::move(w) : WeightsFile{};
}

// Every file under `dir` with its bytes: what "nothing on disk changed" compares.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    out[e.path().string()] = e.is_regular_file()
                                 ? std::string(std::istreambuf_iterator<char>(f), {})
                                 : std::string("<dir>");
  }
  return out;
}

struct Case {
  int stage;
  int from;
  int to;
  std::string optimizer;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return "Stage" + std::to_string(info.param.stage) + "From" + std::to_string(info.param.from) +
         "To" + std::to_string(info.param.to) + "_" + info.param.optimizer;
}

class CheckpointResumeWithOtherRanks : public testing::TestWithParam<Case> {};

TEST_P(CheckpointResumeWithOtherRanks, StartsFromTheSavedStateBitForBit) {
  const Case c = GetParam();
  const std::string dir = fresh_dir(case_name({c, 0}));
  const std::string flags =
      kModel + " --optimizer " + c.optimizer + " --zero " + std::to_string(c.stage) + " --json";
  // The same global batch either side: ranks x --grad-accum.
  const std::string old_accum = " --grad-accum " + std::to_string(std::max(1, c.to / c.from));
  const std::string new_accum = " --grad-accum " + std::to_string(std::max(1, c.from / c.to));
  const Outcome first =
      ebb_mpi(c.from, "train" + flags + old_accum + " --steps 2 --checkpoint-every 2 " +
                          "--checkpoint-dir " + dir + "/a");
  if (c.stage == 3 && first.output.find("the stage must be 0, 1 or 2") != std::string::npos) {
    GTEST_SKIP() << "--zero 3 is not accepted yet";
  }
  ASSERT_EQ(first.code, 0) << first.output;
  const Outcome resumed =
      ebb_mpi(c.to, "train" + flags + new_accum + " --steps 4 --resume --checkpoint-dir " + dir +
                        "/a --checkpoint-at-start " + dir + "/b");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  // (a) The state the resumed run started from, re-sharded for its ranks, is the saved one.
  const WeightsFile saved = exported(dir + "/a", dir + "/a.weights", true);
  const WeightsFile loaded = exported(dir + "/b", dir + "/b.weights", true);
  expect_same_tensors(saved, loaded);
  EXPECT_GT(saved.tensors.size(), 20U);  // masters and state
  bool has_state = false;
  for (const NamedTensor& t : saved.tensors) has_state |= t.name.starts_with("optimizer/");
  EXPECT_TRUE(has_state);
  // (b) Its losses continue an uninterrupted run of the old ranks with the same global batch
  // (they differ by the reduction's association only).
  const Outcome whole = ebb_mpi(c.from, "train" + flags + old_accum + " --steps 4");
  ASSERT_EQ(whole.code, 0) << whole.output;
  const std::map<int, float> want = losses(whole.output);
  const std::map<int, float> got = losses(resumed.output);
  ASSERT_EQ(got.size(), 2U) << resumed.output;
  for (const auto& [step, loss] : got) {
    ASSERT_TRUE(want.contains(step));
    EXPECT_NEAR(loss, want.at(step), 1e-3) << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Zero, CheckpointResumeWithOtherRanks,
                         testing::Values(Case{1, 4, 2, "adamw"}, Case{1, 2, 4, "adamw"},
                                         Case{2, 4, 2, "adamw"}, Case{2, 2, 4, "adamw"},
                                         Case{3, 4, 2, "adamw"}, Case{3, 2, 4, "adamw"},
                                         Case{2, 4, 2, "adafactor"}),
                         case_name);

// The same number of ranks under another stage reads the same shards (stages 1-3) or
// re-partitions stage 0's replicated state.
TEST(CheckpointResumeWithOtherStage, StartsFromTheSavedState) {
  const std::string dir = fresh_dir("stage");
  ASSERT_EQ(ebb_mpi(2, "train" + kModel +
                           " --zero 2 --steps 2 --checkpoint-every 2 "
                           "--checkpoint-dir " +
                           dir + "/a")
                .code,
            0);
  const Outcome r = ebb_mpi(2, "train" + kModel + " --zero 1 --steps 3 --resume --checkpoint-dir " +
                                   dir + "/a --checkpoint-at-start " + dir + "/b");
  ASSERT_EQ(r.code, 0) << r.output;
  expect_same_tensors(exported(dir + "/a", dir + "/a.w", true),
                      exported(dir + "/b", dir + "/b.w", true));
}

TEST(CheckpointExport, InitFromStartsFromTheExportedWeights) {
  const std::string dir = fresh_dir("export");
  ASSERT_EQ(ebb_mpi(2, "train" + kModel +
                           " --zero 2 --steps 2 --checkpoint-every 2 "
                           "--checkpoint-dir " +
                           dir + "/a --checkpoint-at-start " + dir + "/start2")
                .code,
            0);
  const WeightsFile w = exported(dir + "/a", dir + "/w", false);
  ASSERT_FALSE(w.tensors.empty());
  EXPECT_EQ(w.tensors[0].name, "wte");  // the model's declaration order
  // One process from those weights, without ZeRO and with it: it starts from them bit for bit.
  for (const std::string zero : {"", " --zero 1"}) {
    const std::string start = dir + "/start1" + (zero.empty() ? "" : "z");
    const Outcome r = ebb("train" + kModel + zero + " --steps 1 --init-from " + dir +
                          "/w --checkpoint-at-start " + start);
    ASSERT_EQ(r.code, 0) << r.output;
    expect_same_tensors(w, exported(start, start + ".w", false));
  }
  // Where it applies: the initial weights of 2 ranks are those of one process with the seed.
  const Outcome one = ebb("train" + kModel + " --steps 1 --checkpoint-at-start " + dir + "/seed1");
  ASSERT_EQ(one.code, 0) << one.output;
  expect_same_tensors(exported(dir + "/seed1", dir + "/seed1.w", false),
                      exported(dir + "/start2", dir + "/start2.w", false));
}

// Rewrites rank `rank`'s shard manifest with `edit` and republishes its CRC32C, so that only the
// edit is wrong.
void edit_shard_manifest(const std::string& dir, int rank,
                         const std::function<void(nlohmann::json&)>& edit) {
  const std::string top_path = dir + "/sharded-manifest.json";
  std::ifstream tf(top_path);
  nlohmann::json top = nlohmann::json::parse(tf);
  const std::string path = dir + "/" + top["shards"][rank]["manifest"].get<std::string>();
  std::ifstream f(path);
  nlohmann::json m = nlohmann::json::parse(f);
  edit(m);
  const std::string text = m.dump(1);
  std::ofstream(path, std::ios::trunc) << text;
  top["shards"][rank]["manifest_crc32c"] = crc32c(text.data(), text.size());
  std::ofstream(top_path, std::ios::trunc) << top.dump(1);
}

void expect_refused_unchanged(const Outcome& r, const std::string& dir,
                              const std::map<std::string, std::string>& before,
                              const std::vector<std::string>& says) {
  EXPECT_NE(r.code, 0) << r.output;
  for (const std::string& s : says) EXPECT_NE(r.output.find(s), std::string::npos) << r.output;
  EXPECT_EQ(snapshot(dir), before);
}

TEST(CheckpointBadInput, ShardsThatDisagreeAreRefused) {
  const std::string dir = fresh_dir("disagree");
  ASSERT_EQ(ebb_mpi(2, "train" + kModel +
                           " --zero 1 --steps 4 --checkpoint-every 2 "
                           "--checkpoint-dir " +
                           dir + "/a")
                .code,
            0);
  ASSERT_EQ(ebb_mpi(4, "train" + kModel +
                           " --zero 1 --steps 2 --checkpoint-every 2 "
                           "--checkpoint-dir " +
                           dir + "/c")
                .code,
            0);
  const std::string resume = "train" + kModel + " --zero 1 --steps 6 --resume --checkpoint-dir ";
  // A shard of another step.
  fs::copy(dir + "/a", dir + "/steps", fs::copy_options::recursive);
  edit_shard_manifest(dir + "/steps", 1, [](nlohmann::json& m) { m["step"] = 2; });
  auto before = snapshot(dir + "/steps");
  expect_refused_unchanged(ebb("checkpoint export " + dir + "/steps --out " + dir + "/x"),
                           dir + "/steps", before, {"rank-1/step-00000004"});
  EXPECT_FALSE(fs::exists(dir + "/x"));
  expect_refused_unchanged(ebb_mpi(4, resume + dir + "/steps"), dir + "/steps", before,
                           {"rank-1/step-00000004"});
  // A shard of another rank count: 4 ranks' shard 1 published as 2 ranks' shard 1.
  fs::copy(dir + "/c", dir + "/ranks", fs::copy_options::recursive);
  fs::remove_all(dir + "/ranks/rank-2");
  fs::remove_all(dir + "/ranks/rank-3");
  {
    std::ifstream tf(dir + "/ranks/sharded-manifest.json");
    nlohmann::json top = nlohmann::json::parse(tf);
    top["ranks"] = 2;
    top["shards"].erase(3);
    top["shards"].erase(2);
    std::ofstream(dir + "/ranks/sharded-manifest.json", std::ios::trunc) << top.dump(1);
  }
  before = snapshot(dir + "/ranks");
  expect_refused_unchanged(ebb("checkpoint export " + dir + "/ranks --out " + dir + "/x"),
                           dir + "/ranks", before, {"rank-0/step-00000002"});
  // A shard whose layout gives a parameter another shape.
  fs::copy(dir + "/a", dir + "/shape", fs::copy_options::recursive);
  edit_shard_manifest(dir + "/shape", 1, [](nlohmann::json& m) {
    m["state"]["layout"]["slices"][0]["params"][0]["shape"] = {7, 7};
  });
  before = snapshot(dir + "/shape");
  expect_refused_unchanged(ebb("checkpoint export " + dir + "/shape --out " + dir + "/x"),
                           dir + "/shape", before, {"rank-1", "another model"});
  expect_refused_unchanged(ebb_mpi(4, resume + dir + "/shape"), dir + "/shape", before,
                           {"rank-1", "another model"});
  EXPECT_FALSE(fs::exists(dir + "/x"));
}

TEST(CheckpointBadInput, AnUnwritableExportPathIsRefused) {
  const std::string dir = fresh_dir("unwritable");
  ASSERT_EQ(
      ebb("train" + kModel + " --steps 2 --checkpoint-every 2 --checkpoint-dir " + dir + "/a").code,
      0);
  std::ofstream(dir + "/file") << "a regular file";
  const auto before = snapshot(dir);
  expect_refused_unchanged(ebb("checkpoint export " + dir + "/a --out " + dir + "/file/w"), dir,
                           before, {dir + "/file/w"});
}

TEST(CheckpointBadInput, ABadWeightsFileIsRefusedNamingTheTensor) {
  const std::string dir = fresh_dir("weights");
  ASSERT_EQ(
      ebb("train" + kModel + " --steps 2 --checkpoint-every 2 --checkpoint-dir " + dir + "/a").code,
      0);
  WeightsFile w = exported(dir + "/a", dir + "/good", false);
  ASSERT_GT(w.tensors.size(), 2U);
  const std::string init = "train" + kModel + " --steps 1 --init-from ";
  WeightsFile shape = w;
  shape.tensors[1].shape = {static_cast<std::int64_t>(shape.tensors[1].values.size())};
  ASSERT_TRUE(write_weights_file(dir + "/shape", shape).ok());
  WeightsFile missing = w;
  missing.tensors.erase(missing.tensors.begin() + 2);
  ASSERT_TRUE(write_weights_file(dir + "/missing", missing).ok());
  fs::copy_file(dir + "/good", dir + "/crc");
  {
    std::fstream f(dir + "/crc", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  const auto before = snapshot(dir);
  expect_refused_unchanged(ebb(init + dir + "/shape"), dir, before,
                           {dir + "/shape", w.tensors[1].name, "shape"});
  expect_refused_unchanged(ebb(init + dir + "/missing"), dir, before,
                           {dir + "/missing", "no tensor " + w.tensors[2].name});
  expect_refused_unchanged(ebb(init + dir + "/crc"), dir, before,
                           {dir + "/crc", w.tensors.back().name, "CRC32C"});
}

}  // namespace
}  // namespace ebb
