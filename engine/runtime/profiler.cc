#include "engine/runtime/profiler.h"

#include <algorithm>
#include <utility>

namespace ebb {

Profiler::Profiler(int iterations, std::string device_name)
    : iterations_(std::max(iterations, 0)), device_name_(std::move(device_name)) {}

void Profiler::record_more(int iterations) {
  iterations_ = completed_ + std::max(iterations, 0);
  warmup_start_ = completed_;
  extended_ = 0;
  profiles_.clear();
  result_.reset();
}

void Profiler::on_begin_iteration(const TensorTable& tensors) {
  entries_.clear();
  entry_by_id_.clear();
  ops_.clear();
  freed_.clear();
  frees_before_first_op_.clear();
  measured_ns_.clear();
  in_iteration_ = true;
  for (std::uint32_t slot = 0; slot < tensors.slot_count(); ++slot) {
    const TensorRecord& r = tensors.at(slot);
    if (r.live && !r.released && !r.is_view()) entry_of(tensors, slot);
  }
}

void Profiler::on_tensor_created(const TensorTable& tensors, std::uint32_t slot) {
  if (in_iteration_) entry_of(tensors, slot);
}

std::size_t Profiler::entry_of(const TensorTable& tensors, std::uint32_t slot) {
  const std::uint64_t id = tensors.id_of(slot);
  if (auto it = entry_by_id_.find(id); it != entry_by_id_.end()) return it->second;
  const TensorRecord& r = tensors.at(slot);
  TensorEntry e;
  e.id = id;
  e.tensor.name = r.name;
  e.tensor.bytes = r.bytes;
  e.tensor.kind = r.kind;
  e.tensor.dtype = r.dtype;
  e.tensor.shape = r.shape;
  entries_.push_back(std::move(e));
  entry_by_id_.emplace(id, entries_.size() - 1);
  freed_.push_back(false);
  return entries_.size() - 1;
}

void Profiler::on_run(const TensorTable& tensors, const OpRecord& op, std::size_t tape_index,
                      std::size_t reserved_bytes) {
  if (!in_iteration_) return;
  OpEntry e;
  e.name = op.code->name;
  e.tape_index = tape_index;
  e.reserved_bytes = reserved_bytes;
  for (std::uint32_t slot : op.inputs) e.inputs.push_back(entry_of(tensors, slot));
  for (std::uint32_t slot : op.writes) {
    e.writes.push_back(entry_of(tensors, slot));
    e.inputs.push_back(e.writes.back());
  }
  for (std::uint32_t slot : op.outputs) e.outputs.push_back(entry_of(tensors, slot));
  ops_.push_back(std::move(e));
  if (ops_.size() == 1) {
    // A profile cannot free before its first op: such frees count as freed after op 0.
    ops_.front().frees = std::move(frees_before_first_op_);
    frees_before_first_op_.clear();
  }
}

void Profiler::on_timing(std::size_t tape_index, std::int64_t ns) {
  if (in_iteration_) measured_ns_[tape_index] = ns;
}

void Profiler::free_entry(std::size_t entry) {
  if (freed_[entry]) return;
  freed_[entry] = true;
  if (ops_.empty()) {
    frees_before_first_op_.push_back(entry);
  } else {
    ops_.back().frees.push_back(entry);
  }
}

void Profiler::on_release(const TensorTable& tensors, std::uint32_t slot) {
  if (in_iteration_) free_entry(entry_of(tensors, slot));
}

void Profiler::on_end_iteration(const TensorTable& tensors, const std::vector<OpRecord>& tape,
                                bool ok) {
  if (!in_iteration_) return;
  in_iteration_ = false;
  if (!ok) return;  // a failed iteration is no sample of the loop's work
  // What end_iteration releases (see Engine::end_iteration) is freed after the last op.
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const TensorRecord* r = tensors.find(entries_[i].id);
    if (r == nullptr || r->released) continue;
    if (r->carried && (r->residency != Residency::kDropped || r->discarded)) continue;
    free_entry(i);
  }
  profiles_.push_back(finish(tape));
  ++completed_;
  if (completed_ < iterations_) return;
  // The warm-up is complete: decide once, and keep only the answer.
  const Profile& last = profiles_.back();
  // The window's iterations, numbered from the warm-up's first.
  const int first = completed_ - static_cast<int>(profiles_.size()) - warmup_start_ + 1;
  Status agree;
  bool differ = false;
  for (std::size_t i = 0; i + 1 < profiles_.size() && agree.ok(); ++i) {
    const int number = first + static_cast<int>(i);
    if (Status s = validate_profile(profiles_[i], "warm-up iteration " + std::to_string(number));
        !s.ok()) {
      agree = internal_error("profiler recorded an invalid profile: " + s.message());
      break;
    }
    if (Status s = check_profiles_agree(profiles_[i], last); !s.ok()) {
      differ = true;
      agree = failed_precondition("warm-up iterations " + std::to_string(number) + " and " +
                                  std::to_string(completed_ - warmup_start_) +
                                  " disagree: " + s.message());
    }
  }
  if (differ && extended_ < kMaxWarmupExtension) {
    // One more iteration, the oldest one out of the window.
    profiles_.erase(profiles_.begin());
    ++iterations_;
    ++extended_;
    return;
  }
  if (agree.ok()) {
    if (Status s = validate_profile(last, "last warm-up iteration"); !s.ok()) {
      agree = internal_error("profiler recorded an invalid profile: " + s.message());
    }
  }
  if (agree.ok()) {
    Profile p = last;
    p.iterations = iterations_ - warmup_start_;
    result_.emplace(std::move(p));
  } else {
    result_.emplace(std::move(agree));
  }
  profiles_.clear();
  entries_.clear();
  entry_by_id_.clear();
  ops_.clear();
  freed_.clear();
  measured_ns_.clear();
}

Profile Profiler::finish(const std::vector<OpRecord>& tape) const {
  // Dense ids: tensors that exist before the iteration first, then op outputs in run() order.
  std::vector<std::optional<std::size_t>> producer(entries_.size());
  for (std::size_t k = 0; k < ops_.size(); ++k) {
    for (std::size_t e : ops_[k].outputs) producer[e] = k;
  }
  std::vector<std::size_t> order;
  for (std::size_t e = 0; e < entries_.size(); ++e) {
    if (!producer[e]) order.push_back(e);
  }
  for (const OpEntry& op : ops_) {
    for (std::size_t e : op.outputs) order.push_back(e);
  }
  std::vector<std::size_t> id(entries_.size());
  for (std::size_t i = 0; i < order.size(); ++i) id[order[i]] = i;

  Profile p;
  p.source = "engine";
  p.device = device_name_;
  p.iterations = 1;
  for (std::size_t e : order) {
    ProfiledTensor t = entries_[e].tensor;
    t.id = id[e];
    t.producer = producer[e];
    p.tensors.push_back(std::move(t));
  }
  for (std::size_t k = 0; k < ops_.size(); ++k) {
    const OpEntry& e = ops_[k];
    ProfiledOp op;
    op.index = k;
    op.name = e.name;
    for (std::size_t in : e.inputs) op.inputs.push_back(id[in]);
    for (std::size_t out : e.outputs) op.outputs.push_back(id[out]);
    for (std::size_t f : e.frees) op.frees.push_back(id[f]);
    for (std::size_t w : e.writes) op.writes.push_back(id[w]);
    // The OpTimer measures every op unless too many timings were in flight at its launch; an
    // unmeasured op falls back to the cost the engine used for it (the last measured cost of
    // its name, else the tape's default).
    if (auto it = measured_ns_.find(e.tape_index); it != measured_ns_.end()) {
      op.duration_ns = it->second;
    } else {
      op.duration_ns = e.tape_index < tape.size() ? tape[e.tape_index].cost_ns : 0;
    }
    op.duration_ns = std::max<std::int64_t>(op.duration_ns, 1);
    for (std::size_t i = 0; i < op.inputs.size(); ++i) {
      std::vector<std::size_t>& acc = p.tensors[op.inputs[i]].accesses;
      if (acc.empty() || acc.back() != k) acc.push_back(k);
    }
    p.ops.push_back(std::move(op));
  }
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  p.memory.resize(p.ops.size());
  for (std::size_t k = 0; k < p.ops.size(); ++k) {
    p.memory[k].live_bytes = k < live.size() ? live[k] : 0;
    p.memory[k].reserved_bytes = ops_[k].reserved_bytes;
  }
  return p;
}

Result<Profile> Profiler::profile() const {
  if (iterations_ == 0) {
    return failed_precondition("profile(): profiling is off (warmup_iterations is 0)");
  }
  if (!result_) {
    const int left = iterations_ - completed_;
    const int total = iterations_ - warmup_start_;
    return failed_precondition("profile(): the warm-up is not complete: " + std::to_string(left) +
                               " of " + std::to_string(total) + " warm-up iteration" +
                               (total == 1 ? "" : "s") + " left to run");
  }
  return *result_;
}

}  // namespace ebb
