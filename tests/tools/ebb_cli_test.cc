// Runs the built `ebb` binary (EBB_CLI_PATH) as a user would and checks what it prints and
// how it exits.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/schema/chip_spec.h"
#include "engine/schema/profile.h"
#include "tests/engine/dtr_log_reference.h"
#include "tests/engine/training_profile.h"
#include "tests/engine/tree_recurrent_log.h"
#include "tests/offload/offload_test_support.h"

namespace {

const std::string kWorkloads = EBB_SOURCE_DIR "/profiles/workloads/";

// The mlp4 log's peak live bytes and total op time (DtrImportTest's row for it).
constexpr long long kMlp4PeakLiveBytes = 720'043'656;
constexpr double kMlp4OpSeconds = 3'705'292e-9;

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `ebb <args>` through the shell; args are passed as written.
CliRun ebb(const std::string& args) {
  // One stderr file per call and process: ctest runs the cases of this binary in parallel.
  static int calls = 0;
  std::string err_path = testing::TempDir() + "ebb_cli_test_stderr_" + std::to_string(getpid()) +
                         "_" + std::to_string(calls++) + ".txt";
  // timeout(1): a hang is a failure (exit 124), not a stuck test run.
  std::string command = "timeout 120 " + std::string(EBB_CLI_PATH) + " " + args + " 2>" + err_path;
  CliRun run;
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << command;
  if (pipe == nullptr) return run;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) run.out.append(buffer, n);
  int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream err(err_path);
  std::stringstream text;
  text << err.rdbuf();
  run.err = text.str();
  std::remove(err_path.c_str());
  return run;
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = testing::TempDir() + "ebb_cli_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

// The names in the help's "Subcommands:" list: the first word of each line under it.
std::vector<std::string> listed_subcommands(const std::string& help) {
  std::istringstream lines(help);
  std::string line;
  while (std::getline(lines, line) && line != "Subcommands:") {
  }
  std::vector<std::string> names;
  while (std::getline(lines, line) && !line.empty()) {
    std::istringstream words(line);
    std::string name;
    words >> name;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(EbbCli, HelpListsTheSubcommands) {
  CliRun run = ebb("--help");
  EXPECT_EQ(run.exit_code, 0);
  // Whole names, each once: "bench" is not "iobench", "plan" not "arena-plan".
  EXPECT_EQ(listed_subcommands(run.out),
            (std::vector<std::string>{"arena-generate", "arena-plan", "bench", "checkpoint", "demo",
                                      "iobench", "plan", "replay", "report", "simulate", "train"}))
      << run.out;
}

// The commit git reports for the source tree, "" where it cannot (no git, not a checkout).
std::string source_commit() {
  std::string commit;
  if (FILE* git = popen("git -C " EBB_SOURCE_DIR " rev-parse --short=12 HEAD 2>/dev/null", "r")) {
    char buffer[64];
    while (std::fgets(buffer, sizeof buffer, git) != nullptr) commit += buffer;
    if (pclose(git) != 0) commit.clear();
  }
  while (!commit.empty() && commit.back() == '\n') commit.pop_back();
  return commit;
}

TEST(EbbCli, VersionNamesTheReleaseTheCommitAndTheBackends) {
  CliRun run = ebb("--version");
  EXPECT_EQ(run.exit_code, 0);
  std::istringstream lines(run.out);
  std::string release, commit, backends;
  std::getline(lines, release);
  std::getline(lines, commit);
  std::getline(lines, backends);
  EXPECT_EQ(release, "ebb " EBB_VERSION) << run.out;
  const std::string git = source_commit();
  if (git.empty()) {
    EXPECT_EQ(commit, "commit unknown") << run.out;
  } else {
    EXPECT_TRUE(commit == "commit " + git || commit == "commit " + git + "-dirty") << run.out;
  }
  // What this build compiled in, and nothing else.
  std::string expected = "backends cpu sim";
  if (EBB_HAVE_CUDA) expected += " cuda";
  if (EBB_HAVE_NCCL) expected += " nccl";
  if (EBB_HAVE_MPI_PLUGIN) expected += " mpi";
  expected += " io_uring";
  EXPECT_EQ(backends, expected) << run.out;
}

// What a replay of a workload must report, counted here from the file itself.
struct WorkloadCounts {
  std::size_t allocs = 0;
  std::size_t frees = 0;
  std::size_t streams = 0;
  std::size_t peak_live_bytes = 0;
};

// An ebb alloc trace: one JSON object per line, {"op":"alloc"|"free","id","bytes","stream"}.
WorkloadCounts count_alloc_trace(const std::string& path) {
  WorkloadCounts c;
  std::ifstream in(path);
  std::map<std::uint64_t, std::size_t> live;
  std::set<std::uint64_t> streams;
  std::size_t live_bytes = 0;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json e = nlohmann::json::parse(line);
    streams.insert(e["stream"].get<std::uint64_t>());
    if (e["op"] == "alloc") {
      ++c.allocs;
      live[e["id"]] = e["bytes"];
      live_bytes += e["bytes"].get<std::size_t>();
      c.peak_live_bytes = std::max(c.peak_live_bytes, live_bytes);
    } else {
      ++c.frees;
      live_bytes -= live.at(e["id"]);
      live.erase(e["id"].get<std::uint64_t>());
    }
  }
  c.streams = streams.size();
  return c;
}

// A DTR log: one alloc per storage of more than 0 bytes, one free per such storage that dies
// (tests/engine/dtr_log_reference.h reads the storages).
WorkloadCounts count_dtr_log(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const ebb::testing_dtr::ReferenceReading r = ebb::testing_dtr::read_reference(text.str());
  WorkloadCounts c;
  c.streams = 1;
  c.peak_live_bytes = r.peak_live_bytes;
  for (const ebb::testing_dtr::ReferenceStorage& s : r.storages) c.allocs += s.bytes > 0 ? 1 : 0;
  for (const ebb::testing_dtr::ReferenceOp& op : r.ops) {
    for (std::size_t s : op.frees) c.frees += r.storages[s].bytes > 0 ? 1 : 0;
  }
  return c;
}

TEST(EbbCli, ReplayJsonReportsTheWorkloadsFigures) {
  for (const char* file : {"mlp4_train.dtr.log", "gpt_block_train.trace.jsonl"}) {
    SCOPED_TRACE(file);
    const std::string path = kWorkloads + file;
    const WorkloadCounts want =
        std::string(file).ends_with(".jsonl") ? count_alloc_trace(path) : count_dtr_log(path);
    const auto start = std::chrono::steady_clock::now();
    CliRun run = ebb("replay --json " + path);
    const double wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(run.exit_code, 0) << run.err;
    nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
    ASSERT_FALSE(out.is_discarded()) << run.out;
    EXPECT_EQ(out["file"], path);
    EXPECT_EQ(out["format"], std::string(file).ends_with(".jsonl") ? "alloc_trace" : "dtr_log");
    EXPECT_EQ(out["allocs"].get<std::size_t>(), want.allocs);
    EXPECT_EQ(out["frees"].get<std::size_t>(), want.frees);
    EXPECT_EQ(out["streams"].get<std::size_t>(), want.streams);
    EXPECT_EQ(out["peak_live_bytes"].get<std::size_t>(), want.peak_live_bytes);
    const auto reserved = out["peak_reserved_bytes"].get<std::size_t>();
    EXPECT_GE(reserved, want.peak_live_bytes);
    EXPECT_LE(reserved, out["budget_bytes"].get<std::size_t>());
    // Expandable segments map 2 MiB pages as needed: little is reserved past the live bytes.
    EXPECT_LE(static_cast<double>(reserved), 1.10 * static_cast<double>(want.peak_live_bytes));
    EXPECT_DOUBLE_EQ(out["reserved_over_live"].get<double>(),
                     static_cast<double>(reserved) / static_cast<double>(want.peak_live_bytes));
    EXPECT_TRUE(out["expandable_segments"].get<bool>());
    EXPECT_EQ(out["num_alloc_retries"].get<int>(), 0);
    EXPECT_TRUE(out["seconds"].is_number());
    EXPECT_LE(out["seconds"].get<double>(), wall_seconds) << "the replay outlasted the process";
  }
  CliRun classic = ebb("replay --json --classic " + kWorkloads + "mlp4_train.dtr.log");
  ASSERT_EQ(classic.exit_code, 0) << classic.err;
  EXPECT_FALSE(nlohmann::json::parse(classic.out)["expandable_segments"].get<bool>());
}

TEST(EbbCli, ReplayPrintsASummary) {
  CliRun run = ebb("replay " + kWorkloads + "mlp4_train.dtr.log");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("peak live"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("peak reserved"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("720043656"), std::string::npos) << run.out;
}

TEST(EbbCli, ReplayOnTheSimDeviceGivesTheCpuFigures) {
  const std::string file = kWorkloads + "mlp4_train.dtr.log";
  CliRun cpu = ebb("replay --json " + file);
  CliRun sim = ebb("replay --json --device sim " + file);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  nlohmann::json cpu_out = nlohmann::json::parse(cpu.out);
  nlohmann::json sim_out = nlohmann::json::parse(sim.out);
  EXPECT_EQ(sim_out["device"].get<std::string>().rfind("sim (", 0), 0u) << sim.out;
  for (const char* key : {"peak_live_bytes", "peak_reserved_bytes", "reserved_over_live", "allocs",
                          "frees", "streams", "budget_bytes", "segments_peak", "num_device_alloc",
                          "num_device_free", "num_alloc_retries"}) {
    EXPECT_EQ(sim_out[key], cpu_out[key]) << key;
  }
  CliRun text = ebb("replay --device sim " + file);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("720043656"), std::string::npos) << text.out;

  CliRun bad = ebb("replay --device tpu " + file);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("not cpu, cuda or sim"), std::string::npos) << bad.err;
}

TEST(EbbCli, ReplayUnderASmallBudgetFailsWithOutOfMemory) {
  CliRun run = ebb("replay --budget 256MiB " + kWorkloads + "mlp4_train.dtr.log");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("OutOfMemory"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("event "), std::string::npos) << run.err;
}

TEST(EbbCli, MalformedTraceExitsOneNamingFileAndLine) {
  std::string path = write_temp("bad.jsonl",
                                "{\"op\":\"alloc\",\"id\":0,\"bytes\":64}\n"
                                "{\"op\":\"free\",\"id\":5}\n");
  CliRun run = ebb("replay " + path);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(path + ":2:"), std::string::npos) << run.err;

  std::string dtr = write_temp("bad.log",
                               "{\"ANNOTATION\":\"START\",\"INSTRUCTION\":\"ANNOTATE\"}\n"
                               "{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"w\"}\n"
                               "{\"INSTRUCTION\":\"RELEASE\",\"NAME\":\"w\"}\n");
  run = ebb("replay " + dtr);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(dtr + ":3:"), std::string::npos) << run.err;
}

TEST(EbbCli, MissingFileIsAClearError) {
  CliRun run = ebb("replay /nonexistent/ebb/no_such_trace.jsonl");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("cannot open /nonexistent/ebb/no_such_trace.jsonl"), std::string::npos)
      << run.err;
  run = ebb("replay " + testing::TempDir());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("is a directory"), std::string::npos) << run.err;
}

TEST(EbbCli, BadBudgetIsRejected) {
  for (const char* budget : {"lots", "4XB", "0", "-5GiB", "99999999999TiB"}) {
    CliRun run =
        ebb(std::string("replay --budget ") + budget + " " + kWorkloads + "mlp4_train.dtr.log");
    EXPECT_NE(run.exit_code, 0) << budget;
    EXPECT_NE(run.err.find("--budget"), std::string::npos) << budget << ": " << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
  CliRun ok = ebb("replay --json --budget 1.5GiB " + kWorkloads + "mlp4_train.dtr.log");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["budget_bytes"].get<std::size_t>(), 1610612736u);
}

const std::string kArenaTestdata = EBB_SOURCE_DIR "/tests/allocator/testdata/";

TEST(EbbCli, ArenaPlanJsonHasTheKeys) {
  CliRun run = ebb("arena-plan --json " + kArenaTestdata + "small.12.csv");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << run.out;
  EXPECT_EQ(out["height"].get<std::size_t>(), 12u);
  EXPECT_EQ(out["lower_bound"].get<std::size_t>(), 12u);
  EXPECT_EQ(out["capacity"].get<std::size_t>(), 12u);
  EXPECT_TRUE(out["fits"].get<bool>());
  EXPECT_TRUE(out["optimal"].get<bool>());
  EXPECT_EQ(out["buffers"].get<std::size_t>(), 5u);
  EXPECT_TRUE(out["seconds"].is_number());
  EXPECT_LT(out["seconds"].get<double>(), 120) << "longer than the run's timeout";
}

// The most bytes live at once in a MiniMalloc CSV (id,lower,upper,size; live over [lower,
// upper)): the height no arena placement can beat.
std::size_t csv_peak_bytes(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // the header
  std::map<std::int64_t, std::int64_t> delta;
  while (std::getline(in, line)) {
    std::int64_t id, lower, upper, size;
    char comma;
    std::istringstream(line) >> id >> comma >> lower >> comma >> upper >> comma >> size;
    delta[lower] += size;
    delta[upper] -= size;
  }
  std::int64_t live = 0, peak = 0;
  for (const auto& [t, d] : delta) peak = std::max(peak, live += d);
  return static_cast<std::size_t>(peak);
}

TEST(EbbCli, ArenaPlanPrintsTheHeightItFound) {
  const std::string path = kArenaTestdata + "small.12.csv";
  const std::size_t peak = csv_peak_bytes(path);
  ASSERT_EQ(peak, 12u);
  CliRun run = ebb("arena-plan " + path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("(minimalloc_csv, 5 buffers)"), std::string::npos) << run.out;
  // The lower bound is the peak; small.12.csv packs to it exactly.
  const std::string bytes = std::to_string(peak) + " B";
  EXPECT_NE(run.out.find("height           " + bytes), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("lower bound      " + bytes), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("height / lower   1.0000 (optimal"), std::string::npos) << run.out;
}

// A generated tight problem: the file carries the packing at its capacity, and arena-plan,
// reading the capacity from the name, packs it at exactly that height.
TEST(EbbCli, ArenaGenerateWritesAProblemArenaPlanPacksAtItsCapacity) {
  const std::string path = write_temp("generated.4096.csv", "");
  CliRun made = ebb("arena-generate " + path + " --buffers 40 --capacity 4096 --seed 3");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  CliRun run = ebb("arena-plan --json " + path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << run.out;
  EXPECT_EQ(out["buffers"].get<std::size_t>(), 40u);
  EXPECT_EQ(out["lower_bound"].get<std::size_t>(), 4096u);
  EXPECT_EQ(out["height"].get<std::size_t>(), 4096u);
  std::remove(path.c_str());
  CliRun bad = ebb("arena-generate " + path + " --buffers 9 --capacity 2 --time-steps 4");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("capacity_bytes 2 x time_steps 4 cannot be cut into 9"), std::string::npos)
      << bad.err;
}

TEST(EbbCli, ArenaPlanSummaryAndOffsetsFile) {
  const std::string out_path = write_temp("planned.csv", "");
  CliRun run = ebb("arena-plan " + kArenaTestdata + "aligned.csv --out " + out_path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("height / lower"), std::string::npos) << run.out;
  std::ifstream in(out_path);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "id,lower,upper,size,alignment,offset");
  int rows = 0;
  for (std::string line; std::getline(in, line);) ++rows;
  EXPECT_EQ(rows, 4);
  std::remove(out_path.c_str());
}

TEST(EbbCli, ArenaPlanCapacityBelowTheLowerBoundNamesTheLine) {
  CliRun run = ebb("arena-plan " + kArenaTestdata + "over_capacity.16.csv");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("over_capacity.16.csv:4: capacity 16 cannot hold the lower bound 24"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("best height found 24"), std::string::npos) << run.err;
}

TEST(EbbCli, ArenaPlanMalformedCsvNamesFileAndLine) {
  const std::string path = write_temp("unsorted.csv", "id,lower,upper,size\n3,0,2,8\n2,1,3,8\n");
  CliRun run = ebb("arena-plan " + path);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(path + ":3: id 2 comes after id 3"), std::string::npos) << run.err;
}

TEST(EbbCli, ArenaPlanReplaysADtrLogThroughTheArena) {
  CliRun run = ebb("arena-plan --json --replay " + kWorkloads + "mlp4_train.dtr.log");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << run.out;
  EXPECT_EQ(out["format"], "dtr_log");
  EXPECT_EQ(out["capacity"].get<std::size_t>(), 0u);
  EXPECT_GE(out["height"].get<std::size_t>(), out["lower_bound"].get<std::size_t>());
  EXPECT_EQ(out["replay_peak_live"].get<std::size_t>(), out["lower_bound"].get<std::size_t>());
  EXPECT_GE(out["replay_planned_peak_reserved"].get<std::size_t>(),
            out["height"].get<std::size_t>());
  EXPECT_GT(out["replay_caching_peak_reserved"].get<std::size_t>(), 0u);
  EXPECT_EQ(out["replay_planned_fallback_allocs"].get<int>(), 0);
}

TEST(EbbCli, BenchAllocJson) {
  CliRun run = ebb("bench alloc --json --iterations 1000 --repetitions 3");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << run.out;
  EXPECT_GT(out["pair_ns_median"].get<double>(), 0);
  EXPECT_LE(out["pair_ns_min"].get<double>(), out["pair_ns_median"].get<double>());
  EXPECT_GE(out["pair_ns_max"].get<double>(), out["pair_ns_median"].get<double>());
  EXPECT_EQ(out["bytes"].get<std::size_t>(), 4096u);
  EXPECT_EQ(out["repetitions"].get<int>(), 3);
  EXPECT_EQ(out.size(), 5u);
}

TEST(EbbCli, BenchAllocRejectsBadCounts) {
  for (const char* args :
       {"--iterations 0", "--iterations -1", "--repetitions 0", "--bytes lots", "--bytes 0"}) {
    CliRun run = ebb(std::string("bench alloc --json ") + args);
    EXPECT_NE(run.exit_code, 0) << args;
    EXPECT_NE(run.exit_code, 124) << args << " hung";
    EXPECT_FALSE(run.err.empty()) << args;
    EXPECT_TRUE(run.out.empty()) << args << ": " << run.out;
  }
}

TEST(EbbCli, BenchAllocLargePool) {
  CliRun run = ebb("bench alloc --json --bytes 8MiB --iterations 100 --repetitions 1");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out)["bytes"].get<std::size_t>(), 8 * 1024 * 1024u);
}

// `ebb simulate`: one profiled iteration through the engine on a sim device.
nlohmann::json simulate_json(const std::string& args, CliRun* run_out = nullptr) {
  CliRun run = ebb("simulate --json " + kWorkloads + "mlp4_train.dtr.log " + args);
  if (run_out != nullptr) *run_out = run;
  if (run.exit_code != 0) return nullptr;
  return nlohmann::json::parse(run.out);
}

// At exactly 100% of the peak live bytes, policy none does not fit: the allocator rounds each
// block up (512 B) and maps whole 2 MiB pages, so the peak needs a little more than the live
// bytes. The error names the op, the bytes and the budget.
TEST(EbbCli, SimulateAtExactlyThePeakWithoutEvictionIsInfeasible) {
  CliRun run;
  simulate_json("--budget 100% --policy none", &run);
  EXPECT_EQ(run.exit_code, 1);
  for (const char* text :
       {"op 'op 49 mul_'", "needs 67108864 bytes", "policy none", "budget of 720043656 bytes"}) {
    EXPECT_NE(run.err.find(text), std::string::npos) << text << " in " << run.err;
  }
}

TEST(EbbCli, SimulateJustAboveThePeakWithoutEvictionHasNoExtraCompute) {
  CliRun run;
  nlohmann::json out = simulate_json("--budget 101% --policy none", &run);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* key :
       {"peak_reserved_bytes", "budget_bytes", "peak_live_bytes", "base_compute_s",
        "extra_compute_s", "extra_compute_fraction", "swapped_bytes", "evictions", "recomputed_ops",
        "simulated_s", "ops", "policy"}) {
    EXPECT_TRUE(out.contains(key)) << key << " in " << run.out;
  }
  EXPECT_EQ(out["policy"], "none");
  EXPECT_EQ(out["ops"].get<int>(), 91);
  EXPECT_EQ(out["peak_live_bytes"].get<long long>(), kMlp4PeakLiveBytes);
  EXPECT_EQ(out["budget_bytes"].get<long long>(),
            static_cast<long long>(static_cast<double>(kMlp4PeakLiveBytes) * 1.01));
  EXPECT_EQ(out["extra_compute_s"].get<double>(), 0.0);
  EXPECT_EQ(out["extra_compute_fraction"].get<double>(), 0.0);
  EXPECT_EQ(out["evictions"].get<long long>(), 0);
  EXPECT_EQ(out["recomputed_ops"].get<long long>(), 0);
  EXPECT_EQ(out["swapped_bytes"].get<long long>(), 0);
  EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), out["budget_bytes"].get<long long>());
  EXPECT_GE(out["peak_reserved_bytes"].get<long long>(), kMlp4PeakLiveBytes);
  // The log's op times, run once each: nothing waits on a copy, so the step is the compute.
  EXPECT_NEAR(out["base_compute_s"].get<double>(), kMlp4OpSeconds, 1e-12);
  EXPECT_NEAR(out["simulated_s"].get<double>(), kMlp4OpSeconds, 1e-12);
}

TEST(EbbCli, SimulateUnderASixtyPercentBudgetWithRecompute) {
  CliRun run;
  simulate_json("--budget 60% --policy recompute", &run);
  // Infeasible: the log's constants (parameters) alone pass 60% of the peak, and recompute
  // cannot evict a tensor without a producer.
  EXPECT_EQ(run.exit_code, 1);
  for (const char* text : {"OutOfMemory", "parameter 'x1035'", "needs 67108864 bytes",
                           "policy recompute", "budget of 432026193 bytes"}) {
    EXPECT_NE(run.err.find(text), std::string::npos) << text << " in " << run.err;
  }
}

// Each run either fits its budget or says it cannot; which one is part of the behaviour.
TEST(EbbCli, SimulateKeepsReservedWithinTheBudget) {
  struct Case {
    const char* args;
    double fraction;
    bool fits;
  };
  const Case cases[] = {
      // At the peak, swapping a few parameters out makes room for the allocator's rounding.
      {"--budget 100% --policy both", 1.00, true},
      {"--budget 80% --policy swap", 0.80, true},
      {"--budget 80% --policy both", 0.80, true},
      // Half again the peak: nothing to evict.
      {"--budget 150% --policy none", 1.50, true},
      // Whole segments per size class: the classic allocator needs more than 1% over the peak,
      // and policy none cannot make room.
      {"--budget 101% --policy none --classic", 1.01, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    CliRun run;
    nlohmann::json out = simulate_json(c.args, &run);
    const auto budget =
        static_cast<long long>(static_cast<double>(kMlp4PeakLiveBytes) * c.fraction);
    if (!c.fits) {
      EXPECT_EQ(run.exit_code, 1) << run.out;
      EXPECT_TRUE(run.out.empty()) << run.out;
      for (const std::string& text : {std::string("OutOfMemory"), std::string("policy none"),
                                      "budget of " + std::to_string(budget) + " bytes"}) {
        EXPECT_NE(run.err.find(text), std::string::npos) << text << " in " << run.err;
      }
      continue;
    }
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(out["budget_bytes"].get<long long>(), budget);
    EXPECT_EQ(out["peak_live_bytes"].get<long long>(), kMlp4PeakLiveBytes);
    EXPECT_GT(out["peak_reserved_bytes"].get<long long>(), 0);
    EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), budget);
    EXPECT_EQ(out["ops"].get<int>(), 91);
    if (c.fraction > 1.2) {
      EXPECT_EQ(out["evictions"].get<long long>(), 0);
      // Nothing evicted: all of the peak is reserved at once.
      EXPECT_GE(out["peak_reserved_bytes"].get<long long>(), kMlp4PeakLiveBytes);
    } else {
      EXPECT_GT(out["evictions"].get<long long>(), 0) << "under the peak, something must move";
    }
  }
}

TEST(EbbCli, SimulateRejectsABadPolicyAndABadBudget) {
  CliRun run = ebb("simulate " + kWorkloads + "mlp4_train.dtr.log --budget 60% --policy lru");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("--policy \"lru\" is not keep, recompute-all, sqrt, swap-all, plan, "
                         "dynamic, none, swap, recompute or both"),
            std::string::npos)
      << run.err;
  for (const char* budget : {"60%%", "abc", "-5%", "0%", "12XB"}) {
    run = ebb("simulate " + kWorkloads + "mlp4_train.dtr.log --budget " + budget +
              " --policy recompute");
    EXPECT_NE(run.exit_code, 0) << budget;
    EXPECT_NE(run.err.find("--budget"), std::string::npos) << budget << ": " << run.err;
  }
}

// `ebb plan`: a planner's plan, checked on the sim device. The bundled mlp4 profile is mostly
// parameters that only a swap can move, so the plan tests run a generated training profile
// (twelve layers, activations and gradients of 1 to 8 MiB).
std::string generated_profile() {
  static const std::string path = [] {
    std::string p =
        testing::TempDir() + "ebb_cli_test_" + std::to_string(getpid()) + ".profile.json";
    EXPECT_TRUE(ebb::write_profile(ebb::testing_profiles::training_profile(12, 3), p).ok());
    return p;
  }();
  return path;
}

TEST(EbbCli, PlanFitsTheBudgetAndWritesThePlan) {
  const std::string out =
      testing::TempDir() + "ebb_cli_test_" + std::to_string(getpid()) + ".plan.json";
  CliRun run = ebb("plan " + generated_profile() + " --budget 85% --json --out " + out);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json r = nlohmann::json::parse(run.out);
  for (const char* key : {"peak_reserved_bytes", "budget_bytes", "base_compute_s",
                          "extra_compute_s", "extra_compute_fraction", "predicted_step_s",
                          "swapped_bytes", "recomputed_ops", "planner_seconds"}) {
    EXPECT_TRUE(r.contains(key)) << key << " in " << run.out;
  }
  EXPECT_EQ(r["feasible"], true);
  EXPECT_LE(r["peak_reserved_bytes"].get<long long>(), r["budget_bytes"].get<long long>());
  EXPECT_GT(r["planned_evictions"].get<long long>(), 0);
  EXPECT_EQ(r["swapped_bytes"].get<long long>(), 0);  // no host link by default
  // Recompute only: the bound no plan beats comes with it, and this plan does not beat it.
  ASSERT_TRUE(r.contains("recompute_lower_bound")) << run.out;
  const nlohmann::json& bound = r["recompute_lower_bound"];
  EXPECT_GT(bound["extra_compute_fraction"].get<double>(), 0);
  EXPECT_LE(bound["extra_compute_fraction"].get<double>(),
            r["extra_compute_fraction"].get<double>());
  EXPECT_LE(bound["min_budget_bytes"].get<long long>(), r["budget_bytes"].get<long long>());
  std::ifstream file(out);
  nlohmann::json plan = nlohmann::json::parse(file);
  EXPECT_EQ(plan["version"], 1);
  EXPECT_EQ(plan["policy"], "plan");
  EXPECT_EQ(plan["predicted"]["checked_on_sim"], true);
  EXPECT_EQ(plan["evictions"].size(), r["planned_evictions"].get<std::size_t>());
  std::remove(out.c_str());
}

TEST(EbbCli, PlanPrintsTheBudgetAndThePeakOnTheBundledProfile) {
  CliRun run = ebb("plan " + kWorkloads + "mlp4_train.profile.json --budget 101%");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const long long budget = static_cast<long long>(static_cast<double>(kMlp4PeakLiveBytes) * 1.01);
  EXPECT_NE(run.out.find("(91 ops), policy plan"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("budget           " + std::to_string(budget) + " B"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("compute          0.003705 s base"), std::string::npos) << run.out;
  const std::string key = "peak reserved    ";
  const std::size_t at = run.out.find(key);
  ASSERT_NE(at, std::string::npos) << run.out;
  const long long peak = std::stoll(run.out.substr(at + key.size()));
  EXPECT_GT(peak, 0);
  EXPECT_LE(peak, budget);
  EXPECT_NE(run.out.find(" B (", at), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("on the sim device", at), std::string::npos) << run.out;
}

TEST(EbbCli, PlanReportsTheSmallestFeasibleBudget) {
  CliRun run = ebb("plan " + generated_profile() + " --budget 20% --json");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("OutOfMemory"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("is infeasible for policy plan"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("the smallest feasible budget is "), std::string::npos) << run.err;
  nlohmann::json r = nlohmann::json::parse(run.out);
  EXPECT_EQ(r["feasible"], false);
  EXPECT_GT(r["recompute_lower_bound"]["min_budget_bytes"].get<long long>(), 0);
}

TEST(EbbCli, PlanWithAHostLinkSwaps) {
  CliRun run = ebb("plan " + generated_profile() + " --budget 70% --json --hw " +
                   EBB_SOURCE_DIR "/profiles/hw/pcie4-25gbps.json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json r = nlohmann::json::parse(run.out);
  EXPECT_EQ(r["hardware"], "pcie4-25gbps");
  EXPECT_GT(r["swapped_bytes"].get<long long>(), 0);
  EXPECT_LE(r["peak_reserved_bytes"].get<long long>(), r["budget_bytes"].get<long long>());
  EXPECT_FALSE(r.contains("recompute_lower_bound")) << "a swap is no replay: no such bound";

  run = ebb("plan " + generated_profile() + " --budget 95% --policy swap-all --link-gbps 0");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("swap-all needs a host link"), std::string::npos) << run.err;
}

TEST(EbbCli, PlanRejectsABadHardwareProfile) {
  const std::string hw =
      testing::TempDir() + "ebb_cli_test_hw_" + std::to_string(getpid()) + ".json";
  std::ofstream(hw) << R"({"name":"x","host_to_device_bytes_per_s":-1,)"
                       R"("device_to_host_bytes_per_s":1e9,"link_latency_ns":0,"duplex":true})";
  CliRun run = ebb("plan " + generated_profile() + " --budget 90% --hw " + hw);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(hw + ": host_to_device_bytes_per_s: must be a finite number"),
            std::string::npos)
      << run.err;
  std::remove(hw.c_str());
}

// Without a thrash limit every policy runs within the budget; with the default one (2x the base
// compute) a policy either runs or ends with the "thrashed" error that names the limit.
TEST(EbbCli, SimulateRunsThePlannersPolicies) {
  for (const char* policy : {"keep", "recompute-all", "sqrt", "plan", "dynamic"}) {
    CliRun limited;
    (void)simulate_json(std::string("--budget 101% --policy ") + policy, &limited);
    if (limited.exit_code != 0) {
      EXPECT_NE(limited.err.find("thrashed"), std::string::npos) << policy << ": " << limited.err;
      EXPECT_NE(limited.err.find("past the limit of 2.000x"), std::string::npos) << limited.err;
    }
    CliRun run;
    nlohmann::json out =
        simulate_json(std::string("--budget 101% --max-overhead 0 --policy ") + policy, &run);
    ASSERT_EQ(run.exit_code, 0) << policy << ": " << run.err;
    EXPECT_EQ(out["policy"], policy);
    EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), out["budget_bytes"].get<long long>());
  }
}

// A run that thrashes names the smallest budget, among those it went on to try, at which the
// same policy stayed under the limit; that budget runs.
TEST(EbbCli, SimulateThatThrashesNamesABudgetThatStaysUnderTheLimit) {
  const std::string log =
      testing::TempDir() + "ebb_cli_test_tree_" + std::to_string(getpid()) + ".log";
  std::ofstream(log) << ebb::test_logs::tree_recurrent_log(7, 256 * 1024);
  CliRun run = ebb("simulate " + log + " --budget 10% --policy recompute");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("thrashed under the budget of "), std::string::npos) << run.err;
  const std::string said = "the smallest budget tried at which it stayed under the limit is ";
  const std::size_t at = run.err.find(said);
  ASSERT_NE(at, std::string::npos) << run.err;
  const std::string bytes =
      run.err.substr(at + said.size(), run.err.find(' ', at + said.size()) - (at + said.size()));
  EXPECT_NE(run.err.find("budgets tried"), std::string::npos) << run.err;
  CliRun at_it = ebb("simulate " + log + " --budget " + bytes + " --policy recompute --json");
  EXPECT_EQ(at_it.exit_code, 0) << bytes << ": " << at_it.err;
  std::remove(log.c_str());
}

}  // namespace

namespace {

TEST(EbbCli, DemoJsonSaysIdentical) {
  CliRun run = ebb("demo --steps 6 --json");
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out);
  EXPECT_EQ(out["identical"], true);
  EXPECT_EQ(out["losses_identical"], true);
  EXPECT_EQ(out["parameters_identical"], true);
  // Half the unconstrained peak, which the budgeted run keeps to by evicting.
  const auto unconstrained = out["peak_unconstrained_bytes"].get<long long>();
  EXPECT_EQ(out["budget_bytes"].get<long long>(), unconstrained / 2);
  EXPECT_GT(out["peak_budgeted_bytes"].get<long long>(), 0);
  EXPECT_LE(out["peak_budgeted_bytes"].get<long long>(), out["budget_bytes"].get<long long>());
  EXPECT_GT(out["recomputed_ops"].get<long long>() + out["swapped_out_bytes"].get<long long>(), 0);
  // The overhead is the budgeted run's extra time per step.
  const double budgeted_ms = out["ms_per_step_budgeted"].get<double>();
  const double unconstrained_ms = out["ms_per_step_unconstrained"].get<double>();
  ASSERT_GT(unconstrained_ms, 0);
  EXPECT_NEAR(out["overhead"].get<double>(), budgeted_ms / unconstrained_ms - 1, 1e-9);
}

// `ebb train --json`'s output: one object per line (each step, then the summary).
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::istringstream lines(out);
  std::vector<nlohmann::json> objects;
  for (std::string line; std::getline(lines, line);) objects.push_back(nlohmann::json::parse(line));
  return objects;
}

TEST(EbbCli, TrainPrintsAStepLineAndASummary) {
  CliRun run =
      ebb("train --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 "
          "--steps 2 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<nlohmann::json> steps = json_lines(run.out);
  ASSERT_FALSE(steps.empty());
  const nlohmann::json summary = steps.back();
  steps.pop_back();
  ASSERT_EQ(steps.size(), 2u) << run.out;  // two steps, then the summary
  const nlohmann::json& last = steps.back();
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i]["step"], i + 1);
  // A fresh model predicts about uniformly over the 64 tokens: a loss near ln 64 = 4.16.
  const double first_loss = steps[0]["loss"].get<double>();
  EXPECT_NEAR(first_loss, std::log(64.0), 0.5);
  EXPECT_EQ(summary["final_loss"].get<double>(), last["loss"].get<double>());
  const auto live = summary["peak_live_bytes"].get<long long>();
  const auto reserved = summary["peak_reserved_bytes"].get<long long>();
  EXPECT_GT(live, 0);
  EXPECT_GE(reserved, live);
  EXPECT_LE(reserved, summary["budget_bytes"].get<long long>());
  EXPECT_EQ(reserved, std::max(steps[0]["peak_reserved_bytes"].get<long long>(),
                               last["peak_reserved_bytes"].get<long long>()));
  // Policy none by default: nothing recomputed or swapped.
  EXPECT_EQ(summary["recomputed_ops"].get<long long>(), 0);
  EXPECT_EQ(summary["swapped_out_bytes"].get<long long>(), 0);
  // The median of two steps is their mean; a step is batch x seq = 32 tokens.
  const double median_ms = summary["ms_per_step_median"].get<double>();
  EXPECT_NEAR(median_ms, (steps[0]["ms"].get<double>() + last["ms"].get<double>()) / 2,
              1e-9 * median_ms);
  EXPECT_GT(median_ms, 0);
  EXPECT_NEAR(summary["tokens_per_s"].get<double>(), 32 * 1000 / median_ms,
              1e-9 * summary["tokens_per_s"].get<double>());
}

// fp16 in JSON: each step says whether it was skipped and under which loss scale, and the
// summary counts the skips and reports model state per parameter against its formula.
TEST(EbbCli, TrainJsonReportsSkipsAndModelState) {
  CliRun run =
      ebb("train --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 "
          "--steps 3 --precision fp16 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<nlohmann::json> steps = json_lines(run.out);
  ASSERT_EQ(steps.size(), 4u) << run.out;
  const nlohmann::json summary = steps.back();
  steps.pop_back();
  long long skipped = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const bool skip = steps[i].at("skipped").get<bool>();
    skipped += skip ? 1 : 0;
    EXPECT_GT(steps[i].at("loss_scale").get<double>(), 0);
    if (i > 0 && steps[i - 1].at("skipped").get<bool>()) {
      EXPECT_EQ(steps[i]["loss_scale"].get<double>(), steps[i - 1]["loss_scale"].get<double>() / 2);
    }
  }
  EXPECT_EQ(summary.at("skipped_steps").get<long long>(), skipped);
  EXPECT_EQ(summary.at("precision"), "fp16");
  const nlohmann::json& state = summary.at("model_state");
  EXPECT_EQ(state.at("formula_bytes_per_parameter").get<double>(), 16.0);
  EXPECT_GE(state.at("bytes_per_parameter").get<double>(), 16.0);
  EXPECT_EQ(state.at("parameter_bytes").get<long long>() +
                state.at("gradient_bytes").get<long long>() +
                state.at("optimizer_state_bytes").get<long long>(),
            static_cast<long long>(state.at("bytes_per_parameter").get<double>() *
                                       state.at("parameters").get<double>() +
                                   0.5));
}

// The state on the host: the same losses as on the device, no optimizer state on the device, and
// the placement and the CPU step in the summary.
TEST(EbbCli, TrainWithTheOptimizerStateOnTheHost) {
  const std::string model =
      "train --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 --steps 3 "
      "--precision bf16 --json ";
  CliRun device = ebb(model);
  CliRun host = ebb(model + "--optimizer-state host --delayed-update");
  CliRun host_plain = ebb(model + "--optimizer-state host");
  ASSERT_EQ(device.exit_code, 0) << device.err;
  ASSERT_EQ(host.exit_code, 0) << host.err;
  ASSERT_EQ(host_plain.exit_code, 0) << host_plain.err;
  const nlohmann::json d = json_lines(device.out).back();
  const nlohmann::json h = json_lines(host_plain.out).back();
  EXPECT_EQ(d.at("parameters_fnv1a"), h.at("parameters_fnv1a"));
  EXPECT_EQ(h.at("model_state").at("optimizer_state_bytes").get<long long>(), 0);
  const nlohmann::json& state = h.at("optimizer_state");
  EXPECT_EQ(state.at("policy"), "host");
  for (const auto& p : state.at("placement")) EXPECT_EQ(p, "host");
  EXPECT_EQ(state.at("offload").at("cpu_steps").get<long long>(), 3);
  const nlohmann::json delayed = json_lines(host.out).back().at("optimizer_state");
  EXPECT_TRUE(delayed.at("delayed_update").get<bool>());
  EXPECT_LE(delayed.at("offload").at("hidden_share").get<double>(), 1.0);
}

// `ebb plan --optimizer-state auto` on a trainer's profile: a choice per slice, in the JSON and
// in the plan file; a profile without optimizer state is refused.
TEST(EbbCli, PlanPlacesTheOptimizerStatePerSlice) {
  const std::string profile = write_temp("state_profile.json", "");
  CliRun train =
      ebb("train --layers 2 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 --steps 2 "
          "--precision bf16 --profile-out " +
          profile);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const std::string plan_path = write_temp("state_plan.json", "");
  CliRun run =
      ebb("plan " + profile +
          " --budget 4MiB --link-gbps 16 --optimizer-state auto --cpu-state-gbps 10 --json "
          "--out " +
          plan_path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json r = nlohmann::json::parse(run.out);
  ASSERT_TRUE(r.contains("state_placement")) << run.out;
  // Two groups: decay (a slice per block) and no_decay (embeddings, a slice per block, the
  // final LayerNorm).
  EXPECT_GE(r["state_placement"].size(), 4u);
  for (const auto& s : r["state_placement"]) {
    const std::string choice = s.at("choice");
    EXPECT_TRUE(choice == "device" || choice == "swapped" || choice == "host" || choice == "nvme")
        << choice;
  }
  std::ifstream file(plan_path);
  const nlohmann::json plan = nlohmann::json::parse(file);
  EXPECT_EQ(plan.at("state_placement").size(), r["state_placement"].size());
  CliRun bare = ebb("plan " + generated_profile() + " --budget 90% --optimizer-state auto");
  EXPECT_EQ(bare.exit_code, 1);
  EXPECT_NE(bare.err.find("no optimizer state"), std::string::npos) << bare.err;
  std::remove(profile.c_str());
  std::remove(plan_path.c_str());
}

// GPT-2 small at full scale on the sim device of an H100: three steps whose kernels are timed
// by the chip's roofline, not run, in seconds here; the loss is null (nothing computed it), the
// peak within the chip's 80 GiB.
TEST(EbbCli, TrainGpt2SmallOnTheSimDevice) {
  CliRun run = ebb("train --device sim --hw " EBB_SOURCE_DIR
                   "/profiles/hw/h100-sxm.json --model gpt2-124m --steps 3 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream lines(run.out);
  std::string line;
  std::vector<nlohmann::json> objects;
  while (std::getline(lines, line)) objects.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objects.size(), 4U) << run.out;  // three steps and the summary
  for (int s = 0; s < 3; ++s) {
    const nlohmann::json& step = objects[static_cast<std::size_t>(s)];
    EXPECT_EQ(step["step"], s + 1);
    EXPECT_TRUE(step["loss"].is_null()) << step;
    EXPECT_GT(step["ms"].get<double>(), 0) << step;
  }
  const nlohmann::json& summary = objects.back();
  EXPECT_TRUE(summary["simulated"].get<bool>());
  EXPECT_TRUE(summary["final_loss"].is_null());
  EXPECT_GT(summary["peak_reserved_bytes"].get<double>(), 0);
  EXPECT_EQ(summary["budget_bytes"].get<double>(), 80.0 * (1 << 30));  // the chip's memory
  EXPECT_LE(summary["peak_reserved_bytes"].get<double>(), 80.0 * (1 << 30));
  EXPECT_EQ(summary["model_state"]["parameters"], 124'439'808);
}

TEST(EbbCli, TrainRejectsBadInputBeforeTraining) {
  struct Case {
    const char* args;
    const char* message;
  };
  const Case cases[] = {
      {"--d-model 30 --heads 4", "does not divide --d-model"},
      {"--seq 0", "--seq must be positive"},
      {"--batch 0", "--batch must be positive"},
      {"--vocab 70000", "above 65535"},
      {"--data /nonexistent/tokens.bin", "cannot open"},
      {"--budget 1KiB --policy both", "below the"},
      {"--policy sometimes", "is not keep, recompute-all, sqrt, swap-all, plan, dynamic, none"},
      {"--device sim", "--device sim needs --hw FILE"},
      {"--device sim --hw " EBB_SOURCE_DIR "/profiles/hw/pcie4-25gbps.json", "--device-memory"},
      {"--device sim --link-gbps 8 --hw " EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json",
       "the sim's is --hw's"},
      {"--model gpt2-9b", "--model \"gpt2-9b\" is not a preset (the presets: gpt2-124m, "},
      {"--precision fp8", "--precision \"fp8\" is not fp32, bf16 or fp16"},
      {"--optimizer sgd", "--optimizer \"sgd\" is not adamw, adafactor or sm3"},
      {"--grad-dtype f64", "--grad-dtype \"f64\" is not fp32, bf16 or fp16"},
      {"--precision bf16 --grad-dtype fp16", "neither f32 nor the precision's bf16"},
      {"--grad-accum 0", "--grad-accum 0 must be at least 1"},
      {"--clip-grad-norm -1", "--clip-grad-norm -1"},
      {"--checkpoint-dir /proc/ebb-no-such --checkpoint-every 1", "/proc/ebb-no-such"},
      {"--resume --checkpoint-dir /nonexistent/ebb-ckpt", "no checkpoint to resume from"},
      {"--optimizer-state disk", "--optimizer-state \"disk\" is not device, host, nvme or auto"},
      {"--optimizer-state nvme", "--nvme-dir"},
      {"--optimizer-state auto", "give --budget"},
      {"--delayed-update", "--delayed-update with --optimizer-state device"},
      {"--optimizer-state host --host-tier 16KiB", "needs"},
  };
  for (const Case& c : cases) {
    CliRun run = ebb(std::string("train --steps 1 ") + c.args);
    EXPECT_EQ(run.exit_code, 1) << c.args;
    EXPECT_NE(run.err.find(c.message), std::string::npos) << c.args << ": " << run.err;
    EXPECT_EQ(run.out.find("step    1"), std::string::npos) << c.args << ": trained anyway";
  }
}

}  // namespace

namespace {

// A fresh directory in the build tree (O_DIRECT works there where /tmp may be a tmpfs), for
// the NVMe tier's files.
std::string make_temp_dir(const std::string& name) {
  std::string path = (::ebb::test_support::scratch_base() /
                      ("ebb_cli_test_" + std::to_string(getpid()) + "_" + name + "_XXXXXX"))
                         .string();
  EXPECT_NE(mkdtemp(path.data()), nullptr) << path;
  return path;
}

TEST(EbbCli, IobenchJsonReportsBothBandwidthsAndLeavesNoFile) {
  EBB_SKIP_WITHOUT_IO_URING();
  const std::string dir = make_temp_dir("iobench");
  CliRun run = ebb("iobench --dir " + dir + " --size 8MiB --bs 256KiB --qd 4 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json j = nlohmann::json::parse(run.out);
  EXPECT_GT(j.at("write_gbps").get<double>(), 0);
  EXPECT_GT(j.at("read_gbps").get<double>(), 0);
  EXPECT_EQ(j.at("block_bytes").get<std::size_t>(), std::size_t{256} << 10);
  EXPECT_EQ(j.at("checksums").get<bool>(), true);
  EXPECT_EQ(rmdir(dir.c_str()), 0) << "the tier left files in " << dir;

  run = ebb("iobench --dir " + dir + "/missing --size 8MiB --json");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(dir + "/missing"), std::string::npos) << run.err;
  run = ebb("iobench --dir " + dir + " --bs 1000 --json");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("4 KiB"), std::string::npos) << run.err;
}

// --- ebb plan --model: a configuration on N of a chip (tools/config_plan.h) ------------------

namespace config_plan_test {

const std::string kH100 = EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json";

nlohmann::json last_json_line(const std::string& out) {
  const std::size_t end = out.find_last_not_of('\n');
  const std::size_t begin = out.rfind('\n', end);
  return nlohmann::json::parse(out.substr(begin == std::string::npos ? 0 : begin + 1));
}

// One GPU: the step's figures are consistent with each other and with the model: tokens/s is
// the global batch's tokens over the step, the FLOPs per token are 6Ψ + 12·L·h·s, MFU is their
// product over the chip's dense bf16 peak, and the peak is within the chip's memory.
TEST(EbbPlanConfig, OneGpuAnswersWithConsistentFigures) {
  CliRun run = ebb("plan --model gpt2-124m --hw " + kH100 + " --micro-batch 4 --seq 256 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json c = last_json_line(run.out)["configuration"];
  ASSERT_TRUE(c["fits"].get<bool>());
  const double step_s = c["step_ms"].get<double>() / 1e3;
  EXPECT_NEAR(c["tokens_per_s"].get<double>(), 4 * 256 / step_s, 1e-6 * 4 * 256 / step_s);
  const double flops = 6.0 * 124'439'808 - 6.0 * (1024 - 256) * 768 + 12.0 * 12 * 768 * 256;
  EXPECT_DOUBLE_EQ(c["model_flops_per_token"].get<double>(), flops);
  EXPECT_NEAR(c["mfu"].get<double>(), c["tokens_per_s"].get<double>() * flops / 989.4e12, 1e-9);
  EXPECT_LE(c["peak_bytes"]["reserved"].get<double>(), c["budget_bytes"].get<double>());
  EXPECT_GT(c["peak_bytes"]["activations"].get<double>(), 0);
  // The parts add up to the step.
  const nlohmann::json& parts = c["step_parts_ms"];
  EXPECT_NEAR(parts["compute"].get<double>() + parts["recompute"].get<double>() +
                  parts["exposed_transfers_and_communication"].get<double>() +
                  parts["host_optimizer_step"].get<double>(),
              c["step_ms"].get<double>(), 1e-6);
  EXPECT_GT(parts["compute"].get<double>(), 0);
  EXPECT_EQ(c["state_placement"]["host_slices"].get<int>(), 0);
}

// --optimizer-state host (ZeRO-Offload): no optimizer state on the device, the host holds it,
// and the CPU step is a part of the step of its own, which makes it slower than with the state
// on the device. A host too small for it, or NVMe slower than the default, is answered too.
TEST(EbbPlanConfig, OptimizerStateOffTheDevice) {
  const std::string base =
      "plan --model gpt2-124m --hw " + kH100 + " --micro-batch 4 --seq 256 --json";
  CliRun device = ebb(base);
  CliRun host = ebb(base + " --optimizer-state host");
  ASSERT_EQ(device.exit_code, 0) << device.err;
  ASSERT_EQ(host.exit_code, 0) << host.err;
  const nlohmann::json d = last_json_line(device.out)["configuration"];
  const nlohmann::json h = last_json_line(host.out)["configuration"];
  ASSERT_TRUE(h["fits"].get<bool>());
  EXPECT_EQ(h["optimizer_state"], "host");
  EXPECT_EQ(h["state_placement"]["device_slices"].get<int>(), 0);
  EXPECT_GT(h["state_placement"]["host_slices"].get<int>(), 0);
  EXPECT_EQ(h["peak_bytes"]["optimizer_state"].get<double>(), 0);
  const double psi = 124'439'808 - (1024 - 256) * 768;
  EXPECT_NEAR(h["state_placement"]["host_bytes"].get<double>() / (16 * psi), 1.0, 0.01);
  const nlohmann::json& parts = h["step_parts_ms"];
  EXPECT_GT(parts["host_optimizer_step"].get<double>(), 0);
  EXPECT_NEAR(parts["compute"].get<double>() + parts["recompute"].get<double>() +
                  parts["exposed_transfers_and_communication"].get<double>() +
                  parts["host_optimizer_step"].get<double>(),
              h["step_ms"].get<double>(), 1e-6);
  EXPECT_GT(h["step_ms"].get<double>(), d["step_ms"].get<double>());
  // One GPU: what is exposed is the host link's copies, none of it communication.
  EXPECT_EQ(parts["exposed_communication"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(parts["exposed_transfers"].get<double>(),
                   parts["exposed_transfers_and_communication"].get<double>());

  CliRun small = ebb(base + " --optimizer-state host --host-memory 64MiB");
  EXPECT_EQ(small.exit_code, 1) << small.err;
  const nlohmann::json s = last_json_line(small.out)["configuration"];
  EXPECT_FALSE(s["fits"].get<bool>());
  EXPECT_NE(s["why_not"].get<std::string>().find("host tier"), std::string::npos) << s;

  CliRun nvme = ebb(base + " --optimizer-state nvme");
  CliRun slow_nvme = ebb(base + " --optimizer-state nvme --nvme-bandwidth 1");
  ASSERT_EQ(nvme.exit_code, 0) << nvme.err;
  ASSERT_EQ(slow_nvme.exit_code, 0) << slow_nvme.err;
  const nlohmann::json n = last_json_line(nvme.out)["configuration"];
  EXPECT_GT(n["state_placement"]["nvme_slices"].get<int>(), 0);
  EXPECT_GT(last_json_line(slow_nvme.out)["configuration"]["step_ms"].get<double>(),
            n["step_ms"].get<double>());
}

// ZeRO stage 1 on 8 GPUs keeps 1/8 of the optimizer state per GPU (12Ψ/8 against 12Ψ).
TEST(EbbPlanConfig, ZeroPartitionsTheStatePerGpu) {
  const std::string base = "plan --model gpt2-124m --hw " + kH100 +
                           " --gpus 8 --micro-batch 2 --seq 128 --policy keep --json --zero ";
  CliRun zero0 = ebb(base + "0");
  CliRun zero1 = ebb(base + "1");
  ASSERT_EQ(zero0.exit_code, 0) << zero0.err;
  ASSERT_EQ(zero1.exit_code, 0) << zero1.err;
  const double s0 = last_json_line(zero0.out)["configuration"]["peak_bytes"]["optimizer_state"];
  const double s1 = last_json_line(zero1.out)["configuration"]["peak_bytes"]["optimizer_state"];
  const double psi = 124'439'808 - (1024 - 128) * 768;
  EXPECT_NEAR(s0 / (12 * psi), 1.0, 0.01);
  EXPECT_NEAR(s1 / (12 * psi / 8), 1.0, 0.02);
}

// With the state on the device, what ZeRO leaves exposed is communication, none of it the host
// link's: on a PCIe-only chip (L40S) the reductions after the backward are.
TEST(EbbPlanConfig, ZerosExposedTimeIsCommunication) {
  CliRun run = ebb("plan --model gpt2-124m --hw " EBB_SOURCE_DIR
                   "/profiles/hw/l40s.json --gpus 8 --zero 1 --micro-batch 2 --seq 128 "
                   "--policy keep --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json parts = last_json_line(run.out)["configuration"]["step_parts_ms"];
  EXPECT_GT(parts["exposed_communication"].get<double>(), 0);
  EXPECT_NEAR(parts["exposed_transfers"].get<double>(), 0, 1e-9);
  EXPECT_NEAR(parts["exposed_communication"].get<double>(),
              parts["exposed_transfers_and_communication"].get<double>(), 1e-9);
}

// A configuration that does not fit is an answer: exit 1, fits false with the reason, and what
// would fit (here: the same GPU with the optimizer state on the host).
TEST(EbbPlanConfig, WhatDoesNotFitSaysWhatWould) {
  CliRun run = ebb("plan --model llama-7b-like --hw " + kH100 + " --seq 512 --json");
  ASSERT_EQ(run.exit_code, 1) << run.err;
  EXPECT_TRUE(run.err.empty()) << run.err;
  const nlohmann::json c = last_json_line(run.out)["configuration"];
  EXPECT_FALSE(c["fits"].get<bool>());
  EXPECT_NE(c["why_not"].get<std::string>().find("bytes"), std::string::npos);
  ASSERT_TRUE(c.contains("would_fit"));
  EXPECT_TRUE(c["would_fit"]["fits"].get<bool>());
  // ZeRO-Offload's answer: on the same GPU, the master weights and AdamW's moments (12 bytes a
  // parameter of the 16) move to the host.
  EXPECT_EQ(c["would_fit"]["gpus"].get<int>(), 1);
  EXPECT_EQ(c["would_fit"]["optimizer_state"].get<std::string>(), "host");
}

// --search against brute force: every micro-batch, state placement and policy answered one by
// one. The search skips the placements off the device that cannot win (where the device's keep
// fits, or where the CPU step alone is slower than the fastest step found), and still finds the
// fastest of them all. At 2200 MiB the device's state fits with keep at micro-batch 1, not at 4.
TEST(EbbPlanConfig, SearchFindsTheFastestOfEveryConfiguration) {
  const std::string common =
      "plan --model gpt2-124m --hw " + kH100 + " --seq 256 --budget 2200MiB --json";
  CliRun search = ebb(common + " --global-batch 4 --search");
  ASSERT_EQ(search.exit_code, 0) << search.err;
  const nlohmann::json list = last_json_line(search.out)["search"];
  double fastest = 0;
  int answered = 0;
  for (int micro : {1, 2, 4}) {
    for (const char* state : {"device", "host", "nvme"}) {
      for (const char* policy : {"keep", "plan"}) {
        CliRun one =
            ebb(common + " --micro-batch " + std::to_string(micro) + " --grad-accum " +
                std::to_string(4 / micro) + " --optimizer-state " + state + " --policy " + policy);
        ASSERT_TRUE(one.exit_code == 0 || one.exit_code == 1) << one.err;
        const nlohmann::json c = last_json_line(one.out)["configuration"];
        ++answered;
        if (c["fits"].get<bool>()) fastest = std::max(fastest, c["tokens_per_s"].get<double>());
      }
    }
  }
  ASSERT_GT(fastest, 0);
  EXPECT_LT(list.size(), static_cast<std::size_t>(answered));  // some were skipped
  EXPECT_DOUBLE_EQ(list[0]["tokens_per_s"].get<double>(), fastest);
}

// --search: every configuration answered, the fitting ones first, fastest first.
TEST(EbbPlanConfig, SearchRanksTheFittingByTokensPerSecond) {
  CliRun run = ebb("plan --model gpt2-124m --hw " + kH100 +
                   " --gpus 2 --global-batch 8 --seq 128 --search --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json list = last_json_line(run.out)["search"];
  // Stages 0-3, keep and plan, micro-batches 1, 2 and 4 per GPU.
  ASSERT_EQ(list.size(), 24U);
  bool fitting = true;
  double last = 1e300;
  for (const nlohmann::json& a : list) {
    const bool fits = a["fits"].get<bool>();
    EXPECT_FALSE(fits && !fitting) << "a fitting configuration after one that does not";
    fitting = fits;
    if (!fits) continue;
    EXPECT_EQ(a["global_batch"].get<int>(), 8);
    EXPECT_LE(a["tokens_per_s"].get<double>(), last);
    last = a["tokens_per_s"].get<double>();
  }
}

TEST(EbbPlanConfig, BadInputIsNamed) {
  CliRun preset = ebb("plan --model gpt5 --hw " + kH100);
  EXPECT_EQ(preset.exit_code, 1);
  EXPECT_NE(preset.err.find("gpt5"), std::string::npos) << preset.err;
  EXPECT_NE(preset.err.find("llama-7b-like"), std::string::npos) << preset.err;
  CliRun no_chip =
      ebb("plan --model gpt2-124m --hw " EBB_SOURCE_DIR "/profiles/hw/pcie4-25gbps.json");
  EXPECT_EQ(no_chip.exit_code, 1);
  EXPECT_NE(no_chip.err.find("chip"), std::string::npos) << no_chip.err;
  CliRun batch = ebb("plan --model gpt2-124m --hw " + kH100 + " --gpus 8 --global-batch 4");
  EXPECT_EQ(batch.exit_code, 1);
  EXPECT_NE(batch.err.find("fewer than --gpus 8"), std::string::npos) << batch.err;
  CliRun both = ebb("plan some.log --model gpt2-124m --hw " + kH100);
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
  CliRun state = ebb("plan --model gpt2-124m --hw " + kH100 + " --optimizer-state disk");
  EXPECT_EQ(state.exit_code, 1);
  EXPECT_NE(state.err.find("--optimizer-state disk"), std::string::npos) << state.err;
  CliRun nvme = ebb("plan --model gpt2-124m --hw " + kH100 + " --nvme-bandwidth -2");
  EXPECT_EQ(nvme.exit_code, 1);
  EXPECT_NE(nvme.err.find("--nvme-bandwidth"), std::string::npos) << nvme.err;
}

// `ebb bench chip`: this machine's cpu device as a chip that the chip reader accepts, its fp32
// throughput and memory bandwidth measured, the memory as asked.
TEST(EbbPlanConfig, BenchChipDescribesTheCpuDevice) {
  const std::string path = write_temp("cpu-chip.json", "");
  CliRun run = ebb("bench chip --memory 1GiB --out " + path);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ebb::Result<ebb::ChipSpec> chip = ebb::read_chip_spec(path);
  ASSERT_TRUE(chip.ok()) << chip.status().to_string();
  EXPECT_EQ(chip->memory_bytes, std::size_t{1} << 30);
  EXPECT_GT(chip->fp32_flops_per_s, 1e6);
  EXPECT_GT(chip->memory_bytes_per_s, 1e6);
  EXPECT_EQ(chip->bf16_flops_per_s, chip->fp32_flops_per_s);
  std::remove(path.c_str());
}

}  // namespace config_plan_test

}  // namespace
