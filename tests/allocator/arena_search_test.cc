// The planned-arena search (arena_search.h) called directly, so that the greedy cannot answer
// for it: on tiny random problems it packs at the brute-force optimum and proves one byte less
// infeasible; on generated problems whose packing is known it reaches their capacity.
#include "allocator/arena_search.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <vector>

#include "allocator/arena_generate.h"
#include "tests/allocator/arena_brute_force.h"

namespace ebb {
namespace {

using arena_internal::Clock;
using arena_internal::search_packing;
using arena_internal::SearchOutcome;
using arena_internal::SearchResult;

// No test here comes near it; it only keeps a broken search from hanging the suite.
Clock::time_point far_deadline() { return Clock::now() + std::chrono::seconds(60); }

std::vector<PlanBuffer> random_problem(std::mt19937_64& rng, std::size_t n, std::int64_t horizon,
                                       std::size_t max_size) {
  std::vector<PlanBuffer> buffers;
  for (std::size_t i = 0; i < n; ++i) {
    const auto lower = static_cast<std::int64_t>(rng() % horizon);
    const auto upper = lower + 1 + static_cast<std::int64_t>(rng() % (horizon - lower));
    const std::size_t alignment = rng() % 4 == 0 ? std::size_t{1} << (rng() % 3) : 1;
    buffers.push_back(PlanBuffer{.id = i,
                                 .lower = lower,
                                 .upper = upper,
                                 .size_bytes = 1 + rng() % max_size,
                                 .alignment = alignment});
  }
  return buffers;
}

// The validator's verdict on the search's offsets at a height of `capacity`.
Status check_found(const std::vector<PlanBuffer>& buffers, const SearchResult& found,
                   std::size_t capacity) {
  ArenaPlan plan;
  plan.offsets = found.offsets;
  plan.height_bytes = capacity;
  return validate_plan(buffers, plan);
}

TEST(ArenaSearch, TinyProblemsFitAtTheBruteForceOptimumAndNotOneByteLower) {
  std::mt19937_64 rng(17);
  int with_gaps = 0;  // problems whose optimum is above the most bytes live at once
  for (int trial = 0; trial < 3000; ++trial) {
    SCOPED_TRACE(trial);
    const std::vector<PlanBuffer> buffers = random_problem(rng, 1 + rng() % 7, 6, 16);
    const std::size_t optimum = brute_force_height(buffers);
    with_gaps += optimum > plan_lower_bound_bytes(buffers) ? 1 : 0;
    const SearchResult found = search_packing(buffers, optimum, far_deadline());
    ASSERT_EQ(found.outcome, SearchOutcome::kFound);
    const Status valid = check_found(buffers, found, optimum);
    ASSERT_TRUE(valid.ok()) << valid.to_string();
    ASSERT_EQ(search_packing(buffers, optimum - 1, far_deadline()).outcome,
              SearchOutcome::kInfeasible);
  }
  // The empty-hole branch and the dominance rule only matter where a packing needs a gap.
  EXPECT_GE(with_gaps, 20);
}

TEST(ArenaSearch, GeneratedProblemsArePackedAtExactlyTheirCapacity) {
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE(seed);
    TightProblemOptions options;
    options.buffers = 40 + seed * 2;
    options.capacity_bytes = std::size_t{1} << 20;
    options.seed = seed;
    Result<TightProblem> problem = generate_tight_problem(options);
    ASSERT_TRUE(problem.ok()) << problem.status().to_string();
    const SearchResult found =
        search_packing(problem->buffers, problem->capacity_bytes, far_deadline());
    ASSERT_EQ(found.outcome, SearchOutcome::kFound);
    const Status valid = check_found(problem->buffers, found, problem->capacity_bytes);
    EXPECT_TRUE(valid.ok()) << valid.to_string();
  }
}

}  // namespace
}  // namespace ebb
