#include "engine/engine.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace ebb {

std::size_t tensor_bytes(const std::vector<std::int64_t>& shape, DType dtype) {
  std::size_t bytes = dtype_bytes(dtype);
  if (shape.empty() || bytes == 0) return 0;
  for (std::int64_t d : shape) {
    if (d <= 0) return 0;
    const auto dim = static_cast<std::size_t>(d);
    if (bytes > std::numeric_limits<std::size_t>::max() / dim) return 0;
    bytes *= dim;
  }
  return bytes;
}

const std::string& Tensor::name() const { return engine_->record(*this).name; }
const std::vector<std::int64_t>& Tensor::shape() const { return engine_->record(*this).shape; }
DType Tensor::dtype() const { return engine_->record(*this).dtype; }
TensorKind Tensor::kind() const { return engine_->record(*this).kind; }
std::size_t Tensor::bytes() const { return engine_->record(*this).bytes; }

namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::create(EngineOptions options) {
  Device& device = options.device;
  if (options.host_tier_bytes == 0) return invalid_argument("engine host_tier_bytes is 0");
  if (options.host_link_bytes_per_s <= 0) options.host_link_bytes_per_s = 10e9;
  if (options.check_outputs && device.kind() == DeviceKind::kSim) {
    return invalid_argument("engine check_outputs needs a device that runs closures; " +
                            device.name() + " is a sim device");
  }
  std::unique_ptr<Engine> engine(new Engine(options, device));
  EBB_ASSIGN_OR_RETURN(
      engine->allocator_,
      CachingAllocator::create(device, {.budget_bytes = options.budget_bytes,
                                        .expandable_segments = options.expandable_segments}));
  EBB_ASSIGN_OR_RETURN(engine->host_tier_, HostTier::create(device, options.host_tier_bytes));
  EBB_ASSIGN_OR_RETURN(engine->copy_, device.create_stream());
  EBB_ASSIGN_OR_RETURN(engine->prefetch_, device.create_stream());
  EBB_RETURN_IF_ERROR(engine->create_nvme_tier());
  engine->events_ = std::make_unique<EventPool>(device);
  engine->timer_ = std::make_unique<OpTimer>(*engine->events_);
  engine->profiler_ = std::make_unique<Profiler>(options.warmup_iterations, device.name());
  Engine* self = engine.get();
  engine->allocator_->set_eviction_callback(
      [self](std::size_t bytes_needed, Stream& /*stream*/) { return self->evict(bytes_needed); });
  return engine;
}

Engine::Engine(EngineOptions options, Device& device)
    : options_(std::move(options)),
      device_(device),
      compute_(device.default_stream()),
      closure_errors_(std::make_shared<ClosureErrors>()) {}

Engine::~Engine() {
  // Queued closures and copies use the engine's blocks, host copies and events: let them finish
  // before anything is returned. Errors have nowhere to go now.
  if (copy_ != nullptr) (void)copy_->synchronize();
  if (prefetch_ != nullptr) (void)prefetch_->synchronize();
  (void)compute_.synchronize();
  if (allocator_ != nullptr) allocator_->set_eviction_callback(nullptr);
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    if (tensors_.at(slot).live) free_storage(slot);
  }
}

const TensorRecord& Engine::record(const Tensor& tensor) const {
  const TensorRecord* r = tensors_.find(tensor.id());
  EBB_CHECK(tensor.engine() == this && r != nullptr,
            "accessor of tensor id " + std::to_string(tensor.id()) +
                " that is not a live tensor of this engine");
  return *r;
}

Result<Residency> Engine::residency(const Tensor& tensor) const {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "residency", "tensor"));
  return tensors_.at(slot).residency;
}

Result<std::uint32_t> Engine::usable_slot(const Tensor& tensor, std::string_view op,
                                          std::string_view role) const {
  if (tensor.valid() && tensor.engine() == this) {
    const TensorRecord* r = tensors_.find(tensor.id());
    if (r != nullptr && !r->released) return TensorTable::slot_of(tensor.id());
  }
  // Not usable: only now is the message's context worth building.
  const std::string where = quoted(op) + ": " + std::string(role);
  if (!tensor.valid()) return invalid_argument(where + " is an empty Tensor handle");
  if (tensor.engine() != this) {
    return invalid_argument(where + " (id " + std::to_string(tensor.id()) +
                            ") belongs to another engine");
  }
  const TensorRecord* r = tensors_.find(tensor.id());
  if (r == nullptr) {
    auto it = retired_names_.find(tensor.id());
    return invalid_argument(where + " " +
                            (it != retired_names_.end()
                                 ? quoted(it->second) + " was released at the end of its iteration"
                                 : "id " + std::to_string(tensor.id()) + " was released") +
                            " (keep() carries a tensor into the next iteration)");
  }
  if (r->released) return invalid_argument(where + " " + quoted(r->name) + " was released");
  return TensorTable::slot_of(tensor.id());
}

Status Engine::take_closure_error() {
  if (!deferred_error_.ok()) return std::exchange(deferred_error_, ok_status());
  if (!closure_errors_->any.load(std::memory_order_acquire)) return ok_status();
  std::lock_guard<std::mutex> lock(closure_errors_->mu);
  closure_errors_->any.store(false, std::memory_order_relaxed);
  return std::exchange(closure_errors_->first, ok_status());
}

Result<Tensor> Engine::input(TensorSpec spec, const void* host_data) {
  return create_filled(std::move(spec), host_data, TensorKind::kInput);
}

Result<Tensor> Engine::parameter(TensorSpec spec, const void* host_data) {
  return create_filled(std::move(spec), host_data, TensorKind::kParameter);
}

Result<Tensor> Engine::create_filled(TensorSpec spec, const void* host_data,
                                     TensorKind default_kind) {
  if (spec.kind == TensorKind::kActivation) spec.kind = default_kind;
  const std::size_t bytes = tensor_bytes(spec.shape, spec.dtype);
  const std::string what = std::string(tensor_kind_name(spec.kind)) + " " + quoted(spec.name);
  if (bytes == 0) {
    return invalid_argument(what + ": shape " + shape_string(spec.shape) +
                            " must be non-empty with every dimension > 0");
  }
  current_op_ = what;
  ++tick_;
  Result<void*> ptr = allocator_->allocate(bytes, compute_, spec.name);
  if (!ptr.ok()) {
    if (ptr.status().code() != StatusCode::kOutOfMemory) return ptr.status();
    return out_of_memory(out_of_memory_message(what, bytes, ptr.status()));
  }
  Status copied = host_data != nullptr
                      ? compute_.copy_async(*ptr, host_data, bytes, CopyKind::kHostToDevice)
                      : compute_.memset_async(*ptr, 0, bytes);
  // The caller may reuse host_data once we return.
  if (copied.ok()) copied = compute_.synchronize();
  if (!copied.ok()) {
    (void)allocator_->free(*ptr);
    return copied;
  }
  TensorRecord r;
  r.name = std::move(spec.name);
  r.shape = std::move(spec.shape);
  r.dtype = spec.dtype;
  r.kind = spec.kind;
  r.bytes = bytes;
  r.carried =
      !in_iteration_ || r.kind == TensorKind::kParameter || r.kind == TensorKind::kOptimizerState;
  r.residency = Residency::kDevice;
  r.device_ptr = *ptr;
  r.last_access = tick_;
  const std::uint32_t slot = tensors_.add(std::move(r));
  if (in_iteration_ && profiler_->recording()) profiler_->on_tensor_created(tensors_, slot);
  if (in_iteration_) plan_tensor_created(slot);
  return Tensor(this, tensors_.id_of(slot));
}

Result<std::vector<Tensor>> Engine::run(std::string_view name, std::span<const Tensor> inputs,
                                        std::vector<TensorSpec> outputs, OpFn fn,
                                        std::chrono::nanoseconds cost) {
  EBB_RETURN_IF_ERROR(take_closure_error());
  if (!in_iteration_) {
    return failed_precondition("run(" + quoted(name) +
                               ") outside an iteration: call begin_iteration() first");
  }
  if (!fn) return invalid_argument("run(" + quoted(name) + "): empty closure");
  if (outputs.empty()) return invalid_argument("run(" + quoted(name) + "): no outputs");
  if (cost.count() < 0) {
    return invalid_argument("run(" + quoted(name) + "): negative cost " +
                            std::to_string(cost.count()) + " ns");
  }
  // Becomes the tape entry's (moved in once the op cannot fail any more).
  std::vector<std::uint32_t> input_slots = take_slot_list();
  input_slots.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    Result<std::uint32_t> slot = usable_slot(inputs[i], name, "input");
    if (!slot.ok()) {
      // Again, for the message that says which input.
      return usable_slot(inputs[i], name, "input " + std::to_string(i)).status();
    }
    input_slots.push_back(*slot);
  }
  std::vector<std::size_t>& output_bytes = run_output_bytes_;
  output_bytes.resize(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    output_bytes[i] = tensor_bytes(outputs[i].shape, outputs[i].dtype);
    if (output_bytes[i] == 0) {
      return invalid_argument(quoted(name) + ": output " + std::to_string(i) + " " +
                              quoted(outputs[i].name) + " has shape " +
                              shape_string(outputs[i].shape) +
                              "; every dimension must be > 0 and the shape non-empty");
    }
  }
  current_op_ = name;
  ++tick_;
  const std::size_t op_index = tape_.size();
  if (!executor_.plans.empty()) {
    if (Status s = plan_before_op(op_index, name, input_slots); !s.ok()) return s;
  }

  // Inputs: resident and locked one by one, so that bringing one back cannot evict another.
  // The first `locked` of input_slots hold a lock.
  std::size_t locked = 0;
  const auto unlock_inputs = [&] {
    for (std::size_t i = 0; i < locked; ++i) --tensors_.at(input_slots[i]).lock_count;
  };
  std::vector<void*>& pointers = run_pointers_;
  pointers.clear();
  for (std::uint32_t slot : input_slots) {
    if (Status s = make_resident(slot, name); !s.ok()) {
      unlock_inputs();
      return s;
    }
    ++tensors_.at(slot).lock_count;
    ++locked;
  }
  for (std::uint32_t slot : input_slots) pointers.push_back(tensors_.at(slot).device_ptr);

  // Outputs: not yet registered, so the eviction callback cannot see them.
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    Result<void*> ptr = allocator_->allocate(output_bytes[i], compute_, outputs[i].name);
    if (!ptr.ok()) {
      for (std::size_t j = input_slots.size(); j < pointers.size(); ++j) {
        (void)allocator_->free(pointers[j]);
      }
      // The message is built while the inputs are still locked, so it tells them from pinned ones.
      Status failed = ptr.status().code() != StatusCode::kOutOfMemory
                          ? ptr.status()
                          : out_of_memory(out_of_memory_message(
                                "op " + quoted(name) + " (output " + quoted(outputs[i].name) + ")",
                                output_bytes[i], ptr.status()));
      unlock_inputs();
      return failed;
    }
    pointers.push_back(*ptr);
  }

  auto code = std::make_shared<const OpCode>(OpCode{std::string(name), std::move(fn)});
  if (options_.check_outputs) {
    Status checked =
        check_closure_outputs(code, pointers, input_slots.size(), outputs, output_bytes, cost);
    if (!checked.ok()) {
      // Freed in compute-stream order, after the checked launches.
      for (std::size_t j = input_slots.size(); j < pointers.size(); ++j) {
        (void)allocator_->free(pointers[j]);
      }
      unlock_inputs();
      return checked;
    }
  }

  const std::uint32_t name_id = intern_op_name(name);
  OpRecord op;
  op.code = std::move(code);
  op.name_id = name_id;
  if (const std::int64_t last = op_names_[name_id].last_cost_ns; last > 0) op.cost_ns = last;
  op.given_cost = cost;
  if (cost.count() > 0) op.cost_ns = cost.count();
  std::vector<Tensor> result;
  result.reserve(outputs.size());
  op.outputs = take_slot_list();
  op.outputs.reserve(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    TensorRecord r;
    r.name = std::move(outputs[i].name);
    r.shape = std::move(outputs[i].shape);
    r.dtype = outputs[i].dtype;
    r.kind = outputs[i].kind;
    r.bytes = output_bytes[i];
    r.residency = Residency::kDevice;
    r.device_ptr = pointers[input_slots.size() + i];
    r.last_access = tick_;
    r.producer = static_cast<std::int32_t>(op_index);
    const std::uint32_t slot = tensors_.add(std::move(r));
    op.outputs.push_back(slot);
    result.emplace_back(this, tensors_.id_of(slot));
  }
  for (std::size_t i = 0; i < input_slots.size(); ++i) {
    TensorRecord& in = tensors_.at(input_slots[i]);
    in.last_access = tick_;
    // Counted once per op: consumers says how many tape ops need the tensor for a replay.
    if (std::find(input_slots.begin(), input_slots.begin() + i, input_slots[i]) ==
        input_slots.begin() + i) {
      ++in.consumers;
    }
  }
  op.inputs = std::move(input_slots);
  tape_.push_back(std::move(op));
  // Every op of a warm-up iteration is timed (the profile has every duration); afterwards a
  // sample per name keeps the cost estimates current (see run() in engine.h).
  OpNameStats& stats = op_names_[name_id];
  const bool timed = profiler_->recording() || stats.runs % kTimingSamplePeriod == 0;
  Status launched = launch(op_index, pointers, timed);
  for (std::uint32_t slot : tape_[op_index].inputs) --tensors_.at(slot).lock_count;
  if (!launched.ok()) return launched;
  ++stats.runs;
  ++stats_.ops_run;
  if (!executor_.plans.empty()) plan_after_op(op_index);
  if (profiler_->recording()) {
    profiler_->on_run(tensors_, tape_[op_index], op_index,
                      static_cast<std::size_t>(allocator_->stats().all.reserved_bytes.current));
  }
  EBB_RETURN_IF_ERROR(poll_timings(/*wait=*/false));
  return result;
}

Status Engine::read(const Tensor& tensor, void* host, std::size_t bytes) {
  EBB_RETURN_IF_ERROR(take_closure_error());
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "read", "tensor"));
  const TensorRecord& r = tensors_.at(slot);
  if (bytes > r.bytes) {
    return invalid_argument("read of " + std::to_string(bytes) + " bytes from tensor " +
                            quoted(r.name) + " of " + std::to_string(r.bytes) + " bytes");
  }
  current_op_ = "read " + quoted(r.name);
  ++tick_;
  EBB_RETURN_IF_ERROR(make_resident(slot, current_op_));
  TensorRecord& resident = tensors_.at(slot);
  resident.last_access = tick_;
  EBB_RETURN_IF_ERROR(
      compute_.copy_async(host, resident.device_ptr, bytes, CopyKind::kDeviceToHost));
  return synchronize();
}

Status Engine::release(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "release", "tensor"));
  TensorRecord& r = tensors_.at(slot);
  if (in_iteration_ && profiler_->recording()) profiler_->on_release(tensors_, slot);
  r.released = true;
  r.carried = false;
  // A dropped tensor's replay may read r. If none can, or r can itself be rebuilt by replay, its
  // bytes go now; otherwise they stay (swappable) until no replay reads them (see evict()).
  if (storage_releasable(slot)) free_storage(slot);
  return ok_status();
}

Status Engine::keep(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "keep", "tensor"));
  tensors_.at(slot).carried = true;
  return ok_status();
}

Status Engine::begin_iteration() {
  EBB_RETURN_IF_ERROR(take_closure_error());
  if (in_iteration_) return failed_precondition("begin_iteration() inside an iteration");
  in_iteration_ = true;
  plan_begin_iteration();
  if (profiler_->recording()) profiler_->on_begin_iteration(tensors_);
  return ok_status();
}

Status Engine::end_iteration() {
  if (!in_iteration_) return failed_precondition("end_iteration() without begin_iteration()");
  current_op_ = "end_iteration";
  // Carried tensors lose their producer: a dropped one is recomputed now, while the tape lasts.
  Status first;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.carried && r.residency == Residency::kDropped) {
      if (Status s = make_resident(slot, "end_iteration"); !s.ok() && first.ok()) {
        first = std::move(s);
      }
    }
  }
  if (Status s = synchronize(); !s.ok() && first.ok()) first = std::move(s);
  if (Status s = poll_timings(/*wait=*/true); !s.ok() && first.ok()) first = std::move(s);
  // Every timing of the iteration has been read: the profiler can finish it.
  const bool was_recording = profiler_->recording();
  if (was_recording) profiler_->on_end_iteration(tensors_, tape_, first.ok());
  const bool profile_completed = was_recording && !profiler_->recording();
  retired_names_.clear();
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    TensorRecord& r = tensors_.at(slot);
    if (!r.live) continue;
    if (r.carried && r.residency != Residency::kDropped) {
      r.producer = kNoProducer;
      r.consumers = 0;
      continue;
    }
    if (!r.released) retired_names_.emplace(tensors_.id_of(slot), r.name);
    free_storage(slot);
    tensors_.retire(slot);
  }
  for (OpRecord& op : tape_) {
    for (std::vector<std::uint32_t>* slots : {&op.inputs, &op.outputs}) {
      slots->clear();
      spare_slot_lists_.push_back(std::move(*slots));
    }
  }
  tape_.clear();
  in_iteration_ = false;
  if (Status s = plan_end_iteration(first.ok(), profile_completed); !s.ok() && first.ok()) {
    first = std::move(s);
  }
  if (Status s = take_closure_error(); !s.ok() && first.ok()) first = std::move(s);
  return first;
}

Status Engine::synchronize() {
  Status copy_status = copy_->synchronize();
  Status prefetch_status = prefetch_->synchronize();
  if (copy_status.ok()) copy_status = std::move(prefetch_status);
  Status compute_status = compute_.synchronize();
  // Every kernel launched so far has run: their launch records can be reused.
  launches_used_ = 0;
  EBB_RETURN_IF_ERROR(take_closure_error());
  EBB_RETURN_IF_ERROR(compute_status);
  return copy_status;
}

Status Engine::poll_timings(bool wait) {
  return timer_->drain_completed(
      [this](std::size_t op_index, std::int64_t ns) {
        OpRecord& op = tape_[op_index];
        if (op.given_cost.count() > 0) return;  // a given cost is not replaced by a measurement
        op.cost_ns = std::max<std::int64_t>(ns, 1);
        op_names_[op.name_id].last_cost_ns = op.cost_ns;
        if (profiler_->recording()) profiler_->on_timing(op_index, ns);
      },
      wait);
}

std::vector<std::uint32_t> Engine::take_slot_list() {
  if (spare_slot_lists_.empty()) return {};
  std::vector<std::uint32_t> slots = std::move(spare_slot_lists_.back());
  spare_slot_lists_.pop_back();
  return slots;
}

std::uint32_t Engine::intern_op_name(std::string_view name) {
  if (auto it = op_name_ids_.find(name); it != op_name_ids_.end()) return it->second;
  const auto id = static_cast<std::uint32_t>(op_names_.size());
  op_name_ids_.emplace(std::string(name), id);
  op_names_.emplace_back();
  return id;
}

void Engine::unlock(const std::vector<std::uint32_t>& slots) {
  for (std::uint32_t slot : slots) --tensors_.at(slot).lock_count;
}

std::string Engine::out_of_memory_message(std::string_view op, std::size_t bytes_needed,
                                          const Status& allocator_status) const {
  // What could not be evicted, largest first: that is what the budget has to hold.
  std::vector<std::uint32_t> held;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.residency == Residency::kDevice) held.push_back(slot);
  }
  std::stable_sort(held.begin(), held.end(), [this](std::uint32_t a, std::uint32_t b) {
    return tensors_.at(a).bytes > tensors_.at(b).bytes;
  });
  std::string m = std::string(op) + " needs " + std::to_string(bytes_needed) +
                  " bytes and even evicting everything evictable (policy " +
                  std::string(eviction_policy_name(options_.policy)) +
                  ") leaves no room under the budget of " +
                  std::to_string(allocator_->budget_bytes()) + " bytes; resident and held:";
  constexpr std::size_t kListed = 10;
  for (std::size_t i = 0; i < held.size() && i < kListed; ++i) {
    const TensorRecord& r = tensors_.at(held[i]);
    m += " " + quoted(r.name) + " " + std::to_string(r.bytes) + " B (" +
         std::string(tensor_kind_name(r.kind)) +
         (r.lock_count > 0 ? ", locked by the op" : ", pinned") + ")";
    m += i + 1 < held.size() && i + 1 < kListed ? "," : "";
  }
  if (held.size() > kListed) m += " and " + std::to_string(held.size() - kListed) + " more";
  return m + ". Allocator: " + allocator_status.message();
}

IterationScope::IterationScope(Engine& engine)
    : engine_(engine), begin_status_(engine.begin_iteration()) {}

IterationScope::~IterationScope() {
  if (!ended_ && begin_status_.ok()) {
    Status s = engine_.end_iteration();
    if (!s.ok() && engine_.deferred_error_.ok()) engine_.deferred_error_ = std::move(s);
  }
}

Status IterationScope::end() {
  if (ended_ || !begin_status_.ok()) return begin_status_;
  ended_ = true;
  return engine_.end_iteration();
}

}  // namespace ebb
