// Tight generated problems (arena_generate.h): the generator's known packing, the brute-force
// optimum on tiny ones, and the search (called directly, so that the greedy cannot answer for
// it) packing them at exactly their capacity with a packing the validator accepts.
#include "allocator/arena_generate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "allocator/arena_search.h"
#include "tests/allocator/arena_brute_force.h"

namespace ebb {
namespace {

using ::testing::HasSubstr;

TightProblem generate(std::size_t buffers, std::size_t capacity, std::uint64_t seed,
                      std::int64_t time_steps = 0) {
  TightProblemOptions options;
  options.buffers = buffers;
  options.capacity_bytes = capacity;
  options.seed = seed;
  options.time_steps = time_steps;
  Result<TightProblem> problem = generate_tight_problem(options);
  EXPECT_TRUE(problem.ok()) << problem.status().to_string();
  return problem.ok() ? *problem : TightProblem{};
}

// The validator's verdict on offsets at a height of `capacity`.
Status check_packing(const std::vector<PlanBuffer>& buffers,
                     const std::vector<std::size_t>& offsets, std::size_t capacity) {
  ArenaPlan plan;
  plan.offsets = offsets;
  plan.height_bytes = capacity;
  return validate_plan(buffers, plan);
}

TEST(ArenaGenerate, TheCutsTileTheStripSoTheLowerBoundIsTheCapacity) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    const TightProblem p = generate(50 + seed * 10, 1 << 20, seed);
    ASSERT_EQ(p.buffers.size(), 50 + seed * 10);
    EXPECT_EQ(plan_lower_bound_bytes(p.buffers), p.capacity_bytes);
    const Status valid = check_packing(p.buffers, p.offsets, p.capacity_bytes);
    EXPECT_TRUE(valid.ok()) << valid.to_string();
    std::size_t area = 0;
    for (const PlanBuffer& b : p.buffers) {
      area += b.size_bytes * static_cast<std::size_t>(b.upper - b.lower);
    }
    EXPECT_EQ(area, p.capacity_bytes * 2 * p.buffers.size());  // the whole strip, no more
  }
}

TEST(ArenaGenerate, SameSeedSameProblemAndOtherSeedsDiffer) {
  const TightProblem a = generate(100, 1 << 20, 7);
  const TightProblem b = generate(100, 1 << 20, 7);
  const TightProblem c = generate(100, 1 << 20, 8);
  ASSERT_EQ(a.buffers.size(), b.buffers.size());
  bool differs = false;
  for (std::size_t i = 0; i < a.buffers.size(); ++i) {
    EXPECT_EQ(a.buffers[i].size_bytes, b.buffers[i].size_bytes);
    EXPECT_EQ(a.buffers[i].lower, b.buffers[i].lower);
    differs = differs || a.buffers[i].size_bytes != c.buffers[i].size_bytes;
  }
  EXPECT_TRUE(differs);
}

TEST(ArenaGenerate, BadOptionsAreRejectedNamingTheField) {
  TightProblemOptions options;
  options.buffers = 0;
  EXPECT_THAT(generate_tight_problem(options).status().to_string(), HasSubstr("buffers is 0"));
  options.buffers = 7;
  options.capacity_bytes = 2;
  options.time_steps = 3;
  EXPECT_THAT(generate_tight_problem(options).status().to_string(),
              HasSubstr("capacity_bytes 2 x time_steps 3 cannot be cut into 7"));
  options.buffers = 6;  // exactly as many as the strip has unit cells: each one is a buffer
  Result<TightProblem> cells = generate_tight_problem(options);
  ASSERT_TRUE(cells.ok()) << cells.status().to_string();
  for (const PlanBuffer& b : cells->buffers) EXPECT_EQ(b.size_bytes, 1u);
}

TEST(ArenaGenerate, TinyProblemsHaveTheCapacityAsBruteForceOptimumAndTheSearchFindsIt) {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE(seed);
    const TightProblem p = generate(2 + seed % 6, 12, seed, 6);
    EXPECT_EQ(brute_force_height(p.buffers), p.capacity_bytes);
    const auto deadline = arena_internal::Clock::now() + std::chrono::seconds(10);
    const arena_internal::SearchResult found =
        arena_internal::search_packing(p.buffers, p.capacity_bytes, deadline);
    ASSERT_EQ(found.outcome, arena_internal::SearchOutcome::kFound);
    const Status valid = check_packing(p.buffers, found.offsets, p.capacity_bytes);
    EXPECT_TRUE(valid.ok()) << valid.to_string();
    EXPECT_EQ(arena_internal::search_packing(p.buffers, p.capacity_bytes - 1, deadline).outcome,
              arena_internal::SearchOutcome::kInfeasible);
  }
}

TEST(ArenaGenerate, TheSearchPacksMediumProblemsAtExactlyTheirCapacity) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE(seed);
    const TightProblem p = generate(20 + seed % 40, 1 << 20, seed);
    const auto deadline = arena_internal::Clock::now() + std::chrono::seconds(20);
    const arena_internal::SearchResult found =
        arena_internal::search_packing(p.buffers, p.capacity_bytes, deadline);
    ASSERT_EQ(found.outcome, arena_internal::SearchOutcome::kFound);
    const Status valid = check_packing(p.buffers, found.offsets, p.capacity_bytes);
    EXPECT_TRUE(valid.ok()) << valid.to_string();
  }
}

// 150-450 buffers is tools/arena_generated_bench.sh's range, where the search does not yet
// reach the capacity on every problem (issue 17 part 4); the unit test stays below it.
TEST(ArenaGenerate, PlanArenaReachesTheCapacityWithAValidPacking) {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    SCOPED_TRACE(seed);
    const TightProblem p = generate(30 + seed * 3, 1 << 20, seed);
    PlanOptions options;
    options.capacity_bytes = p.capacity_bytes;
    options.time_limit_seconds = 30;
    Result<ArenaPlan> plan = plan_arena(p.buffers, options);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    EXPECT_TRUE(plan->fits);
    EXPECT_EQ(plan->height_bytes, p.capacity_bytes);
    const Status valid = validate_plan(p.buffers, *plan);
    EXPECT_TRUE(valid.ok()) << valid.to_string();
  }
}

}  // namespace
}  // namespace ebb
