// `ebb bench suite`: a fixed matrix of workloads x budgets x policies, written as
// DIR/results.csv, DIR/results.json and one SVG per workload (step time over the unconstrained
// step time against the budget, one line per policy). Two kinds of workload:
//  - a profile or DTR log: one iteration run through the engine on the sim device, each op taking
//    its profiled time (tools/plan_eval.h's evaluate_policy, as `ebb simulate` runs it), whatever
//    --device says, since it has no kernels to run;
//  - with --device cpu or cuda, the reference trainer (tools/train/trainer.h) on that device:
//    every cell a short training run under the cell's budget and policy, its steady-state step
//    time measured and its final parameters compared bit for bit with the unconstrained run's.
// A cell that cannot run (a budget below what the policy can fit, the thrash limit) is a row with
// its reason.
//
// Thread safety: used from main's thread only.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kernels/status.h"

namespace ebb::cli {

struct BenchSuiteOptions {
  std::string device = "sim";  // sim, cpu or cuda: where the trainer workload runs
  std::string hw_file;         // hardware profile JSON; empty: a link of link_gbps
  double link_gbps = 16;       // host<->device GB/s each way when hw_file is empty
  bool quick = false;          // the bundled small workloads only, the trainer small and short (CI)
  std::vector<std::string> workloads;  // DTR logs or profiles, added to the bundled ones
  std::string out_dir;                 // REQUIRES: non-empty
  double max_overhead = 2.0;           // the thrash limit of every cell; REQUIRES: > 0
  std::string profiles_dir;            // where the bundled workloads live (profiles/)
  std::string dtr_logs_dir;            // the README figures' DTR logs; skipped when absent
};

// The matrix's budgets (% of the workload's peak live bytes) and policies, in the order run.
inline constexpr int kSuiteBudgetPercents[] = {100, 80, 60, 50, 40, 30, 20};
inline constexpr const char* kSuitePolicies[] = {"keep", "dynamic",  "recompute-all",
                                                 "sqrt", "swap-all", "plan"};

// Runs the matrix and writes the files; returns the process exit code (0 when every cell ran,
// feasible or not; 1 on bad input or a file that could not be written, with the error printed).
int run_bench_suite(const BenchSuiteOptions& options);

}  // namespace ebb::cli
