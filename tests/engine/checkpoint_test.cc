// Checkpoints: the round trip, the layout and retention, a writer SIGKILLed in the middle of a
// write, every kind of corruption refused with the file named and nothing changed on disk, and
// a directory that cannot be written reported before any step runs.
#include "engine/schema/checkpoint.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "tests/offload/offload_test_support.h"

namespace ebb {
namespace {

namespace fs = std::filesystem;
using test_support::random_bytes;
using test_support::ScratchDir;

constexpr const char* kFingerprint = "gpt2 d=64 L=2 h=4 vocab=256 ctx=32";

// Payloads kept alive for the spans that write_checkpoint takes.
struct PayloadSet {
  std::vector<std::string> names;
  std::vector<std::vector<std::uint8_t>> bytes;

  std::vector<CheckpointPayload> views() const {
    std::vector<CheckpointPayload> out;
    for (std::size_t i = 0; i < names.size(); ++i) {
      out.push_back({names[i], std::as_bytes(std::span(bytes[i]))});
    }
    return out;
  }
};

// Distinct bytes per step: a test that loads the wrong checkpoint sees other bytes.
PayloadSet payloads_of_step(std::int64_t step) {
  const auto seed = static_cast<std::uint64_t>(step) * 100;
  return {.names = {"weights", "optimizer/adam.m", "empty", "rng"},
          .bytes = {random_bytes(5 * kMiB + 3, seed + 1),
                    random_bytes(1000, seed + 2),
                    {},
                    random_bytes(16, seed + 3)}};
}

CheckpointMeta meta_of_step(std::int64_t step) {
  return {.step = step,
          .model_fingerprint = kFingerprint,
          .precision = "bf16-mixed",
          .optimizer = "adamw",
          .state = {{"rng", {1, 2, 3, step}},
                    {"data_position", 4096 * step},
                    {"loss_scale", 65536.0},
                    {"schedule", {{"lr", 3e-4}, {"warmup_done", step > 1}}}}};
}

Status write_step(const std::string& dir, std::int64_t step, CheckpointOptions options = {}) {
  const PayloadSet payloads = payloads_of_step(step);
  return write_checkpoint(dir, meta_of_step(step), payloads.views(), options);
}

// Every payload of `c` read back and compared with what step `step` wrote.
void expect_payloads_of_step(const Checkpoint& c, std::int64_t step) {
  const PayloadSet expected = payloads_of_step(step);
  ASSERT_EQ(c.payloads().size(), expected.names.size());
  for (std::size_t i = 0; i < expected.names.size(); ++i) {
    EXPECT_EQ(c.payloads()[i].name, expected.names[i]);
    Result<std::size_t> bytes = c.payload_bytes(expected.names[i]);
    ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
    ASSERT_EQ(*bytes, expected.bytes[i].size()) << expected.names[i];
    std::vector<std::uint8_t> back(*bytes, 0xEE);
    Status read = c.read_payload(expected.names[i], std::as_writable_bytes(std::span(back)));
    ASSERT_TRUE(read.ok()) << read.to_string();
    // Not EXPECT_EQ: a failure would print megabytes.
    EXPECT_TRUE(back == expected.bytes[i]) << expected.names[i] << " of step " << step;
  }
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> temporaries_in(const std::string& dir) {
  std::vector<std::string> found;
  for (const std::string& name : names_in(dir)) {
    if (name.starts_with(".tmp-")) found.push_back(dir + "/" + name);
  }
  return found;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Every entry under `root` by its relative path, with each file's mode, size and a hash of its
// bytes: what a read or a refused write must leave exactly as it was. (A hash, not the bytes:
// gtest would print and diff megabytes when two snapshots differ.)
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> entries;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    const auto mode = std::to_string(static_cast<int>(e.status().permissions()));
    if (e.is_directory()) {
      entries[rel] = "directory, mode " + mode;
      continue;
    }
    const std::string bytes = file_text(e.path());
    entries[rel] = "mode " + mode + ", " + std::to_string(bytes.size()) + " bytes, hash " +
                   std::to_string(std::hash<std::string>{}(bytes));
  }
  return entries;
}

void expect_mentions(const Status& s, const std::string& what) {
  EXPECT_NE(s.message().find(what), std::string::npos)
      << "\"" << what << "\" not in " << s.to_string();
}

class CheckpointTest : public ::testing::Test {
 protected:
  ScratchDir scratch_;
  // Not created up front: the first write creates it.
  const std::string dir_ = scratch_.path() + "/checkpoints";
};

TEST_F(CheckpointTest, RoundTripsEmptyAndLargePayloadsAndTheMetadata) {
  ASSERT_TRUE(write_step(dir_, 3).ok());
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"step-00000003"});
  EXPECT_EQ(names_in(dir_ + "/step-00000003"),
            (std::vector<std::string>{"000-weights.bin", "001-optimizer_adam.m.bin",
                                      "002-empty.bin", "003-rng.bin", "manifest.json"}));
  EXPECT_EQ(fs::file_size(dir_ + "/step-00000003/000-weights.bin"), 5 * kMiB + 3);

  Result<Checkpoint> c = read_latest_checkpoint(dir_, kFingerprint);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->path(), dir_ + "/step-00000003");
  const CheckpointMeta expected = meta_of_step(3);
  EXPECT_EQ(c->meta().step, 3);
  EXPECT_EQ(c->meta().model_fingerprint, expected.model_fingerprint);
  EXPECT_EQ(c->meta().precision, "bf16-mixed");
  EXPECT_EQ(c->meta().optimizer, "adamw");
  EXPECT_EQ(c->meta().state, expected.state);
  expect_payloads_of_step(*c, 3);

  const nlohmann::json manifest = nlohmann::json::parse(file_text(c->path() + "/manifest.json"));
  EXPECT_EQ(manifest["format"], "ebb-checkpoint");
  EXPECT_EQ(manifest["version"], 1);
  EXPECT_EQ(manifest["payloads"][0]["crc32c"], c->payloads()[0].crc32c);
}

TEST_F(CheckpointTest, KeepsTheNewestTwoByDefaultAndKeepIsAnOption) {
  for (std::int64_t step : {1, 2, 3}) ASSERT_TRUE(write_step(dir_, step).ok());
  EXPECT_EQ(*list_checkpoints(dir_), (std::vector<std::int64_t>{2, 3}));
  ASSERT_TRUE(write_step(dir_, 4, {.keep = 1}).ok());
  EXPECT_EQ(*list_checkpoints(dir_), (std::vector<std::int64_t>{4}));
  for (std::int64_t step : {5, 6, 7}) ASSERT_TRUE(write_step(dir_, step, {.keep = 3}).ok());
  EXPECT_EQ(*list_checkpoints(dir_), (std::vector<std::int64_t>{5, 6, 7}));
  EXPECT_TRUE(temporaries_in(dir_).empty());
  Result<Checkpoint> older = read_checkpoint(dir_, 5, kFingerprint);
  ASSERT_TRUE(older.ok()) << older.status().to_string();
  expect_payloads_of_step(*older, 5);
}

TEST_F(CheckpointTest, NeverOverwritesNorWritesBehindTheLatest) {
  ASSERT_TRUE(write_step(dir_, 5).ok());
  const auto before = snapshot(dir_);
  for (std::int64_t step : {5, 4}) {
    Status again = write_step(dir_, step);
    EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition) << again.to_string();
    expect_mentions(again, dir_ + "/step-00000005");
  }
  EXPECT_EQ(snapshot(dir_), before);
}

TEST_F(CheckpointTest, IncompleteAndForeignEntriesAreNotCheckpoints) {
  ASSERT_TRUE(write_step(dir_, 1).ok());
  fs::create_directory(dir_ + "/.tmp-step-00000009-abcdef");
  fs::create_directory(dir_ + "/step-9");
  write_text(dir_ + "/step-00000010", "a file, not a checkpoint");
  write_text(dir_ + "/notes.txt", "");
  EXPECT_EQ(*list_checkpoints(dir_), std::vector<std::int64_t>{1});
  Result<Checkpoint> c = read_latest_checkpoint(dir_, kFingerprint);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->meta().step, 1);
  Result<Checkpoint> none = read_latest_checkpoint(scratch_.path(), kFingerprint);
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  expect_mentions(none.status(), "no checkpoint in " + scratch_.path());
}

TEST_F(CheckpointTest, BadRequestsAreRefusedBeforeAnythingIsCreated) {
  const std::vector<std::uint8_t> bytes = random_bytes(10, 1);
  const auto span = std::as_bytes(std::span(bytes));
  struct Case {
    const char* what;
    CheckpointMeta meta;
    std::vector<CheckpointPayload> payloads;
    CheckpointOptions options;
    std::string message;
  };
  CheckpointMeta negative = meta_of_step(-1);
  CheckpointMeta anonymous = meta_of_step(1);
  anonymous.model_fingerprint.clear();
  CheckpointMeta array_state = meta_of_step(1);
  array_state.state = nlohmann::json::array({1, 2});
  CheckpointMeta bad_utf8 = meta_of_step(1);
  bad_utf8.precision = "\xff\xfe";
  const Case cases[] = {
      {"negative step", negative, {}, {}, "the step is negative"},
      {"no fingerprint", anonymous, {}, {}, "no model fingerprint"},
      {"state not an object", array_state, {}, {}, "the state must be a JSON object"},
      {"keep 0", meta_of_step(1), {}, {.keep = 0}, "keep must be at least 1"},
      {"empty name", meta_of_step(1), {{"", span}}, {}, "payload 0 \"\": the name is empty"},
      {"same name twice",
       meta_of_step(1),
       {{"w", span}, {"w", span}},
       {},
       "payload 1 \"w\": the name is also payload 0's"},
      {"not UTF-8", bad_utf8, {}, {}, "not valid UTF-8"},
  };
  for (const Case& c : cases) {
    Status s = write_checkpoint(dir_, c.meta, c.payloads, c.options);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.what << ": " << s.to_string();
    expect_mentions(s, c.message);
    EXPECT_FALSE(fs::exists(dir_)) << c.what;
  }
}

// ---- (a) A writer killed in the middle of a write ----

CheckpointWritePoint g_kill_at;

void kill_self_at(CheckpointWritePoint point) {
  if (point == g_kill_at) raise(SIGKILL);
}

// Forks a child that writes checkpoint `step` keeping only the newest one, and SIGKILLs itself
// at `point`: nothing of it runs any clean-up, as in a crash. Returns its wait status.
int write_in_child_killed_at(const std::string& dir, std::int64_t step,
                             CheckpointWritePoint point) {
  const pid_t pid = fork();
  if (pid == 0) {
    g_kill_at = point;
    const Status s = write_step(dir, step, {.keep = 1, .fault_hook_for_testing = kill_self_at});
    _exit(s.ok() ? 0 : 1);  // reached only when the hook did not kill
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

class CheckpointKilledWriterTest : public CheckpointTest,
                                   public ::testing::WithParamInterface<CheckpointWritePoint> {};

TEST_P(CheckpointKilledWriterTest, LeavesTheLastCompleteCheckpointAndTheNextWriteCleansUp) {
  ASSERT_TRUE(write_step(dir_, 1).ok());
  const int status = write_in_child_killed_at(dir_, 2, GetParam());
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;

  const bool renamed = GetParam() == CheckpointWritePoint::kAfterRename;
  const std::vector<std::string> left = temporaries_in(dir_);
  ASSERT_EQ(left.size(), renamed ? 0U : 1U);
  // Killed before the rename, the new checkpoint is a .tmp- directory that is never read;
  // killed after it, the new one is complete and the old one was not yet removed.
  const std::vector<std::int64_t> kept =
      renamed ? std::vector<std::int64_t>{1, 2} : std::vector<std::int64_t>{1};
  EXPECT_EQ(*list_checkpoints(dir_), kept);
  for (std::int64_t step : kept) {
    Result<Checkpoint> c = read_checkpoint(dir_, step, kFingerprint);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    expect_payloads_of_step(*c, step);
  }
  if (!renamed) {
    EXPECT_TRUE(fs::exists(left[0] + "/000-weights.bin")) << "killed after the first payload";
    EXPECT_EQ(fs::exists(left[0] + "/manifest.json"),
              GetParam() == CheckpointWritePoint::kAfterManifest);
  }

  const std::int64_t next = renamed ? 3 : 2;
  testing::internal::CaptureStderr();
  Status wrote = write_step(dir_, next, {.keep = 1});
  const std::string said = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(wrote.ok()) << wrote.to_string();
  for (const std::string& leftover : left) {
    EXPECT_FALSE(fs::exists(leftover));
    EXPECT_NE(said.find("ebb: removed " + leftover), std::string::npos) << said;
  }
  EXPECT_TRUE(temporaries_in(dir_).empty());
  EXPECT_EQ(*list_checkpoints(dir_), std::vector<std::int64_t>{next});
  Result<Checkpoint> c = read_latest_checkpoint(dir_, kFingerprint);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  expect_payloads_of_step(*c, next);
}

// Named so that --gtest_filter='Checkpoint*' selects it with the rest.
INSTANTIATE_TEST_SUITE_P(CheckpointKillPoints, CheckpointKilledWriterTest,
                         ::testing::Values(CheckpointWritePoint::kAfterFirstPayload,
                                           CheckpointWritePoint::kAfterManifest,
                                           CheckpointWritePoint::kAfterRename),
                         [](const auto& info) {
                           switch (info.param) {
                             case CheckpointWritePoint::kAfterFirstPayload:
                               return "AfterFirstPayload";
                             case CheckpointWritePoint::kAfterManifest:
                               return "AfterManifestBeforeRename";
                             case CheckpointWritePoint::kAfterRename:
                               return "AfterRenameBeforeRemovingTheOld";
                           }
                           return "Unknown";
                         });

// ---- (b) Corruption and mismatches are refused, the file named, nothing changed ----

TEST_F(CheckpointTest, CorruptionAndMismatchesAreRefusedWithTheFileNamedAndNothingChanged) {
  const std::string step2 = dir_ + "/step-00000002";
  const std::string weights = step2 + "/000-weights.bin";
  const std::string manifest = step2 + "/manifest.json";
  auto replace_in_manifest = [&](const std::string& from, const std::string& to) {
    std::string text = file_text(manifest);
    const std::size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    write_text(manifest, text.replace(at, from.size(), to));
  };
  struct Case {
    const char* what;
    std::function<void()> corrupt;
    // Empty: read_latest_checkpoint fails. Otherwise it succeeds and reading this payload fails.
    std::string payload;
    StatusCode code;
    std::vector<std::string> mentions;
    std::string fingerprint = kFingerprint;
  };
  const std::vector<Case> cases = {
      {"truncated payload",
       [&] { fs::resize_file(weights, 5 * kMiB + 2); },
       "",
       StatusCode::kDataLoss,
       {weights, "5242882 bytes", "lists 5242883"}},
      {"flipped byte",
       [&] {
         std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
         f.seekg(3 * kMiB);
         const char c = static_cast<char>(f.get() ^ 0x10);
         f.seekp(3 * kMiB);
         f.put(c);
       },
       "weights",
       StatusCode::kDataLoss,
       {weights, "CRC32C", "corrupt"}},
      {"missing payload file",
       [&] { fs::remove(step2 + "/003-rng.bin"); },
       "",
       StatusCode::kNotFound,
       {step2 + "/003-rng.bin", "missing"}},
      {"missing manifest", [&] { fs::remove(manifest); }, "", StatusCode::kNotFound, {manifest}},
      {"manifest not JSON",
       [&] { write_text(manifest, "{\"format\": \"ebb-chec"); },
       "",
       StatusCode::kDataLoss,
       {manifest, "corrupt"}},
      {"manifest of another version",
       [&] { replace_in_manifest("\"version\": 1", "\"version\": 2"); },
       "",
       StatusCode::kInvalidArgument,
       {manifest, "version 2 is not supported"}},
      {"manifest listing a size it does not have",
       [&] { replace_in_manifest("\"bytes\": 16", "\"bytes\": -16"); },
       "",
       StatusCode::kDataLoss,
       {manifest, "payloads[3].bytes"}},
      {"another model's fingerprint",
       [] {},
       "",
       StatusCode::kInvalidArgument,
       {manifest, "model_fingerprint", kFingerprint, "gpt2 d=128"},
       "gpt2 d=128 L=2"},
      {"payload the manifest does not list",
       [] {},
       "optimizer/adam.v",
       StatusCode::kNotFound,
       {manifest, "lists no payload \"optimizer/adam.v\""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    fs::remove_all(dir_);
    ASSERT_TRUE(write_step(dir_, 1).ok());
    ASSERT_TRUE(write_step(dir_, 2).ok());
    // A leftover a reader must not clean up either: reading never writes.
    fs::create_directory(dir_ + "/.tmp-step-00000003-abcdef");
    write_text(dir_ + "/.tmp-step-00000003-abcdef/000-weights.bin", "partial");
    c.corrupt();
    const auto before = snapshot(dir_);

    // Failures below are not fatal: every case runs, so that a broken check shows which.
    Status failed;
    Result<Checkpoint> latest = read_latest_checkpoint(dir_, c.fingerprint);
    if (c.payload.empty()) {
      if (latest.ok()) ADD_FAILURE() << "loaded step " << latest->meta().step;
      failed = latest.status();
    } else if (!latest.ok()) {
      ADD_FAILURE() << latest.status().to_string();
    } else {
      EXPECT_EQ(latest->meta().step, 2) << "not the latest";
      std::vector<std::byte> out(kMiB * 6);
      Result<std::size_t> bytes = latest->payload_bytes(c.payload);
      if (bytes.ok()) out.resize(*bytes);
      failed = latest->read_payload(c.payload, out);
    }
    EXPECT_EQ(failed.code(), c.code) << failed.to_string();
    for (const std::string& m : c.mentions) expect_mentions(failed, m);
    EXPECT_EQ(snapshot(dir_), before) << "a read changed the directory";
    // The older checkpoint is the caller's to choose, and is intact.
    Result<Checkpoint> older = read_checkpoint(dir_, 1, kFingerprint);
    EXPECT_TRUE(older.ok()) << older.status().to_string();
    if (older.ok()) expect_payloads_of_step(*older, 1);
  }
}

TEST_F(CheckpointTest, ABufferOfTheWrongSizeIsRefused) {
  ASSERT_TRUE(write_step(dir_, 1).ok());
  Result<Checkpoint> c = read_latest_checkpoint(dir_, kFingerprint);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  std::vector<std::byte> out(15);
  Status s = c->read_payload("rng", out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  expect_mentions(s, dir_ + "/step-00000001/003-rng.bin");
  expect_mentions(s, "a buffer of 15 bytes");
}

// ---- (c) A directory that cannot be written ----

TEST_F(CheckpointTest, CheckCreatesAMissingDirectoryAndLeavesItEmpty) {
  ASSERT_TRUE(check_checkpoint_dir(dir_).ok());
  EXPECT_TRUE(fs::is_directory(dir_));
  EXPECT_TRUE(names_in(dir_).empty());
  EXPECT_TRUE(check_checkpoint_dir(dir_).ok()) << "an existing directory is fine";
}

// The tests run as root, whom permission bits (chmod 0500) do not stop (the test after this one
// drops root in a child for that). What stops root is a file system that refuses the write,
// /proc here, or a file where a directory is expected.
TEST_F(CheckpointTest, ADirectoryThatCannotBeWrittenIsReportedByName) {
  const std::string file = scratch_.path() + "/a-file";
  write_text(file, "not a directory");
  struct Case {
    std::string dir;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"/proc/self", StatusCode::kIoError, "checkpoint directory /proc/self is not writable"},
      {file, StatusCode::kInvalidArgument, "checkpoint directory " + file + " is not a directory"},
      {file + "/checkpoints", StatusCode::kIoError, file + "/checkpoints"},
      {scratch_.path() + "/missing/checkpoints", StatusCode::kIoError,
       "its parent directory does not exist"},
      {"", StatusCode::kInvalidArgument, "the path is empty"},
  };
  for (const Case& c : cases) {
    Status checked = check_checkpoint_dir(c.dir);
    EXPECT_EQ(checked.code(), c.code) << c.dir << ": " << checked.to_string();
    expect_mentions(checked, c.message);
    Status wrote = write_step(c.dir, 1);
    EXPECT_EQ(wrote.code(), c.code) << c.dir << ": " << wrote.to_string();
    expect_mentions(wrote, c.message);
  }
  EXPECT_EQ(file_text(file), "not a directory");
  EXPECT_FALSE(fs::exists(scratch_.path() + "/missing"));
}

// Forks a child that, as the unprivileged user `nobody` when this runs as root, calls `call`
// and sends back the status it returns: permission bits bind only a process without
// CAP_DAC_OVERRIDE. Empty when the child could not drop root.
std::optional<std::pair<StatusCode, std::string>> status_as_unprivileged_user(
    const std::function<Status()>& call) {
  int pipe_fds[2];
  EXPECT_EQ(pipe(pipe_fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    constexpr uid_t kNobody = 65534;
    if (geteuid() == 0 &&
        (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0)) {
      _exit(2);
    }
    const Status s = call();
    const std::string reply = std::to_string(static_cast<int>(s.code())) + " " + s.message();
    (void)!write(pipe_fds[1], reply.data(), reply.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string reply;
  char buffer[512];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) reply.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || reply.empty()) return std::nullopt;
  const std::size_t space = reply.find(' ');
  return std::pair{static_cast<StatusCode>(std::stoi(reply.substr(0, space))),
                   reply.substr(space + 1)};
}

TEST_F(CheckpointTest, ADirectoryWithoutWritePermissionIsReported) {
  ASSERT_TRUE(check_checkpoint_dir(dir_).ok());
  // The scratch directory is 0700 (mkdtemp): opened up so that the unprivileged child reaches
  // the checkpoint directory, which it may read but not write.
  fs::permissions(scratch_.path(), fs::perms::owner_all | fs::perms::group_read |
                                       fs::perms::group_exec | fs::perms::others_read |
                                       fs::perms::others_exec);
  // 0555: readable by all, writable by none (0500 would keep `nobody` from even opening it).
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                            fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);
  for (const bool write : {false, true}) {
    SCOPED_TRACE(write ? "write_checkpoint" : "check_checkpoint_dir");
    const auto got = status_as_unprivileged_user(
        [&] { return write ? write_step(dir_, 1) : check_checkpoint_dir(dir_); });
    if (!got) GTEST_SKIP() << "could not run a child as an unprivileged user";
    EXPECT_EQ(got->first, StatusCode::kIoError) << got->second;
    EXPECT_NE(got->second.find("checkpoint directory " + dir_ + " is not writable"),
              std::string::npos)
        << got->second;
  }
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_TRUE(names_in(dir_).empty());
}

TEST_F(CheckpointTest, ASecondWriterIntoTheSameDirectoryIsRefused) {
  ASSERT_TRUE(write_step(dir_, 1).ok());
  const int held = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  ASSERT_EQ(flock(held, LOCK_EX | LOCK_NB), 0);
  Status wrote = write_step(dir_, 2);
  EXPECT_EQ(wrote.code(), StatusCode::kFailedPrecondition) << wrote.to_string();
  expect_mentions(wrote, "is writing a checkpoint into " + dir_);
  EXPECT_EQ(check_checkpoint_dir(dir_).code(), StatusCode::kFailedPrecondition);
  close(held);
  EXPECT_TRUE(write_step(dir_, 2).ok());
}

}  // namespace
}  // namespace ebb
