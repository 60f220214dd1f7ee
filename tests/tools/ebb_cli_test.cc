// Runs the built `ebb` binary (EBB_CLI_PATH) as a user would and checks what it prints and
// how it exits.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/schema/profile.h"
#include "tests/engine/training_profile.h"
#include "tests/offload/offload_test_support.h"

namespace {

const std::string kWorkloads = EBB_SOURCE_DIR "/profiles/workloads/";

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

TEST(EbbCli, HelpListsTheSubcommands) {
  CliRun run = ebb("--help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("replay"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("bench"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("simulate"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("train"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("demo"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("iobench"), std::string::npos) << run.out;
}

TEST(EbbCli, Version) {
  CliRun run = ebb("--version");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("ebb "), std::string::npos) << run.out;
}

TEST(EbbCli, ReplayJsonHasTheKeys) {
  for (const char* file : {"mlp4_train.dtr.log", "gpt_block_train.trace.jsonl"}) {
    CliRun run = ebb("replay --json " + kWorkloads + file);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    nlohmann::json out = nlohmann::json::parse(run.out, nullptr, false);
    ASSERT_FALSE(out.is_discarded()) << run.out;
    for (const char* key :
         {"peak_live_bytes", "peak_reserved_bytes", "reserved_over_live", "allocs", "frees",
          "seconds", "budget_bytes", "expandable_segments", "file"}) {
      EXPECT_TRUE(out.contains(key)) << key << " missing from " << run.out;
    }
    EXPECT_GT(out["peak_live_bytes"].get<std::size_t>(), 0u);
    EXPECT_GE(out["peak_reserved_bytes"].get<std::size_t>(),
              out["peak_live_bytes"].get<std::size_t>());
    EXPECT_TRUE(out["expandable_segments"].get<bool>());
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
  EXPECT_GE(out["seconds"].get<double>(), 0);
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
  EXPECT_EQ(out["extra_compute_fraction"].get<double>(), 0.0);
  EXPECT_EQ(out["evictions"].get<long long>(), 0);
  EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), out["budget_bytes"].get<long long>());
  EXPECT_GT(out["budget_bytes"].get<long long>(), out["peak_live_bytes"].get<long long>());
  EXPECT_GT(out["base_compute_s"].get<double>(), 0.0);
  EXPECT_GE(out["simulated_s"].get<double>(), out["base_compute_s"].get<double>() * (1 - 1e-9));
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

TEST(EbbCli, SimulateKeepsReservedWithinTheBudget) {
  for (const char* args :
       {"--budget 100% --policy both", "--budget 80% --policy swap", "--budget 80% --policy both",
        "--budget 150% --policy none", "--budget 101% --policy none --classic"}) {
    CliRun run;
    nlohmann::json out = simulate_json(args, &run);
    if (run.exit_code != 0) {
      EXPECT_NE(run.err.find("out of memory"), std::string::npos) << args << ": " << run.err;
      continue;
    }
    EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), out["budget_bytes"].get<long long>())
        << args;
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

TEST(EbbCli, SimulateRunsThePlannersPolicies) {
  for (const char* policy : {"keep", "recompute-all", "sqrt", "plan", "dynamic"}) {
    CliRun run;
    nlohmann::json out = simulate_json(std::string("--budget 101% --policy ") + policy, &run);
    ASSERT_EQ(run.exit_code, 0) << policy << ": " << run.err;
    EXPECT_EQ(out["policy"], policy);
    EXPECT_LE(out["peak_reserved_bytes"].get<long long>(), out["budget_bytes"].get<long long>());
  }
}

}  // namespace

namespace {

TEST(EbbCli, DemoJsonSaysIdentical) {
  CliRun run = ebb("demo --steps 6 --json");
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out);
  EXPECT_EQ(out["identical"], true);
  EXPECT_LE(out["peak_budgeted_bytes"].get<double>(),
            0.5 * out["peak_unconstrained_bytes"].get<double>() + 1);
  EXPECT_TRUE(out.contains("overhead"));
}

TEST(EbbCli, TrainPrintsAStepLineAndASummary) {
  CliRun run =
      ebb("train --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --vocab 64 "
          "--steps 2 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream lines(run.out);
  std::string line;
  int objects = 0;
  nlohmann::json last;
  while (std::getline(lines, line)) {
    last = nlohmann::json::parse(line);
    ++objects;
  }
  EXPECT_EQ(objects, 3);  // two steps and the summary
  for (const char* key : {"final_loss", "peak_reserved_bytes", "peak_live_bytes",
                          "ms_per_step_median", "tokens_per_s"}) {
    EXPECT_TRUE(last.contains(key)) << key;
  }
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
      {"--device sim", "cannot train"},
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

}  // namespace
