// The DTR reference (engine/planner/dtr_reference.h) on tiny graphs worked by hand: which tensor
// the heuristic evicts, when it comes back, what that costs, and where DTR gives up.
#include "engine/planner/dtr_reference.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ebb {
namespace {

struct OpSpec {
  std::string name;
  std::vector<std::size_t> inputs;
  std::vector<std::size_t> outputs;
  std::int64_t duration_ns;
  std::vector<std::size_t> frees;
};

Profile make_profile(const std::vector<std::size_t>& bytes, const std::vector<OpSpec>& ops) {
  Profile p;
  p.source = "hand";
  for (std::size_t id = 0; id < bytes.size(); ++id) {
    ProfiledTensor t;
    t.id = id;
    t.name = "t" + std::to_string(id);
    t.bytes = bytes[id];
    t.dtype = DType::kU8;
    p.tensors.push_back(t);
  }
  for (const OpSpec& s : ops) {
    ProfiledOp op;
    op.index = p.ops.size();
    op.name = s.name;
    op.inputs = s.inputs;
    op.outputs = s.outputs;
    op.duration_ns = s.duration_ns;
    op.frees = s.frees;
    for (std::size_t out : s.outputs) p.tensors[out].producer = op.index;
    for (std::size_t in : s.inputs) {
      std::vector<std::size_t>& acc = p.tensors[in].accesses;
      if (acc.empty() || acc.back() != op.index) acc.push_back(op.index);
    }
    p.ops.push_back(op);
  }
  for (ProfiledTensor& t : p.tensors) {
    if (!t.producer.has_value()) t.kind = TensorKind::kInput;
  }
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  for (std::size_t k = 0; k < p.ops.size(); ++k) p.memory.push_back({live[k], 0});
  EXPECT_TRUE(validate_profile(p, "hand").ok());
  return p;
}

// A training step in miniature: x -> a -> b -> loss l, then the backward pass gb = B1(l, b),
// ga = B0(gb, a). Tensors x 0, a 1, b 2, l 3, gb 4, ga 5. Live bytes: 12, 20, 24, 28 (peak, op
// 3), 20.
Profile step() {
  return make_profile({4, 8, 8, 4, 4, 4}, {
                                              {"f0", {0}, {1}, 100, {}},
                                              {"f1", {1}, {2}, 50, {}},
                                              {"loss", {2}, {3}, 10, {}},
                                              {"b1", {3, 2}, {4}, 20, {3, 2}},
                                              {"b0", {4, 1}, {5}, 30, {4, 1}},
                                          });
}

TEST(DtrReference, EvictsTheOnlyCandidateAndRebuildsItWhereItIsRead) {
  // Budget 24: op 3's gradient (4 B) does not fit beside x, a, b, l (24 B). b and l are op 3's
  // inputs (locked), x has no producer: a goes, after op 2. b and l are freed after op 3 and
  // leave at once (eager eviction: 8 B resident). Op 4 reads a: f0 runs again (100 ns), a back
  // in 16 B, ga brings 20.
  DtrReferenceOptions options;
  options.budget_bytes = 24;
  Result<DtrReferenceResult> r = run_dtr_reference(step(), options);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(r->feasible()) << r->message;
  EXPECT_EQ(r->base_compute_ns, 210);
  EXPECT_EQ(r->remat_compute_ns, 100);
  EXPECT_DOUBLE_EQ(r->extra_compute(), 100.0 / 210.0);
  EXPECT_EQ(r->peak_bytes, 24u);
  EXPECT_EQ(r->evictions, 1u);
  EXPECT_EQ(r->rematerializations, 1u);
  ASSERT_EQ(r->events.size(), 1u);
  EXPECT_EQ(r->events[0].tensor, 1u);
  EXPECT_EQ(r->events[0].evicted_after, std::optional<std::size_t>(2));
  EXPECT_EQ(r->events[0].rematerialized_before, std::optional<std::size_t>(4));

  // As a plan: a dropped after op 2 and replayed before op 4, which reads it.
  const std::vector<Eviction> plan = dtr_plan_evictions(step(), *r, /*after_reads=*/false);
  EXPECT_EQ(dtr_plan_evictions(step(), *r, /*after_reads=*/true), plan);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].tensor, 1u);
  EXPECT_EQ(plan[0].method, EvictionMethod::kRecompute);
  EXPECT_EQ(plan[0].evict_after, 2u);
  EXPECT_EQ(plan[0].needed_at, std::optional<std::size_t>(4));
  EXPECT_EQ(plan[0].prefetch_at, 4u);
}

TEST(DtrReference, FitsWithoutEvictionsAtThePeak) {
  DtrReferenceOptions options;
  options.budget_bytes = 28;
  Result<DtrReferenceResult> r = run_dtr_reference(step(), options);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->feasible());
  EXPECT_EQ(r->remat_compute_ns, 0);
  EXPECT_EQ(r->evictions, 0u);
  EXPECT_EQ(r->peak_bytes, 28u);
}

TEST(DtrReference, OutOfMemoryWhenOnlyLockedTensorsRemain) {
  // Budget 16: op 1 needs b (8 B) beside x and a (12 B); a is its input, x a constant.
  DtrReferenceOptions options;
  options.budget_bytes = 16;
  Result<DtrReferenceResult> r = run_dtr_reference(step(), options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, DtrOutcome::kOutOfMemory);
  EXPECT_NE(r->message.find("op 1 \"f1\""), std::string::npos) << r->message;
}

TEST(DtrReference, ThrashedPastTheRematLimit) {
  // The 100 ns replay of the first test is 0.48x the base compute: a limit of 0.4 stops it.
  DtrReferenceOptions options;
  options.budget_bytes = 24;
  options.max_remat_overhead = 0.4;
  Result<DtrReferenceResult> r = run_dtr_reference(step(), options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, DtrOutcome::kThrashed);
  options.max_remat_overhead = 0.5;
  r = run_dtr_reference(step(), options);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->feasible());
}

TEST(DtrReference, EvictsTheSmallestComputePerByteAndStaleness) {
  // x 0 (4 B); p 1 = f(x) 16 B in 10 ns; q 2 = g(x) 16 B in 1000 ns; a long op w 3 (10 us, 1 B)
  // ages both; r 4 = h(x) 16 B needs room under 40 B; s 5 = k(p) reads p again. At op 3: clock
  // 11010, p last used at 10, q at 1010: h(p) = 10 / (16 x 11000) < h(q) = 1000 / (16 x 10000),
  // so p goes. Op 4 rebuilds p (10 ns), for which q (r was just made: staleness 0) goes; nothing
  // reads q again.
  const Profile p = make_profile({4, 16, 16, 1, 16, 1}, {
                                                            {"f", {0}, {1}, 10, {}},
                                                            {"g", {0}, {2}, 1000, {}},
                                                            {"w", {0}, {3}, 10000, {3}},
                                                            {"h", {0}, {4}, 1, {}},
                                                            {"k", {1}, {5}, 1, {1, 2, 4}},
                                                        });
  DtrReferenceOptions options;
  options.budget_bytes = 40;
  Result<DtrReferenceResult> r = run_dtr_reference(p, options);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->feasible()) << r->message;
  ASSERT_GE(r->events.size(), 1u);
  EXPECT_EQ(r->events[0].tensor, 1u);
  EXPECT_EQ(r->events[0].evicted_after, std::optional<std::size_t>(2));
  EXPECT_EQ(r->events[0].rematerialized_before, std::optional<std::size_t>(4));
  ASSERT_EQ(r->events.size(), 2u);
  EXPECT_EQ(r->events[1].tensor, 2u);
  EXPECT_EQ(r->events[1].rematerialized_before, std::nullopt);
  EXPECT_EQ(r->remat_compute_ns, 10);
}

TEST(DtrReference, EvictedNeighboursRaiseTheCostOfTheirChain) {
  // A chain x -> a1 -> a2 -> a3 (8 B, 100 ns each) beside an independent z = g(x) (8 B, 100 ns);
  // a long op w (100 us) ages them all; then n1 and n2 (8 B, 1 ns each) each need room under
  // 37 B. Before n1 (clock 100400), the stalest goes: a1 (last used at 100). Before n2 (clock
  // 100401): h(a2) = (100 + a1's 100) / (8 x 100201), h(a3) = 100 / (8 x 100101),
  // h(z) = 100 / (8 x 100001): a3 goes. Without the evicted neighbour's compute, a2 (staler
  // than a3) would have gone.
  const Profile p = make_profile({4, 8, 8, 8, 8, 1, 8, 8}, {
                                                               {"f1", {0}, {1}, 100, {}},
                                                               {"f2", {1}, {2}, 100, {}},
                                                               {"f3", {2}, {3}, 100, {}},
                                                               {"g", {0}, {4}, 100, {}},
                                                               {"w", {0}, {5}, 100000, {5}},
                                                               {"n1", {0}, {6}, 1, {}},
                                                               {"n2", {0}, {7}, 1, {}},
                                                           });
  DtrReferenceOptions options;
  options.budget_bytes = 37;
  options.rematerialize_outputs = false;
  Result<DtrReferenceResult> r = run_dtr_reference(p, options);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->feasible()) << r->message;
  ASSERT_EQ(r->events.size(), 2u);
  EXPECT_EQ(r->events[0].tensor, 1u);
  EXPECT_EQ(r->events[0].evicted_after, std::optional<std::size_t>(4));
  EXPECT_EQ(r->events[1].tensor, 3u);
  EXPECT_EQ(r->events[1].evicted_after, std::optional<std::size_t>(5));
  EXPECT_EQ(r->remat_compute_ns, 0);
}

TEST(DtrReference, RefusesABudgetOfZero) {
  DtrReferenceOptions options;
  Result<DtrReferenceResult> r = run_dtr_reference(step(), options);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ebb
