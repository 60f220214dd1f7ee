// ZeroOptimizer's stage 3 (engine/zero/zero.h): the full parameters as gathered tensors, the
// gather schedule made from the profile, and the op hook that follows it.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "engine/nn_ops.h"
#include "engine/zero/gather_plan.h"
#include "engine/zero/zero.h"
#include "engine/zero/zero_collectives.h"

namespace ebb {

using zero_internal::comm_dtype;
using zero_internal::gather_chunks;

std::string_view gather_policy_name(GatherPolicy policy) {
  switch (policy) {
    case GatherPolicy::kPlan:
      return "plan";
    case GatherPolicy::kJustInTime:
      return "jit";
    case GatherPolicy::kDeepSpeed:
      return "deepspeed";
    case GatherPolicy::kAtUse:
      return "at-use";
  }
  return "?";
}

std::optional<GatherPolicy> gather_policy_from_name(std::string_view name) {
  for (GatherPolicy p : {GatherPolicy::kPlan, GatherPolicy::kJustInTime, GatherPolicy::kDeepSpeed,
                         GatherPolicy::kAtUse}) {
    if (gather_policy_name(p) == name) return p;
  }
  return std::nullopt;
}

Status ZeroOptimizer::make_gathered() {
  const int n = comm_.size();
  const int rank = comm_.rank();
  const DType pt = full_.param_dtype();
  const nn::FloatType ft = *ops::float_type_of(pt);
  const CommDType ct = comm_dtype(pt);
  const std::size_t eb = dtype_bytes(pt);
  const std::size_t slices = full_.slices().size();
  // The gathers' scratch (the communication lane runs one at a time): uneven ranges are packed
  // to a chunk, sent from it, and received after it.
  std::int64_t elements = 1;
  for (std::size_t k = 0; k < slices; ++k) {
    elements = std::max(elements, (even_ ? 1 : n + 1) * chunk_[k]);
  }
  EBB_ASSIGN_OR_RETURN(gather_scratch_,
                       engine_.parameter({"zero.gather_scratch",
                                          {elements * static_cast<std::int64_t>(eb)},
                                          DType::kU8,
                                          TensorKind::kWorkspace},
                                         nullptr));
  const LinkModel link = options_.gather_comm->link_model();
  for (std::size_t k = 0; k < slices; ++k) {
    const ModelState::Slice& ms = full_.slices()[k];
    std::vector<Tensor> sources;
    const bool has_own = shard_of_[k] >= 0;
    if (has_own) sources.push_back(shard_->slices()[static_cast<std::size_t>(shard_of_[k])].params);
    sources.push_back(gather_scratch_);
    Communicator* comm = options_.gather_comm;
    const std::vector<Range> ranges = ranges_[k];
    const std::int64_t chunk = chunk_[k];
    const bool even = even_;
    Engine::GatherKernelFactory make = [=](void* dst, const std::vector<void*>& src) -> Kernel {
      const void* own = has_own ? src.front() : nullptr;
      void* scratch = src.back();
      return [=](const LaunchContext& ctx) {
        gather_chunks(*comm, ctx, ranges, chunk, rank, ft, ct, eb, even, own, dst, scratch,
                      /*copy_own=*/false);
      };
    };
    const std::int64_t sent =
        static_cast<std::int64_t>(n - 1) * chunk * static_cast<std::int64_t>(eb);
    unit_gather_bytes_.push_back(sent);
    EBB_RETURN_IF_ERROR(engine_.make_gathered(ms.params, sources, std::move(make),
                                              link.transfer_time(static_cast<double>(sent))));
    EBB_RETURN_IF_ERROR(engine_.discard(ms.params));
  }
  // The schedule's units: the slices of one block (one slice key: its matrices' slice and its
  // biases' and gains' slice), gathered and released together, as a layer is.
  std::map<int, std::size_t> unit_of_key;
  for (std::size_t k = 0; k < slices; ++k) {
    const ModelState::Slice& ms = full_.slices()[k];
    const FlatSlice& fs = full_.layout().groups[ms.group].slices[ms.index];
    const int key = full_.params()[fs.params.front()].slice_key;
    auto [it, added] = unit_of_key.emplace(key, units_.size());
    if (added) units_.emplace_back();
    units_[it->second].push_back(k);
    unit_of_tensor_[ms.params.id()] = it->second;
    for (std::size_t p : fs.params) unit_of_tensor_[full_.param(p).id()] = it->second;
  }
  held_.assign(units_.size(), 0);
  engine_.set_op_hook(
      [this](std::size_t op, std::span<const Tensor> reads) { return on_op(op, reads); });
  return ok_status();
}

Status ZeroOptimizer::release_gathered() {
  for (const ModelState::Slice& ms : full_.slices()) {
    EBB_RETURN_IF_ERROR(engine_.discard(ms.params));
  }
  std::fill(held_.begin(), held_.end(), 0);
  return ok_status();
}

Status ZeroOptimizer::on_op(std::size_t op, std::span<const Tensor> reads) {
  // The schedule is made at the first op of the first step after the warm-up, and followed from
  // that op on.
  if (op == 0 && !planned_) EBB_RETURN_IF_ERROR(plan_gathers_from_profile());
  if (issues_.empty()) {
    // No schedule (the warm-up, or kAtUse): an op that reads blocks releases every other block
    // gathered so far; its own are gathered by its use. One block at a time, as the program
    // (not the eviction) decides, so every rank gathers the same.
    std::vector<std::uint8_t> wanted(units_.size(), 0);
    bool any = false;
    for (const Tensor& t : reads) {
      auto it = unit_of_tensor_.find(t.id());
      if (it == unit_of_tensor_.end()) continue;
      wanted[it->second] = 1;
      any = true;
    }
    if (!any) return ok_status();
    for (std::size_t u = 0; u < units_.size(); ++u) {
      if (held_[u] != 0 && wanted[u] == 0) {
        for (std::size_t k : units_[u]) {
          EBB_RETURN_IF_ERROR(engine_.discard(full_.slices()[k].params));
        }
      }
      held_[u] = wanted[u];
    }
    return ok_status();
  }
  if (op < releases_.size()) {
    for (std::size_t u : releases_[op]) {
      for (std::size_t k : units_[u])
        EBB_RETURN_IF_ERROR(engine_.discard(full_.slices()[k].params));
    }
  }
  if (op < issues_.size()) {
    for (std::size_t u : issues_[op]) {
      for (std::size_t k : units_[u]) {
        EBB_RETURN_IF_ERROR(engine_.gather(full_.slices()[k].params));
        ++stats_.scheduled_gathers;
      }
    }
  }
  return ok_status();
}

Result<GatherProblem> ZeroOptimizer::gather_problem(const Profile& profile) const {
  GatherProblem problem;                         // budget_bytes: the caller's
  std::map<std::string, std::uint32_t> unit_of;  // by the full parameters' tensor names
  const LinkModel link = options_.gather_comm->link_model();
  const double bps =
      link.bytes_per_second > 0 ? link.bytes_per_second : options_.assumed_gather_bytes_per_second;
  for (std::size_t u = 0; u < units_.size(); ++u) {
    GatherUnit unit;
    for (std::size_t k : units_[u]) {
      const Tensor& t = full_.slices()[k].params;
      unit.name += (unit.name.empty() ? "" : "+") + t.name();
      unit.bytes += static_cast<std::int64_t>(t.bytes());
      unit.elements += full_.slices()[k].numel;
      // One gather per slice, one after another on the communication lane.
      unit.gather_seconds += static_cast<double>(link.latency.count()) * 1e-9 +
                             static_cast<double>(unit_gather_bytes_[k]) / bps;
      unit_of[t.name()] = static_cast<std::uint32_t>(u);
    }
    problem.units.push_back(std::move(unit));
  }
  std::int64_t unit_bytes_in_profile = 0;
  std::vector<std::int64_t> unit_of_tensor(profile.tensors.size(), -1);
  for (const ProfiledTensor& t : profile.tensors) {
    auto it = unit_of.find(t.name);
    if (it == unit_of.end()) continue;
    unit_of_tensor[t.id] = it->second;
    if (!t.producer.has_value()) unit_bytes_in_profile += static_cast<std::int64_t>(t.bytes);
  }
  for (const ProfiledOp& op : profile.ops) {
    GatherStepOp g;
    g.seconds = static_cast<double>(op.duration_ns) * 1e-9;
    for (std::size_t in : op.inputs) {
      const std::int64_t u = unit_of_tensor[in];
      if (u < 0) continue;
      const auto unit = static_cast<std::uint32_t>(u);
      if (std::find(g.reads.begin(), g.reads.end(), unit) == g.reads.end()) g.reads.push_back(unit);
    }
    // What the rest holds: the profile counts every carried tensor live, the gathered ones too.
    const std::int64_t live = op.index < profile.memory.size()
                                  ? static_cast<std::int64_t>(profile.memory[op.index].live_bytes)
                                  : 0;
    g.other_bytes = std::max<std::int64_t>(0, live - unit_bytes_in_profile);
    problem.ops.push_back(std::move(g));
  }
  return problem;
}

namespace {

// `problem` with every op's other bytes capped at the budget less its own units' bytes and
// `reserve`: where the rest does not fit, eviction (swaps and recomputes, as the engine's policy
// does) makes room for the gathers, and for `reserve` more to prefetch into. Also returns the
// most bytes the cap takes from one op beyond the cap without a reserve: what the reserve costs
// in activations moved.
std::pair<GatherProblem, std::int64_t> with_reserve(const GatherProblem& problem,
                                                    std::int64_t reserve) {
  GatherProblem capped = problem;
  std::int64_t displaced = 0;
  for (GatherStepOp& g : capped.ops) {
    std::int64_t needed = 0;
    for (std::uint32_t u : g.reads) needed += problem.units[u].bytes;
    const std::int64_t room = std::max<std::int64_t>(0, problem.budget_bytes - needed);
    const std::int64_t without = std::min(g.other_bytes, room);
    g.other_bytes = std::min(g.other_bytes, std::max<std::int64_t>(0, room - reserve));
    displaced = std::max(displaced, without - g.other_bytes);
  }
  return {std::move(capped), displaced};
}

}  // namespace

Result<GatherSchedule> ZeroOptimizer::schedule_gathers(const GatherProblem& problem,
                                                       GatherProblem& planned_for) const {
  if (options_.gather_policy != GatherPolicy::kPlan) {
    planned_for = with_reserve(problem, 0).first;
    return options_.gather_policy == GatherPolicy::kDeepSpeed ? deepspeed_schedule(planned_for)
                                                              : just_in_time_schedule(planned_for);
  }
  // Gathers compete with activations for the budget: a reserve of R bytes for prefetching
  // costs moving up to R bytes of activations out and back (at assumed_swap_bytes_per_second)
  // and buys whatever gather time the schedule then hides. Reserves of 0, 1, 2, 4, ... times
  // the largest unit, to the whole model; the one of least predicted step plus move time wins.
  std::int64_t largest = 1;
  std::int64_t all = 0;
  for (const GatherUnit& u : problem.units) {
    largest = std::max(largest, u.bytes);
    all += u.bytes;
  }
  std::optional<GatherSchedule> best;
  double best_cost = 0;
  for (std::int64_t reserve = 0;; reserve = reserve == 0 ? largest : reserve * 2) {
    auto [capped, displaced] = with_reserve(problem, reserve);
    Result<GatherSchedule> schedule = plan_gathers(capped);
    if (schedule.ok()) {
      Result<GatherTimeline> t = simulate_gathers(capped, *schedule);
      if (t.ok()) {
        const double cost = t->step_seconds + 2.0 * static_cast<double>(displaced) /
                                                  options_.assumed_swap_bytes_per_second;
        if (!best.has_value() || cost < best_cost) {
          best = std::move(*schedule);
          best_cost = cost;
          planned_for = std::move(capped);
        }
      }
    }
    if (reserve >= all) break;
  }
  if (!best.has_value()) {
    // No schedule fits even gathering at each use: the engine's eviction makes what room it
    // can, as it does without a schedule.
    planned_for = with_reserve(problem, 0).first;
    return just_in_time_schedule(planned_for);
  }
  return std::move(*best);
}

Status ZeroOptimizer::plan_gathers_from_profile() {
  if (planned_ || options_.gather_policy == GatherPolicy::kAtUse) return ok_status();
  Result<Profile> profile = engine_.profile();
  // Every rank's warm-up ends at the same step (the same program); the ranks agree anyway, and
  // on the op count, before any plans.
  const std::int64_t mine = profile.ok() ? static_cast<std::int64_t>(profile->ops.size()) : -1;
  std::vector<std::int64_t> counts(static_cast<std::size_t>(comm_.size()));
  EBB_RETURN_IF_ERROR(comm_.host_all_gather(&mine, counts.data(), sizeof mine));
  for (std::int64_t c : counts) {
    if (c < 0) return ok_status();  // someone's warm-up is not over: the next step
    if (c != counts[0]) {
      return failed_precondition("ZeRO stage 3: the ranks profiled steps of different lengths (" +
                                 std::to_string(counts[0]) + " and " + std::to_string(c) +
                                 " ops): every rank must run the same ops");
    }
  }
  planned_ = true;
  EBB_ASSIGN_OR_RETURN(GatherProblem problem, gather_problem(*profile));
  problem.budget_bytes = static_cast<std::int64_t>(engine_.allocator().budget_bytes());
  // Op times are measured per rank; the schedule must be one: rank 0's times for everyone.
  std::vector<double> seconds(problem.ops.size());
  for (std::size_t i = 0; i < seconds.size(); ++i) seconds[i] = problem.ops[i].seconds;
  std::vector<double> all(seconds.size() * static_cast<std::size_t>(comm_.size()));
  EBB_RETURN_IF_ERROR(
      comm_.host_all_gather(seconds.data(), all.data(), seconds.size() * sizeof(double)));
  for (std::size_t i = 0; i < seconds.size(); ++i) problem.ops[i].seconds = all[i];
  GatherProblem planned_for;
  EBB_ASSIGN_OR_RETURN(GatherSchedule schedule, schedule_gathers(problem, planned_for));
  Result<GatherTimeline> predicted = simulate_gathers(planned_for, schedule);
  if (predicted.ok()) predicted_ = *predicted;
  issues_.assign(problem.ops.size() + 1, {});
  releases_.assign(problem.ops.size() + 1, {});
  // Persistent units (DeepSpeed's small parameters) are gathered before the step's first op and
  // held to its end (the update discards every gathered slice).
  for (std::uint32_t u : schedule.persistent) issues_[0].push_back(u);
  for (const GatherAction& a : schedule.gathers) {
    issues_[a.issue_before].push_back(a.unit);
    releases_[std::min<std::size_t>(a.release_after + 1, problem.ops.size())].push_back(a.unit);
  }
  return ok_status();
}

}  // namespace ebb
