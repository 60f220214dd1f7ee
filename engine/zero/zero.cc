#include "engine/zero/zero.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/nn_ops.h"
#include "engine/zero/zero_collectives.h"
#include "kernels/nn.h"

namespace ebb {

using zero_internal::at;
using zero_internal::check;
using zero_internal::comm_dtype;
using zero_internal::gather_chunks;

Result<ModelStateOptions> zero_model_state_options(ModelStateOptions base, int ranks, int stage) {
  if (stage < 0 || stage > 3) {
    return invalid_argument("--zero " + std::to_string(stage) + ": the stage must be 0, 1, 2 or 3");
  }
  if (ranks < 1) return invalid_argument("ZeRO over " + std::to_string(ranks) + " ranks");
  if (stage >= 1 && !base.placement.empty()) {
    return invalid_argument(
        "ZeRO stage " + std::to_string(stage) +
        ": each rank places its own range; pass the placement in ZeroOptions::placement");
  }
  base.layout.ranks = ranks;
  base.external_master = stage >= 1;
  base.discarded_grads = stage >= 2;
  base.discarded_params = stage == 3;
  return base;
}

Result<std::unique_ptr<ZeroOptimizer>> ZeroOptimizer::create(Engine& engine, ModelState& full,
                                                             const OptimizerConfig& config,
                                                             Communicator& comm,
                                                             const ZeroOptions& options) {
  if (engine.in_iteration()) {
    return failed_precondition("ZeroOptimizer::create inside an iteration");
  }
  if (options.stage < 0 || options.stage > 3) {
    return invalid_argument("--zero " + std::to_string(options.stage) +
                            ": the stage must be 0, 1, 2 or 3");
  }
  if (options.stage == 3 && options.gather_comm == nullptr) {
    return invalid_argument(
        "ZeRO stage 3: no gather communicator (ZeroOptions::gather_comm: a second communicator "
        "of the same ranks, for the collectives of the communication lane)");
  }
  if (options.gather_comm != nullptr &&
      (options.gather_comm == &comm || options.gather_comm->size() != comm.size() ||
       options.gather_comm->rank() != comm.rank())) {
    return invalid_argument(
        "ZeRO: the gather communicator must be a second communicator of the same ranks");
  }
  const int n = comm.size();
  const int rank = comm.rank();
  if (full.layout().options.ranks != n) {
    return invalid_argument("ZeRO: the model state is laid out for " +
                            std::to_string(full.layout().options.ranks) + " ranks, the job has " +
                            std::to_string(n) + " (zero_model_state_options)");
  }
  if (options.stage >= 1 && !full.options().external_master) {
    return invalid_argument("ZeRO stage " + std::to_string(options.stage) +
                            ": the full model state keeps master weights; make it with "
                            "zero_model_state_options");
  }
  if (options.stage == 0 && !options.placement.empty()) {
    return invalid_argument(
        "ZeRO stage 0: every rank keeps the whole state; place it in the model state's options");
  }
  const std::size_t slices = full.slices().size();
  if (!options.placement.empty() && options.placement.size() != slices) {
    return invalid_argument("ZeRO: " + std::to_string(options.placement.size()) +
                            " placements for " + std::to_string(slices) + " slices");
  }
  if (full.layout().parameter_numel() < n) {
    return invalid_argument("ZeRO over " + std::to_string(n) + " ranks: the model has only " +
                            std::to_string(full.layout().parameter_numel()) +
                            " parameter elements, fewer than the ranks");
  }
  std::unique_ptr<ZeroOptimizer> z(new ZeroOptimizer(engine, full, comm, options));
  z->even_ = config.kind == OptimizerKind::kAdamW;

  // Each slice's ranges, and this rank's shard: its declarations and initial master weights.
  const FlatLayout& layout = full.layout();
  std::vector<ParameterDecl> decls;
  std::vector<std::vector<float>> initial;
  ModelStateOptions shard_options;
  shard_options.precision = full.precision();
  shard_options.grad_dtype = full.grad_dtype();
  shard_options.layout.alignment_bytes = layout.options.alignment_bytes;
  shard_options.name_prefix = "zero.";
  shard_options.external_master = options.stage == 0;
  for (std::size_t k = 0; k < slices; ++k) {
    const ModelState::Slice& ms = full.slices()[k];
    const FlatGroup& group = layout.groups[ms.group];
    const FlatSlice& fs = group.slices[ms.index];
    const std::int64_t s = ms.numel;
    // Each rank's range [first, last) of the slice.
    std::vector<Range> ranges(static_cast<std::size_t>(n));
    if (z->even_) {
      for (int i = 0; i < n; ++i)
        ranges[static_cast<std::size_t>(i)] = {s / n * i, s / n * (i + 1)};
    } else {
      // Whole parameters: part i starts at the first parameter that starts at or after i/N of
      // the slice's parameter elements, and the parts end where the last parameter does (aligned,
      // as the shard lays its own out; the padding after it belongs to no one and stays zero).
      // Part i goes to rank (i + k) mod N, so that the slices too small to split (a bias, a
      // gain) fall to different ranks.
      const FlatEntry& last_param = layout.entries[fs.params.back()];
      const std::int64_t used = last_param.offset + last_param.numel - fs.begin;
      const std::int64_t align = layout.alignment_elements;
      std::vector<std::int64_t> cut(static_cast<std::size_t>(n) + 1,
                                    (used + align - 1) / align * align);
      cut[0] = 0;
      std::size_t next = 0;
      for (int i = 1; i < n; ++i) {
        const std::int64_t target = used * i / n;
        while (next < fs.params.size() &&
               layout.entries[fs.params[next]].offset - fs.begin < target) {
          ++next;
        }
        if (next < fs.params.size()) {
          cut[static_cast<std::size_t>(i)] = layout.entries[fs.params[next]].offset - fs.begin;
        }
      }
      for (int i = 0; i < n; ++i) {
        const auto owner = static_cast<std::size_t>((static_cast<std::size_t>(i) + k) %
                                                    static_cast<std::size_t>(n));
        ranges[owner] = {cut[static_cast<std::size_t>(i)], cut[static_cast<std::size_t>(i) + 1]};
      }
    }
    std::int64_t chunk = 0;
    for (const Range& r : ranges) chunk = std::max(chunk, r.second - r.first);
    const std::int64_t first = ranges[static_cast<std::size_t>(rank)].first;
    const std::int64_t last = ranges[static_cast<std::size_t>(rank)].second;
    z->ranges_.push_back(ranges);
    z->chunk_.push_back(chunk);
    // A valueless state (sim) gives its shard none: no host memory of the model's size.
    std::vector<float> values = full.valueless() ? std::vector<float>()
                                : options.stage >= 1
                                    ? full.take_initial_master(k)
                                    : std::vector<float>(static_cast<std::size_t>(s));
    if (first == last) {
      z->shard_of_.push_back(-1);
      continue;
    }
    if (z->even_) {
      decls.push_back({.name = full.slice_label(k),
                       .shape = {last - first},
                       .group = group.group,
                       .slice_key = static_cast<int>(k)});
      if (!values.empty()) initial.emplace_back(values.begin() + first, values.begin() + last);
    } else {
      for (std::size_t p : fs.params) {
        const FlatEntry& e = layout.entries[p];
        const std::int64_t at_slice = e.offset - fs.begin;
        if (at_slice < first || at_slice >= last) continue;
        ParameterDecl d = full.params()[p];
        d.slice_key = static_cast<int>(k);
        decls.push_back(std::move(d));
        if (!values.empty()) {
          initial.emplace_back(values.begin() + at_slice, values.begin() + at_slice + e.numel);
        }
      }
    }
    const StatePlacement place =
        options.placement.empty() ? StatePlacement::kDevice : options.placement[k];
    shard_options.placement.push_back(place);
    // Stage 3: the full parameters come and go (gathered); the shard keeps its own.
    shard_options.shared.push_back(
        {.params = place == StatePlacement::kDevice && options.stage <= 2 ? ms.params : Tensor{},
         .grads = options.stage <= 1 ? ms.grads : Tensor{},
         .first = first});
    z->shard_of_.push_back(static_cast<std::int64_t>(shard_options.shared.size()) - 1);
  }
  if (decls.empty()) {
    return invalid_argument("ZeRO: rank " + std::to_string(rank) + " of " + std::to_string(n) +
                            " owns no parameter; use fewer ranks");
  }
  EBB_ASSIGN_OR_RETURN(z->shard_,
                       ModelState::create(engine, std::move(decls), shard_options, initial));
  if (options.stage == 0) {
    for (std::size_t j = 0; j < z->shard_->slices().size(); ++j) {
      (void)z->shard_->take_initial_master(j);
    }
    EBB_ASSIGN_OR_RETURN(z->inner_, Optimizer::create(engine, full, config, options.offload));
  } else {
    EBB_ASSIGN_OR_RETURN(z->inner_, Optimizer::create(engine, *z->shard_, config, options.offload));
  }

  // Buckets of consecutive slices.
  std::size_t bucket_bytes = 0;
  const std::size_t grad_bytes = dtype_bytes(full.grad_dtype());
  for (std::size_t k = 0; k < slices; ++k) {
    const std::size_t bytes = static_cast<std::size_t>(full.slices()[k].numel) * grad_bytes;
    if (z->buckets_.empty() || bucket_bytes + bytes > options.bucket_bytes) {
      z->buckets_.emplace_back();
      bucket_bytes = 0;
    }
    z->buckets_.back().slices.push_back(k);
    z->bucket_of_.push_back(z->buckets_.size() - 1);
    bucket_bytes += bytes;
  }
  z->final_serial_.assign(slices, -1);

  // The collectives' buffer: received chunks (and, on parameter boundaries, the packed ones).
  const std::size_t widest =
      std::max(dtype_bytes(full.grad_dtype()), dtype_bytes(full.param_dtype()));
  std::int64_t elements = 1;
  for (std::size_t k = 0; k < slices; ++k) {
    elements = std::max(elements, (z->even_ ? 1 : 2) * n * z->chunk_[k]);
  }
  EBB_ASSIGN_OR_RETURN(z->scratch_,
                       engine.parameter({"zero.scratch",
                                         {elements * static_cast<std::int64_t>(widest)},
                                         DType::kU8,
                                         TensorKind::kWorkspace},
                                        nullptr));

  if (options.stage == 3) EBB_RETURN_IF_ERROR(z->make_gathered());

  ZeroOptimizer* self = z.get();
  full.set_gradient_listener([self](std::size_t slice) { return self->on_gradients_final(slice); });
  if (options.stage >= 1) {
    full.set_master_reader(
        [self](std::size_t slice, std::span<float> out) { return self->read_master(slice, out); });
  }
  return z;
}

ZeroOptimizer::~ZeroOptimizer() {
  if (options_.stage == 3) {
    // No collective here (a rank may be going down alone): the full parameters become ordinary
    // tensors, holding what they hold (nothing when discarded).
    engine_.set_op_hook(nullptr);
    for (const ModelState::Slice& ms : full_.slices()) {
      (void)engine_.make_gathered(ms.params, {}, nullptr);
    }
    (void)engine_.synchronize();
  }
  if (gather_scratch_.valid()) (void)engine_.release(gather_scratch_);
  full_.set_gradient_listener(nullptr);
  if (options_.stage >= 1) full_.set_master_reader(nullptr);
  inner_.reset();
  shard_.reset();
  if (scratch_.valid()) (void)engine_.release(scratch_);
}

ZeroStats ZeroOptimizer::stats() const {
  ZeroStats s = stats_;
  if (options_.stage == 3) {
    s.gather_bytes +=
        options_.gather_comm->stats().bytes_sent[static_cast<std::size_t>(CommOp::kAllGather)];
  }
  return s;
}

std::pair<std::int64_t, std::int64_t> ZeroOptimizer::owned(std::size_t slice) const {
  return ranges_[slice][static_cast<std::size_t>(comm_.rank())];
}

Status ZeroOptimizer::on_gradients_final(std::size_t slice) {
  const std::int64_t serial = full_.step_serial();
  Bucket& b = buckets_[bucket_of_[slice]];
  if (b.serial == serial) {
    return failed_precondition("ZeRO: the gradients of slice " + full_.slice_label(slice) +
                               " were accumulated again after their bucket was reduced; the "
                               "loop must accumulate the same gradients every step");
  }
  final_serial_[slice] = serial;
  for (std::size_t k : b.slices) {
    if (final_serial_[k] != serial) return ok_status();
  }
  return reduce_bucket(bucket_of_[slice], /*early=*/true);
}

Status ZeroOptimizer::reduce_bucket(std::size_t bucket, bool early) {
  Bucket& b = buckets_[bucket];
  const int n = comm_.size();
  const int rank = comm_.rank();
  const DType gt = full_.grad_dtype();
  const nn::FloatType ft = *ops::float_type_of(gt);
  const CommDType ct = comm_dtype(gt);
  const std::size_t eb = dtype_bytes(gt);
  std::vector<Tensor> inputs;
  std::vector<Tensor> targets{scratch_};
  struct Part {
    std::vector<Range> ranges;
    std::int64_t chunk = 0;
    int out = -1;  // target index of the shard's gradients; -1: this rank owns none
  };
  std::vector<Part> parts;
  std::int64_t sent = 0;  // this rank's payload: (N - 1) chunks per slice
  for (std::size_t k : b.slices) {
    inputs.push_back(full_.slices()[k].grads);
    Part p{.ranges = ranges_[k], .chunk = chunk_[k]};
    if (shard_of_[k] >= 0) {
      targets.push_back(shard_->slices()[static_cast<std::size_t>(shard_of_[k])].grads);
      p.out = static_cast<int>(targets.size()) - 1;
    }
    parts.push_back(std::move(p));
    sent += static_cast<std::int64_t>(n - 1) * chunk_[k] * static_cast<std::int64_t>(eb);
  }
  stats_.reduce_bytes += sent;
  Communicator* comm = &comm_;
  const bool even = even_;
  OpFn fn = [comm, parts, n, rank, ft, ct, eb, even](const OpArgs& a) {
    void* scratch = a.outputs[0];
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const Part& p = parts[i];
      const void* grads = a.inputs[i];
      const Range mine = p.ranges[static_cast<std::size_t>(rank)];
      const std::int64_t own = mine.second - mine.first;
      const void* recv = scratch;
      if (even) {
        check(comm->all_to_all(a.launch, grads, scratch, static_cast<std::size_t>(p.chunk), ct));
      } else {
        // Pack each rank's range into a chunk of the largest range's size, then exchange.
        for (int j = 0; j < n; ++j) {
          const Range& to = p.ranges[static_cast<std::size_t>(j)];
          nn::cast(a.launch, ft, at(scratch, j * p.chunk, eb), ft, at(grads, to.first, eb),
                   to.second - to.first);
        }
        recv = at(scratch, n * p.chunk, eb);
        check(comm->all_to_all(a.launch, scratch, const_cast<void*>(recv),
                               static_cast<std::size_t>(p.chunk), ct));
      }
      if (p.out >= 0) {
        nn::fold_chunks(a.launch, ft, a.outputs[static_cast<std::size_t>(p.out)], recv, n, p.chunk,
                        own, static_cast<float>(n));
      }
    }
  };
  if (shard_serial_ != full_.step_serial()) {
    shard_->begin_step();
    shard_serial_ = full_.step_serial();
  }
  const std::string name = "zero.reduce." + full_.slice_label(b.slices.front());
  EBB_RETURN_IF_ERROR(engine_.update(name, inputs, targets, std::move(fn),
                                     comm_.link_model().transfer_time(static_cast<double>(sent))));
  // The shard's gradients are final: an off-device range starts its copy to the host now.
  for (std::size_t k : b.slices) {
    if (shard_of_[k] >= 0 && options_.stage >= 1) {
      EBB_RETURN_IF_ERROR(shard_->gradients_written(static_cast<std::size_t>(shard_of_[k])));
    }
  }
  if (options_.stage >= 2) {
    for (std::size_t k : b.slices) EBB_RETURN_IF_ERROR(engine_.discard(full_.slices()[k].grads));
  }
  b.serial = full_.step_serial();
  ++stats_.buckets_reduced;
  if (early) ++stats_.early_buckets;
  return ok_status();
}

Status ZeroOptimizer::reduce_remaining() {
  const std::int64_t serial = full_.step_serial();
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b].serial != serial) EBB_RETURN_IF_ERROR(reduce_bucket(b, /*early=*/false));
  }
  return ok_status();
}

Status ZeroOptimizer::gather_slice(std::size_t slice, const Tensor& full_buffer, const Tensor* own,
                                   DType t) {
  const int n = comm_.size();
  const int rank = comm_.rank();
  const nn::FloatType ft = *ops::float_type_of(t);
  const CommDType ct = comm_dtype(t);
  const std::size_t eb = dtype_bytes(t);
  std::vector<Tensor> inputs;
  if (own != nullptr) inputs.push_back(*own);
  const Tensor targets[] = {full_buffer, scratch_};
  const std::vector<Range> ranges = ranges_[slice];
  const std::int64_t chunk = chunk_[slice];
  stats_.gather_bytes += static_cast<std::int64_t>(n - 1) * chunk * static_cast<std::int64_t>(eb);
  Communicator* comm = &comm_;
  const bool even = even_;
  OpFn fn = [comm, ranges, chunk, n, rank, ft, ct, eb, even](const OpArgs& a) {
    gather_chunks(*comm, a.launch, ranges, chunk, rank, ft, ct, eb, even,
                  a.inputs.empty() ? nullptr : a.inputs[0], a.outputs[0], a.outputs[1],
                  /*copy_own=*/true);
  };
  return engine_.update("zero.gather." + full_.slice_label(slice), inputs, targets, std::move(fn));
}

Status ZeroOptimizer::gather_all(bool parameters) {
  for (std::size_t k = 0; k < full_.slices().size(); ++k) {
    const ModelState::Slice& ms = full_.slices()[k];
    const Tensor* own = nullptr;
    if (shard_of_[k] >= 0) {
      const ModelState::Slice& ss = shard_->slices()[static_cast<std::size_t>(shard_of_[k])];
      own = parameters ? &ss.params : &ss.grads;
    }
    EBB_RETURN_IF_ERROR(parameters ? gather_slice(k, ms.params, own, full_.param_dtype())
                                   : gather_slice(k, ms.grads, own, full_.grad_dtype()));
  }
  return ok_status();
}

Result<GradientStats> ZeroOptimizer::gradient_stats(float inv_scale) {
  EBB_RETURN_IF_ERROR(reduce_remaining());
  EBB_ASSIGN_OR_RETURN(GradientStats local, ebb::gradient_stats(engine_, *shard_, inv_scale));
  const float mine[2] = {local.sum_of_squares, local.nonfinite};
  std::vector<float> all(2 * static_cast<std::size_t>(comm_.size()));
  EBB_RETURN_IF_ERROR(comm_.host_all_gather(mine, all.data(), sizeof mine));
  stats_.control_bytes += static_cast<std::int64_t>(comm_.size() - 1) * sizeof mine;
  GradientStats out;
  for (int i = 0; i < comm_.size(); ++i) {  // in rank order
    out.sum_of_squares += all[2 * static_cast<std::size_t>(i)];
    out.nonfinite += all[2 * static_cast<std::size_t>(i) + 1];
  }
  return out;
}

Status ZeroOptimizer::step(int step, float lr, float grad_scale) {
  EBB_RETURN_IF_ERROR(reduce_remaining());
  if (options_.stage == 0) {
    EBB_RETURN_IF_ERROR(gather_all(/*parameters=*/false));
    return inner_->step(step, lr, grad_scale);
  }
  EBB_RETURN_IF_ERROR(inner_->step(step, lr, grad_scale));
  if (options_.stage == 3) {
    // The shard changed: every gathered parameter is out of date, and the next use gathers it.
    return release_gathered();
  }
  // A delayed update leaves the off-device ranges' parameters to the next step; they are
  // gathered as they stand (the rank's current working copy), the same on every rank.
  return gather_all(/*parameters=*/true);
}

Status ZeroOptimizer::sync_parameters() {
  if (options_.stage == 0) return ok_status();
  if (options_.stage == 3) return release_gathered();  // gathered again at their next use
  IterationScope iteration(engine_);
  EBB_RETURN_IF_ERROR(iteration.status());
  Status gathered = gather_all(/*parameters=*/true);
  Status ended = iteration.end();
  EBB_RETURN_IF_ERROR(gathered);
  return ended;
}

Status ZeroOptimizer::read_master(std::size_t slice, std::span<float> out) {
  const int n = comm_.size();
  const std::vector<Range>& ranges = ranges_[slice];
  const std::int64_t chunk = chunk_[slice];
  std::vector<float> mine(static_cast<std::size_t>(chunk), 0.0F);
  if (shard_of_[slice] >= 0) {
    const auto j = static_cast<std::size_t>(shard_of_[slice]);
    const FlatLayout& sl = shard_->layout();
    const ModelState::Slice& ss = shard_->slices()[j];
    const FlatSlice& fs = sl.groups[ss.group].slices[ss.index];
    for (std::size_t p : fs.params) {
      EBB_ASSIGN_OR_RETURN(std::vector<float> v, shard_->master_to_host(p));
      std::memcpy(mine.data() + (sl.entries[p].offset - fs.begin), v.data(),
                  v.size() * sizeof(float));
    }
  }
  std::vector<float> all(static_cast<std::size_t>(chunk) * static_cast<std::size_t>(n));
  EBB_RETURN_IF_ERROR(comm_.host_all_gather(mine.data(), all.data(), mine.size() * sizeof(float)));
  for (int i = 0; i < n; ++i) {
    const Range& from = ranges[static_cast<std::size_t>(i)];
    std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(i) * chunk, from.second - from.first,
                out.begin() + from.first);
  }
  return ok_status();
}

}  // namespace ebb
