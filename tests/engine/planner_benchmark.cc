// Planner time: make_plan on a generated training profile (tests/engine/training_profile.h) of
// range(0) layers, 2 ops each, recompute only, at range(1) percent of the peak live bytes. The
// time is the whole call, sim checks included; the counter planner_s is the plan's own
// planner_seconds (planning without the sim checks). The goal: under 1 s for 10,000 ops.
#include <benchmark/benchmark.h>

#include "engine/planner/planner.h"
#include "tests/engine/training_profile.h"

namespace ebb {
namespace {

void BM_MakePlan(benchmark::State& state) {
  const Profile profile =
      testing_profiles::training_profile(static_cast<std::size_t>(state.range(0)), 1);
  PlannerOptions options;
  options.policy = PlanPolicy::kPlan;
  options.budget_bytes =
      profile_figures(profile).peak_live_bytes * static_cast<std::size_t>(state.range(1)) / 100;
  for (auto _ : state) {
    Result<Plan> plan = make_plan(profile, options);
    if (!plan.ok()) {
      state.SkipWithError(plan.status().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(plan->evictions.data());
    state.counters["planner_s"] = plan->planner_seconds;
  }
  state.counters["ops"] = static_cast<double>(profile.ops.size());
}
BENCHMARK(BM_MakePlan)
    ->Args({500, 80})
    ->Args({1000, 80})
    ->Args({2000, 80})
    ->Args({5000, 80})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace ebb
