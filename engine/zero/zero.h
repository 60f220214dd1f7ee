// ZeroOptimizer: ZeRO data parallelism, stages 0 to 3, over a Communicator
// (kernels/comm/communicator.h), around the flat model state of engine/optim/.
//
// Every rank runs the same loop on its own samples and keeps a full ModelState (the working
// parameters every forward and backward reads, and the gradient buffers backward accumulates
// into). Each slice of the layout is split into one range per rank (engine/optim/flat_layout.h
// pads every slice to a multiple of ranks x alignment): rank r owns range r of every slice.
//  - AdamW (elementwise): the N equal shards of the slice.
//  - Adafactor and SM3, whose statistics need whole rows and columns: ranges on parameter
//    boundaries (each rank owns whole parameters, contiguous, balanced by elements, the parts
//    rotated by slice so that slices too small to split fall to different ranks; a rank may own
//    none of a slice). Their chunks are padded to the largest range for the collectives.
//
// What each stage keeps and does, per rank (Psi parameters; mixed precision: 16-bit parameters
// and gradients, fp32 master weights and AdamW's two moments):
//   stage 0: everything (16 Psi); the reduced gradient shards are all-gathered into every rank's
//            full gradients and every rank steps the whole model.
//   stage 1: the master weights and optimizer state of its range (12 Psi / N); it steps that
//            range and all-gathers the updated working parameters.
//   stage 2: as 1, and gradients: the full gradient buffer of a slice lives from its first
//            accumulation in a step to its reduction (Engine::discard), and the rank keeps its
//            range's reduced gradients only (2 Psi / N).
//   stage 3: as 2, and parameters: the rank keeps the working parameters of its range (its
//            shard's own buffers, 2 Psi / N); the full parameters of each slice are a gathered
//            tensor of the engine (Engine::make_gathered), whose bytes come and go: discarded
//            after their last use of a window and brought back by an all-gather of every rank's
//            range on the transfer engine's communication lane (a second communicator,
//            ZeroOptions::gather_comm), ahead of their use as the gather schedule says or by the
//            op that needs them. Per rank: 16 Psi / N plus the gathered working set.
//
// Stage 3's schedule. Until the engine's warm-up profile exists each block's slices are gathered
// by their first use, and released when an op reads another block (Engine::set_op_hook sees
// what each op reads), so the warm-up holds one block at a time. At the first op after it, every
// rank builds the same GatherProblem (engine/zero/gather_plan.h) from the profile, rank 0's op
// times and the communicator's link model, and the policy (ZeroOptions::gather_policy) turns it
// into a schedule: which op each gather is started before, and after which op its window ends, so
// that a layer's parameters can stay gathered from forward into backward where the budget has room.
// The op hook (Engine::set_op_hook) starts and ends them. Correctness never depends on the
// schedule: an op that finds its parameters discarded gathers them itself, at the same point on
// every rank (what is discarded follows the program, never the eviction, which only swaps a
// gathered tensor to host and back). After the step's update every gathered slice is discarded.
//
// The reduction (every stage the same): when all the slices of a bucket (consecutive slices, up
// to ZeroOptions::bucket_bytes of gradients; a larger slice alone) have their gradients final in
// backward (ModelState's gradient listener, from the second step on; at the step for any left),
// one op per bucket runs, for each of its slices, an all_to_all that sends chunk j of the slice's
// gradients to rank j, then folds the N chunks this rank received in rank order in fp32, divides
// by N and rounds once to the gradient dtype (nn::fold_chunks). It sends what a reduce-scatter
// sends, (N-1)/N of the slice, and gives the same bits whatever algorithm the library picks, in
// every stage, under every memory policy and budget. With gradient accumulation each rank
// accumulates its K micro-batches locally first and the step reduces once.
// The global gradient norm and fp16's overflow count come from each rank's reduced range
// (gradient_stats on the shard), gathered and summed in rank order: the same on every rank and
// in every stage.
//
// Collectives run inside engine ops on the compute stream (the engine has one stream of ops),
// so they are ordered with the ops that produce and read their buffers, and are never replayed.
//
// Placement: with stage >= 1 the rank's range of master weights and optimizer state lives where
// ZeroOptions::placement says (device, host or NVMe, per slice), through a second ModelState (the
// shard, names prefixed "zero.") and an ordinary Optimizer over it: the same CPU step, NVMe
// stream and delayed update as on one rank. On the device its working parameters (and, in stages
// 0 and 1, its gradients) are views of the full state's own range: no second copy. Off the device
// its working parameters are a buffer of their own (the host step replaces it), the all-gather's
// source. With stage 0 the placement is the full state's (ModelStateOptions::placement).
//
// Ownership: references the Engine, the full ModelState and the Communicator, which must outlive
// it. Thread safety: not thread-safe; the thread that drives the engine calls it. Every rank must
// call the same methods in the same order (they run collectives).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/optim/model_state.h"
#include "engine/optim/optimizer.h"
#include "engine/zero/gather_plan.h"
#include "kernels/comm/communicator.h"

namespace ebb {

enum class GatherPolicy : std::uint8_t { kPlan, kJustInTime, kDeepSpeed, kAtUse };

// "plan", "jit", "deepspeed", "at-use".
std::string_view gather_policy_name(GatherPolicy policy);
std::optional<GatherPolicy> gather_policy_from_name(std::string_view name);

struct ZeroOptions {
  int stage = 0;  // 0, 1, 2 or 3
  // Gradients reduced by one op: consecutive slices up to this many bytes (a larger slice alone).
  // DeepSpeed's reduce_bucket_size default is 5e8 elements; this default is smaller because ebb's
  // slices (a transformer block each) already are the unit the reduction waits for.
  std::size_t bucket_bytes = std::size_t{32} << 20;
  // Stage >= 1: where this rank's range of each slice keeps its master weights and optimizer
  // state, in the full state's slice order; empty: on the device.
  std::vector<StatePlacement> placement{};
  OffloadOptions offload{};
  // Stage 3: a second communicator of the same ranks (another make_communicator()), for the
  // parameter gathers on the communication lane; the first one serves the reductions on the
  // compute stream. Two, because the two streams run collectives at once and each
  // communicator's collectives must come in one order on every rank. Its link model
  // (Communicator::set_link_model) is the gathers' modelled cost.
  Communicator* gather_comm = nullptr;
  // Stage 3: how the gathers are scheduled once the engine's profile exists (before it: each
  // block gathered by its first use and released when an op reads another).
  //   kPlan: the planner's schedule (engine/zero/gather_plan.h) under the engine's budget;
  //   kJustInTime, kDeepSpeed: the two fixed baselines; kAtUse: never a schedule (each block
  //   gathered by its first use and released when an op needs another, as in the warm-up).
  GatherPolicy gather_policy = GatherPolicy::kPlan;
  // A gather's cost when the gather communicator has no link model (bytes sent / this).
  double assumed_gather_bytes_per_second = 10e9;
  // What moving activations out and back costs the plan when it reserves room for prefetched
  // gathers: about a PCIe 4.0 x16 link's measured rate (the engine's swaps, or recomputes of
  // similar cost).
  double assumed_swap_bytes_per_second = 25e9;
};

// The ModelStateOptions a full state needs for ZeRO over `ranks` at `stage`: the layout split
// for `ranks`, and with stage >= 1 no master weights (the ranks keep them, a range each).
// kInvalidArgument for a stage outside 0-2 or ranks < 1.
Result<ModelStateOptions> zero_model_state_options(ModelStateOptions base, int ranks, int stage);

// Payload bytes sent per rank and step, by kind, and where the time went.
struct ZeroStats {
  std::int64_t reduce_bytes = 0;   // gradients, all_to_all
  std::int64_t gather_bytes = 0;   // working parameters (stages 1, 2) or gradients (stage 0)
  std::int64_t control_bytes = 0;  // gradient statistics, flags
  std::int64_t buckets_reduced = 0;
  std::int64_t early_buckets = 0;      // of which started during backward
  std::int64_t scheduled_gathers = 0;  // stage 3: gathers the schedule started ahead of use
};

class ZeroOptimizer {
 public:
  // Creates the shard state and the optimizer outside any iteration. kInvalidArgument for a
  // stage outside 0-2, a full state not laid out for comm.size() ranks, a stage >= 1 whose full
  // state keeps master weights (use zero_model_state_options), a placement of the wrong length,
  // or a placement off the device with stage 0 given here (put it in the full state's options).
  static Result<std::unique_ptr<ZeroOptimizer>> create(Engine& engine, ModelState& full,
                                                       const OptimizerConfig& config,
                                                       Communicator& comm,
                                                       const ZeroOptions& options);
  ~ZeroOptimizer();
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  // The global statistics of the averaged gradients, times `inv_scale`: the same on every rank.
  // Reduces every bucket not reduced yet first. Inside an iteration, after backward.
  Result<GradientStats> gradient_stats(float inv_scale);
  // One step (Optimizer::step's arguments): reduces what is left, steps this rank's range (stage
  // 0: everything), and all-gathers the working parameters (stages 1, 2). Inside an iteration.
  Status step(int step, float lr, float grad_scale);
  Status flush() { return inner_->flush(); }

  int stage() const { return options_.stage; }
  const ZeroOptions& options() const { return options_; }
  Communicator& communicator() { return comm_; }
  // The optimizer that steps this rank's part: over the shard (stages 1, 2) or the full state.
  Optimizer& optimizer() { return *inner_; }
  // This rank's part of the model state (its ranges; views of the full state where it can).
  const ModelState& shard() const { return *shard_; }
  // Element range [first, last) of full slice k that this rank owns.
  std::pair<std::int64_t, std::int64_t> owned(std::size_t slice) const;
  // Every rank's element range [first, last) of full slice k, in rank order (owned() is this
  // rank's), and whether the ranges are equal shards (AdamW) or on parameter boundaries.
  const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges(std::size_t slice) const {
    return ranges_[slice];
  }
  bool equal_shards() const { return even_; }
  // The shard's slice that holds this rank's range of full slice k; -1 when it owns none.
  std::int64_t shard_slice(std::size_t slice) const { return shard_of_[slice]; }
  // Stage 3's gathers are counted by the gather communicator (its all-gathers, at use or ahead).
  ZeroStats stats() const;
  // Stage 3: the schedule's simulated step (engine/planner/gather_plan.h), once planned.
  const std::optional<GatherTimeline>& predicted_gathers() const { return predicted_; }

  // This rank's checkpoint: its part's blobs (Optimizer::blobs of optimizer()).
  std::vector<Optimizer::Blob> blobs() const { return inner_->blobs(); }
  Status read_blob(std::size_t i, std::span<std::byte> out) { return inner_->read_blob(i, out); }
  // Writes a blob, then (for a master, stages 1 and 2) the full state's working parameters of
  // every rank's range, which takes every rank: call write_blob for the same blobs on every rank,
  // then sync_parameters() once. Outside an iteration.
  Status write_blob(std::size_t i, std::span<const std::byte> in) {
    return inner_->write_blob(i, in);
  }
  // After write_blob: all-gathers the working parameters (stages 1, 2; nothing to do at 0).
  // Outside an iteration; runs one iteration of its own.
  Status sync_parameters();

 private:
  ZeroOptimizer(Engine& engine, ModelState& full, Communicator& comm, const ZeroOptions& options)
      : engine_(engine), full_(full), comm_(comm), options_(options) {}

  struct Bucket {
    std::vector<std::size_t> slices;  // full slices, in order
    std::int64_t serial = -1;         // the step_serial() it was reduced in; -1: not yet
  };

  Status on_gradients_final(std::size_t slice);
  Status reduce_bucket(std::size_t bucket, bool early);
  Status reduce_remaining();
  // One op: every rank's range of slice k of `full_buffer` (the working parameters, or in stage
  // 0 the reduced gradients), from each rank's `own` (its range; null when it owns none).
  Status gather_slice(std::size_t slice, const Tensor& full_buffer, const Tensor* own, DType t);
  Status gather_all(bool parameters);
  // The full state's master reader (stages 1, 2): every rank's range of slice k, gathered.
  Status read_master(std::size_t slice, std::span<float> out);
  // Stage 3: makes every full slice's parameters a gathered tensor (Engine::make_gathered) and
  // discards them; installs the op hook.
  Status make_gathered();
  // Stage 3: discards every full slice's parameters (after the step, after a load).
  Status release_gathered();
  // Stage 3's op hook: the schedule's releases and gathers at op `op` of the step.
  Status on_op(std::size_t op, std::span<const Tensor> reads);
  // Stage 3: once the engine's profile exists, the gather schedule from it (every rank the same).
  Status plan_gathers_from_profile();
  // The scheduling problem of the profiled step (engine/zero/gather_plan.h): a unit per block.
  Result<GatherProblem> gather_problem(const Profile& profile) const;
  // The policy's schedule, and the problem it was planned on (the other bytes capped as the
  // budget and the chosen prefetch reserve leave them).
  Result<GatherSchedule> schedule_gathers(const GatherProblem& problem,
                                          GatherProblem& planned_for) const;

  Engine& engine_;
  ModelState& full_;
  Communicator& comm_;
  ZeroOptions options_;
  bool even_ = true;  // equal shards (AdamW) or parameter boundaries
  using Range = std::pair<std::int64_t, std::int64_t>;  // [first, last) elements of a slice
  std::vector<std::vector<Range>> ranges_;              // per full slice: each rank's range
  std::vector<std::int64_t> chunk_;                     // per full slice: elements per rank's chunk
  std::vector<std::int64_t> shard_of_;                  // per full slice: shard slice, or -1
  std::vector<std::size_t> bucket_of_;                  // per full slice
  std::vector<std::int64_t> final_serial_;              // per full slice: step_serial() when final
  std::int64_t shard_serial_ = -1;  // the full state's step_serial() the shard's step began in
  std::vector<Bucket> buckets_;
  std::unique_ptr<ModelState> shard_;
  std::unique_ptr<Optimizer> inner_;
  Tensor scratch_;  // the collectives' buffer: send chunks and received chunks
  ZeroStats stats_;
  // Stage 3.
  Tensor gather_scratch_;                        // the gathers' buffer
  std::vector<std::int64_t> unit_gather_bytes_;  // per full slice: bytes one gather sends
  std::vector<std::vector<std::size_t>> units_;  // the schedule's units: full slices of a block
  std::unordered_map<std::uint64_t, std::size_t> unit_of_tensor_;  // full params and views
  std::vector<std::uint8_t> held_;  // without a schedule: the units gathered by their use
  std::vector<std::vector<std::size_t>> issues_;    // per op of the step: units gathered before it
  std::vector<std::vector<std::size_t>> releases_;  // per op: units discarded before it
  bool planned_ = false;
  std::optional<GatherTimeline> predicted_;  // the schedule's simulated step
};

}  // namespace ebb
