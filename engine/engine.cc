#include "engine/engine.h"

#include <algorithm>
#include <utility>

namespace ebb {

const std::string& Tensor::name() const { return engine_->record(*this).name; }
const std::vector<std::int64_t>& Tensor::shape() const { return engine_->record(*this).shape; }
DType Tensor::dtype() const { return engine_->record(*this).dtype; }
TensorKind Tensor::kind() const { return engine_->record(*this).kind; }
std::size_t Tensor::bytes() const { return engine_->record(*this).bytes; }

namespace {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Keeps the first error of a sequence of steps that all run.
void keep_first(Status& first, Status next) {
  if (first.ok() && !next.ok()) first = std::move(next);
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
  std::unique_ptr<Engine> engine(new Engine(std::move(options)));
  Engine& e = *engine;
  e.launcher_ = std::make_unique<OpLauncher>(device, device.default_stream());
  e.profiler_ = std::make_unique<Profiler>(e.options_.warmup_iterations, device.name());
  EBB_ASSIGN_OR_RETURN(e.pager_, Pager::create(e.options_, e.tensors_, e.tape_, *e.launcher_));
  e.executor_ =
      std::make_unique<PlanExecutor>(e.options_, e.tensors_, e.tape_, *e.pager_, *e.profiler_);
  return engine;
}

Engine::Engine(EngineOptions options) : options_(std::move(options)) {}

// The members go in reverse order: the executor, then the pager (which waits for the device and
// returns every tensor's storage), then the profiler and the launcher.
Engine::~Engine() {
  // A copy still running would write into a buffer its owner is about to free.
  (void)wait_reads();
}

const TensorRecord& Engine::record(const Tensor& tensor) const {
  const TensorRecord* r = tensors_.find(tensor.id());
  EBB_CHECK(tensor.engine() == this && r != nullptr,
            "accessor of tensor id " + std::to_string(tensor.id()) +
                " that is not a live tensor of this engine");
  return *r;
}

EngineStats Engine::stats() const {
  EngineStats stats;
  static_cast<ResidencyStats&>(stats) = pager_->stats();
  stats.ops_run = ops_run_;
  return stats;
}

Result<Residency> Engine::residency(const Tensor& tensor) const {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "residency", "tensor"));
  return tensors_.at(tensors_.storage(slot)).residency;
}

StatCounter Engine::memory_by_kind(TensorKind kind) {
  return allocator().stats().category_bytes[Pager::allocation_category(kind)];
}

StatCounter Engine::op_gradient_memory() {
  return allocator().stats().category_bytes[Pager::kOpGradientCategory];
}

Result<Tensor> Engine::view(const Tensor& base, std::size_t byte_offset, TensorSpec spec) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t base_slot, usable_slot(base, "view", "base"));
  const std::uint32_t storage = tensors_.storage(base_slot);
  const TensorRecord& b = tensors_.at(base_slot);
  const std::size_t offset = b.base_offset + byte_offset;
  const std::string what = "view " + quote(spec.name) + " of " + quote(b.name);
  if (!b.carried) {
    return invalid_argument(what + ": the base is not carried across iterations; views are of " +
                            "model state (parameters, gradient buffers, optimizer state)");
  }
  const std::size_t bytes = tensor_bytes(spec.shape, spec.dtype);
  if (bytes == 0) {
    return invalid_argument(what + ": shape " + shape_string(spec.shape) +
                            " must be non-empty with every dimension > 0");
  }
  if (byte_offset > b.bytes || bytes > b.bytes - byte_offset) {
    return invalid_argument(what + ": bytes [" + std::to_string(byte_offset) + ", " +
                            std::to_string(byte_offset + bytes) + ") pass the base's " +
                            std::to_string(b.bytes) + " bytes");
  }
  if (offset % dtype_bytes(spec.dtype) != 0) {
    return invalid_argument(what + ": offset " + std::to_string(offset) +
                            " is not a multiple of the element size " +
                            std::to_string(dtype_bytes(spec.dtype)));
  }
  TensorRecord r;
  r.name = std::move(spec.name);
  r.shape = std::move(spec.shape);
  r.dtype = spec.dtype;
  r.kind = spec.kind == TensorKind::kActivation ? tensors_.at(storage).kind : spec.kind;
  r.bytes = bytes;
  r.carried = true;
  r.base = storage;
  r.base_offset = offset;
  const std::uint32_t slot = tensors_.add(std::move(r));
  ++tensors_.at(storage).views;
  return Tensor(this, tensors_.id_of(slot));
}

Result<std::uint32_t> Engine::usable_slot(const Tensor& tensor, std::string_view op,
                                          std::string_view role) const {
  if (tensor.valid() && tensor.engine() == this) {
    const TensorRecord* r = tensors_.find(tensor.id());
    if (r != nullptr && !r->released) return TensorTable::slot_of(tensor.id());
  }
  // Not usable: only now is the message's context worth building.
  const std::string where = quote(op) + ": " + std::string(role);
  if (!tensor.valid()) return invalid_argument(where + " is an empty Tensor handle");
  if (tensor.engine() != this) {
    return invalid_argument(where + " (id " + std::to_string(tensor.id()) +
                            ") belongs to another engine");
  }
  const TensorRecord* r = tensors_.find(tensor.id());
  if (r == nullptr) {
    const std::string* retired = tensors_.retired_name(tensor.id());
    return invalid_argument(where + " " +
                            (retired != nullptr
                                 ? quote(*retired) + " was released at the end of its iteration"
                                 : "id " + std::to_string(tensor.id()) + " was released") +
                            " (keep() carries a tensor into the next iteration)");
  }
  if (r->released) return invalid_argument(where + " " + quote(r->name) + " was released");
  return TensorTable::slot_of(tensor.id());
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
  const std::string what = std::string(tensor_kind_name(spec.kind)) + " " + quote(spec.name);
  if (bytes == 0) {
    return invalid_argument(what + ": shape " + shape_string(spec.shape) +
                            " must be non-empty with every dimension > 0");
  }
  tensors_.advance();
  EBB_ASSIGN_OR_RETURN(void* block, pager_->allocate(bytes, spec.kind, spec.name,
                                                     [&]() -> const std::string& { return what; }));
  Stream& compute = launcher_->stream();
  Status copied = host_data != nullptr
                      ? compute.copy_async(block, host_data, bytes, CopyKind::kHostToDevice)
                      : compute.memset_async(block, 0, bytes);
  // The caller may reuse host_data once we return.
  if (copied.ok()) copied = compute.synchronize();
  if (!copied.ok()) {
    (void)pager_->allocator().free(block);
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
  r.device_ptr = block;
  const std::uint32_t slot = tensors_.add(std::move(r));
  tensors_.touch(slot);
  if (in_iteration_ && profiler_->recording()) profiler_->on_tensor_created(tensors_, slot);
  if (in_iteration_) executor_->tensor_created(slot);
  return Tensor(this, tensors_.id_of(slot));
}

Result<std::vector<Tensor>> Engine::run(std::string_view name, std::span<const Tensor> inputs,
                                        std::vector<TensorSpec> outputs, OpFn fn,
                                        std::chrono::nanoseconds cost) {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  EBB_RETURN_IF_ERROR(call_op_hook(inputs));
  EBB_RETURN_IF_ERROR(check_run(name, outputs, fn, cost));
  run_views_.clear();
  std::vector<std::uint32_t> slots = tape_.take_slot_list();
  EBB_RETURN_IF_ERROR(resolve(name, "input", inputs, slots));
  tensors_.advance();
  const std::size_t op_index = tape_.size();
  EBB_RETURN_IF_ERROR(executor_->before_op(op_index, name, slots));
  // Inputs resident and locked, so that allocating the outputs cannot evict them.
  EBB_RETURN_IF_ERROR(pager_->lock_resident(slots, name));
  run_pointers_.clear();
  for (std::uint32_t slot : run_views_) run_pointers_.push_back(tensors_.device_ptr(slot));
  auto code = std::make_shared<const OpCode>(OpCode{std::string(name), std::move(fn)});
  if (Status s = prepare_outputs(code, outputs, cost); !s.ok()) {
    pager_->unlock(slots);
    return s;
  }
  std::vector<Tensor> result = record_op(std::move(code), std::move(slots), {}, outputs, cost);
  EBB_RETURN_IF_ERROR(launch_recorded(op_index));
  return result;
}

Status Engine::update(std::string_view name, std::span<const Tensor> inputs,
                      std::span<const Tensor> targets, OpFn fn, std::chrono::nanoseconds cost) {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  if (op_hook_) {
    std::vector<Tensor> reads(inputs.begin(), inputs.end());
    reads.insert(reads.end(), targets.begin(), targets.end());
    EBB_RETURN_IF_ERROR(call_op_hook(reads));
  }
  EBB_RETURN_IF_ERROR(check_op("update", name, fn, cost));
  if (targets.empty()) return invalid_argument("update(" + quote(name) + "): no targets");
  run_views_.clear();
  std::vector<std::uint32_t> reads = tape_.take_slot_list();
  EBB_RETURN_IF_ERROR(resolve(name, "input", inputs, reads));
  std::vector<std::uint32_t> writes;
  EBB_RETURN_IF_ERROR(resolve(name, "target", targets, writes));
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const TensorRecord& t = tensors_.at(writes[i]);
    if (t.has_producer()) {
      return invalid_argument(
          "update(" + quote(name) + "): target " + std::to_string(i) + " " + quote(t.name) +
          " was made by op " + quote(tape_[static_cast<std::size_t>(t.producer)].code->name) +
          " in this iteration; only tensors no op produced (parameters, gradient buffers, "
          "optimizer state, inputs) are written in place, so that no replay depends on them");
    }
  }
  tensors_.advance();
  const std::size_t op_index = tape_.size();
  // What the op touches, as the profile and the executor see it: its inputs, then its targets.
  std::vector<std::uint32_t> touched = reads;
  touched.insert(touched.end(), writes.begin(), writes.end());
  EBB_RETURN_IF_ERROR(executor_->before_op(op_index, name, touched));
  EBB_RETURN_IF_ERROR(pager_->lock_resident(touched, name));
  if (Status s = pager_->settle_gathers_reading(writes); !s.ok()) {
    pager_->unlock(touched);
    return s;
  }
  if (Status s = order_after_reads(writes); !s.ok()) {
    pager_->unlock(touched);
    return s;
  }
  if (Status s = pager_->prepare_write(writes, name); !s.ok()) {
    pager_->unlock(touched);
    return s;
  }
  run_pointers_.clear();
  for (std::uint32_t slot : run_views_) run_pointers_.push_back(tensors_.device_ptr(slot));
  auto code = std::make_shared<const OpCode>(OpCode{std::string(name), std::move(fn)});
  std::vector<TensorSpec> no_outputs;
  record_op(std::move(code), std::move(reads), std::move(writes), no_outputs, cost);
  return launch_recorded(op_index);
}

Status Engine::launch_recorded(std::size_t op_index) {
  const OpRecord& op = tape_[op_index];
  Tape::NameStats& name_stats = tape_.name_stats(op.name_id);
  // Every op of a warm-up iteration is timed (the profile has every duration); afterwards a
  // sample per name keeps the cost estimates current (see run() in engine.h).
  const bool timed = profiler_->recording() || name_stats.runs % kTimingSamplePeriod == 0;
  Status launched = launcher_->launch(tape_, op_index, run_pointers_, timed);
  pager_->unlock(op.inputs);
  pager_->unlock(op.writes);
  if (!launched.ok()) return launched;
  ++name_stats.runs;
  ++ops_run_;
  executor_->after_op(op_index);
  if (profiler_->recording()) {
    profiler_->on_run(tensors_, op, op_index,
                      static_cast<std::size_t>(allocator().stats().all.reserved_bytes.current));
  }
  return poll_timings(/*wait=*/false);
}

Status Engine::check_op(std::string_view call, std::string_view name, const OpFn& fn,
                        std::chrono::nanoseconds cost) const {
  // The message's "run(\"name\")" is built only on failure: this runs once per op.
  const auto where = [&] { return std::string(call) + "(" + quote(name) + ")"; };
  if (!in_iteration_) {
    return failed_precondition(where() + " outside an iteration: call begin_iteration() first");
  }
  if (!fn) return invalid_argument(where() + ": empty closure");
  if (cost.count() < 0) {
    return invalid_argument(where() + ": negative cost " + std::to_string(cost.count()) + " ns");
  }
  return ok_status();
}

Status Engine::check_run(std::string_view name, const std::vector<TensorSpec>& outputs,
                         const OpFn& fn, std::chrono::nanoseconds cost) {
  EBB_RETURN_IF_ERROR(check_op("run", name, fn, cost));
  if (outputs.empty()) return invalid_argument("run(" + quote(name) + "): no outputs");
  run_output_bytes_.resize(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    run_output_bytes_[i] = tensor_bytes(outputs[i].shape, outputs[i].dtype);
    if (run_output_bytes_[i] == 0) {
      return invalid_argument(quote(name) + ": output " + std::to_string(i) + " " +
                              quote(outputs[i].name) + " has shape " +
                              shape_string(outputs[i].shape) +
                              "; every dimension must be > 0 and the shape non-empty");
    }
  }
  return ok_status();
}

Status Engine::resolve(std::string_view name, std::string_view role,
                       std::span<const Tensor> tensors, std::vector<std::uint32_t>& storage) {
  storage.reserve(storage.size() + tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    Result<std::uint32_t> slot = usable_slot(tensors[i], name, role);
    if (!slot.ok()) {
      // Again, for the message that says which one.
      return usable_slot(tensors[i], name, std::string(role) + " " + std::to_string(i)).status();
    }
    run_views_.push_back(*slot);
    storage.push_back(tensors_.storage(*slot));
  }
  return ok_status();
}

Status Engine::prepare_outputs(const std::shared_ptr<const OpCode>& code,
                               const std::vector<TensorSpec>& outputs,
                               std::chrono::nanoseconds cost) {
  const std::size_t inputs = run_pointers_.size();
  // Freed in compute-stream order (after the checked launches, if any).
  const auto free_outputs = [&] {
    for (std::size_t j = inputs; j < run_pointers_.size(); ++j) {
      (void)pager_->allocator().free(run_pointers_[j]);
    }
    run_pointers_.resize(inputs);
  };
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    // Described while the inputs are still locked, so the message tells them from pinned ones.
    Result<void*> block = pager_->allocate(
        run_output_bytes_[i], outputs[i].kind, outputs[i].name,
        [&] { return "op " + quote(code->name) + " (output " + quote(outputs[i].name) + ")"; },
        /*op_output=*/true);
    if (!block.ok()) {
      free_outputs();
      return block.status();
    }
    run_pointers_.push_back(*block);
  }
  if (options_.check_outputs) {
    Status checked =
        launcher_->check_outputs(code, run_pointers_, inputs, outputs, run_output_bytes_, cost);
    if (!checked.ok()) {
      free_outputs();
      return checked;
    }
  }
  return ok_status();
}

std::vector<Tensor> Engine::record_op(std::shared_ptr<const OpCode> code,
                                      std::vector<std::uint32_t> input_slots,
                                      std::vector<std::uint32_t> writes,
                                      std::vector<TensorSpec>& outputs,
                                      std::chrono::nanoseconds cost) {
  const auto op_index = static_cast<std::int32_t>(tape_.size());
  OpRecord op;
  op.name_id = tape_.intern(code->name);
  op.code = std::move(code);
  if (const std::int64_t last = tape_.name_stats(op.name_id).last_cost_ns; last > 0) {
    op.cost_ns = last;
  }
  op.given_cost = cost;
  if (cost.count() > 0) op.cost_ns = cost.count();
  std::vector<Tensor> result;
  result.reserve(outputs.size());
  op.outputs = tape_.take_slot_list();
  op.outputs.reserve(outputs.size());
  const std::size_t first_output = input_slots.size();
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    TensorRecord r;
    r.name = std::move(outputs[i].name);
    r.shape = std::move(outputs[i].shape);
    r.dtype = outputs[i].dtype;
    r.kind = outputs[i].kind;
    r.bytes = run_output_bytes_[i];
    r.residency = Residency::kDevice;
    r.device_ptr = run_pointers_[first_output + i];
    r.producer = op_index;
    const std::uint32_t slot = tensors_.add(std::move(r));
    tensors_.touch(slot);
    op.outputs.push_back(slot);
    result.emplace_back(this, tensors_.id_of(slot));
  }
  for (std::size_t i = 0; i < input_slots.size(); ++i) {
    tensors_.touch(input_slots[i]);
    // Counted once per op: consumers says how many tape ops need the tensor for a replay.
    if (std::find(input_slots.begin(), input_slots.begin() + i, input_slots[i]) ==
        input_slots.begin() + i) {
      ++tensors_.at(input_slots[i]).consumers;
    }
  }
  for (std::uint32_t slot : writes) tensors_.touch(slot);
  // run_views_ holds the slots as passed, inputs first: a view's offset is kept for replays.
  for (std::size_t i = 0; i < input_slots.size(); ++i) {
    const TensorRecord& passed = tensors_.at(run_views_[i]);
    if (!passed.is_view() || passed.base_offset == 0) continue;
    op.input_offsets.resize(input_slots.size(), 0);
    op.input_offsets[i] = passed.base_offset;
  }
  op.inputs = std::move(input_slots);
  op.writes = std::move(writes);
  tape_.push_back(std::move(op));
  return result;
}

Result<std::uint32_t> Engine::readable_slot(const Tensor& tensor, const char* what,
                                            std::size_t bytes) {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, what, "tensor"));
  const TensorRecord& r = tensors_.at(slot);
  if (bytes > r.bytes) {
    return invalid_argument(std::string(what) + " of " + std::to_string(bytes) +
                            " bytes from tensor " + quote(r.name) + " of " +
                            std::to_string(r.bytes) + " bytes");
  }
  return slot;
}

Status Engine::read(const Tensor& tensor, void* host, std::size_t bytes) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, readable_slot(tensor, "read", bytes));
  const TensorRecord& r = tensors_.at(slot);
  tensors_.advance();
  const std::uint32_t storage = tensors_.storage(slot);
  EBB_RETURN_IF_ERROR(pager_->make_resident(storage, "read " + quote(r.name)));
  tensors_.touch(storage);
  EBB_RETURN_IF_ERROR(launcher_->stream().copy_async(host, tensors_.device_ptr(slot), bytes,
                                                     CopyKind::kDeviceToHost));
  return synchronize();
}

Status Engine::write(const Tensor& tensor, const void* host, std::size_t bytes) {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "write", "tensor"));
  const TensorRecord& r = tensors_.at(slot);
  if (in_iteration_) {
    return failed_precondition("write of tensor " + quote(r.name) +
                               " inside an iteration: write() loads state between iterations");
  }
  if (bytes > r.bytes) {
    return invalid_argument("write of " + std::to_string(bytes) + " bytes into tensor " +
                            quote(r.name) + " of " + std::to_string(r.bytes) + " bytes");
  }
  tensors_.advance();
  const std::uint32_t storage[] = {tensors_.storage(slot)};
  const std::string op = "write " + quote(r.name);
  EBB_RETURN_IF_ERROR(pager_->settle_gathers_reading(storage));
  EBB_RETURN_IF_ERROR(pager_->lock_resident(storage, op));
  Status s = pager_->prepare_write(storage, op);
  if (s.ok()) {
    s = launcher_->stream().copy_async(tensors_.device_ptr(slot), host, bytes,
                                       CopyKind::kHostToDevice);
  }
  if (s.ok()) s = synchronize();
  pager_->unlock(storage);
  return s;
}

Status Engine::read_async(const Tensor& tensor, void* host, std::size_t bytes) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, readable_slot(tensor, "read_async", bytes));
  const TensorRecord& r = tensors_.at(slot);
  if (r.has_producer()) {
    return invalid_argument("read_async of tensor " + quote(r.name) +
                            ": made by an op of this iteration; read it with read()");
  }
  tensors_.advance();
  const std::uint32_t storage[] = {tensors_.storage(slot)};
  const std::string op = "read_async " + quote(r.name);
  // A finished copy no longer holds its tensor on the device; when the tensor does not fit
  // beside those still running, they finish first (each holds its source until it is done).
  EBB_RETURN_IF_ERROR(reap_reads(/*wait=*/false));
  Status locked = pager_->lock_resident(storage, op);
  if (locked.code() == StatusCode::kOutOfMemory && !pending_reads_.empty()) {
    EBB_RETURN_IF_ERROR(reap_reads(/*wait=*/true));
    locked = pager_->lock_resident(storage, op);
  }
  EBB_RETURN_IF_ERROR(locked);
  tensors_.touch(storage[0]);
  Result<std::shared_ptr<Transfer>> copy =
      transfers().copy_to_host(host, tensors_.device_ptr(slot), bytes, &launcher_->stream());
  if (!copy.ok()) {
    pager_->unlock(storage);
    return copy.status();
  }
  pending_reads_.emplace_back(storage[0], std::move(*copy));
  return ok_status();
}

Status Engine::wait_reads() { return reap_reads(/*wait=*/true); }

Status Engine::wait_read_of(std::uint32_t slot) {
  for (const auto& [pending, copy] : pending_reads_) {
    if (pending == slot) EBB_RETURN_IF_ERROR(copy->wait());
  }
  return ok_status();
}

Status Engine::reap_reads(bool wait) {
  Status first;
  std::erase_if(pending_reads_, [&](const auto& pending) {
    const auto& [slot, copy] = pending;
    if (!wait && !copy->done()) return false;
    keep_first(first, copy->wait());
    const std::uint32_t slots[] = {slot};
    pager_->unlock(slots);
    return true;
  });
  return first;
}

Status Engine::order_after_reads(std::span<const std::uint32_t> slots) {
  for (const auto& [slot, copy] : pending_reads_) {
    if (std::find(slots.begin(), slots.end(), slot) != slots.end()) {
      EBB_RETURN_IF_ERROR(transfers().stream_wait(launcher_->stream(), *copy));
    }
  }
  return ok_status();
}

Status Engine::replace_on_host(const Tensor& tensor, const void* host, std::size_t bytes) {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "replace_on_host", "tensor"));
  const TensorRecord& r = tensors_.at(slot);
  if (r.is_view() || bytes != r.bytes) {
    return invalid_argument("replace_on_host of tensor " + quote(r.name) + ": " +
                            std::to_string(bytes) + " bytes for a " +
                            (r.is_view() ? "view" : "tensor") + " of " + std::to_string(r.bytes) +
                            " bytes; it replaces a whole base tensor");
  }
  if (r.has_producer()) {
    return invalid_argument("replace_on_host of tensor " + quote(r.name) +
                            ": made by an op of this iteration; only carried state is replaced");
  }
  EBB_RETURN_IF_ERROR(wait_read_of(slot));
  tensors_.advance();
  const std::uint32_t storage[] = {slot};
  const std::string op = "replace_on_host " + quote(r.name);
  EBB_RETURN_IF_ERROR(pager_->prepare_write(storage, op));
  return pager_->replace_on_host(slot, host, bytes, op);
}

Result<bool> Engine::prefetch(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "prefetch", "tensor"));
  return pager_->prefetch(tensors_.storage(slot), TransferDeadline{}, 0);
}

Status Engine::release(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "release", "tensor"));
  TensorRecord& r = tensors_.at(slot);
  if (r.views > 0) {
    return failed_precondition("release: tensor " + quote(r.name) + " has " +
                               std::to_string(r.views) + " live views; release them first");
  }
  if (r.is_view()) {
    --tensors_.at(r.base).views;
    r.released = true;
    r.carried = false;
    return ok_status();
  }
  EBB_RETURN_IF_ERROR(wait_read_of(slot));
  if (in_iteration_ && profiler_->recording()) profiler_->on_release(tensors_, slot);
  r.released = true;
  r.carried = false;
  // A dropped tensor's replay may read r; the pager keeps its bytes while one can.
  pager_->release(slot);
  return ok_status();
}

Status Engine::discard(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "discard", "tensor"));
  const TensorRecord& r = tensors_.at(slot);
  if (r.is_view() || !r.carried) {
    return invalid_argument(
        "discard: tensor " + quote(r.name) +
        (r.is_view() ? " is a view; discard its base" : " is not carried (release it instead)"));
  }
  EBB_RETURN_IF_ERROR(wait_read_of(slot));
  return pager_->discard(slot, "discard");
}

Status Engine::make_gathered(const Tensor& tensor, std::span<const Tensor> sources,
                             GatherKernelFactory make, std::chrono::nanoseconds cost) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "make_gathered", "tensor"));
  auto recipe = std::make_shared<GatherRecipe>();
  for (std::size_t i = 0; i <= sources.size(); ++i) {
    const Tensor& t = i == sources.size() ? tensor : sources[i];
    EBB_ASSIGN_OR_RETURN(std::uint32_t s, usable_slot(t, "make_gathered", "tensor"));
    const TensorRecord& r = tensors_.at(s);
    if (r.is_view() || !r.carried) {
      return invalid_argument("make_gathered: tensor " + quote(r.name) +
                              (r.is_view() ? " is a view" : " is not carried"));
    }
    if (i < sources.size()) recipe->sources.push_back(s);
  }
  if (!make) {
    // An ordinary tensor again; whatever gather is in flight ends first.
    EBB_RETURN_IF_ERROR(pager_->settle_all_gathers());
    tensors_.at(slot).gather = nullptr;
    return ok_status();
  }
  if (cost.count() < 0) return invalid_argument("make_gathered: negative cost");
  recipe->make = std::move(make);
  recipe->cost = cost;
  tensors_.at(slot).gather = std::move(recipe);
  return ok_status();
}

Status Engine::gather(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "gather", "tensor"));
  if (tensors_.at(slot).gather == nullptr) {
    return invalid_argument("gather: tensor " + quote(tensors_.at(slot).name) +
                            " is not gathered (make_gathered)");
  }
  return pager_->start_gather(slot, "gather");
}

Status Engine::wait_gathers() { return pager_->settle_all_gathers(); }

Status Engine::call_op_hook(std::span<const Tensor> reads) {
  if (!op_hook_ || in_op_hook_ || !in_iteration_) return ok_status();
  in_op_hook_ = true;
  Status s = op_hook_(tape_.size(), reads);
  in_op_hook_ = false;
  return s;
}

Status Engine::keep(const Tensor& tensor) {
  EBB_ASSIGN_OR_RETURN(std::uint32_t slot, usable_slot(tensor, "keep", "tensor"));
  tensors_.at(slot).carried = true;
  return ok_status();
}

Status Engine::set_plan(const Plan& plan, const Profile& profile) {
  return executor_->set_plan(plan, profile, allocator().budget_bytes(), in_iteration_);
}

Status Engine::begin_iteration() {
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  if (in_iteration_) return failed_precondition("begin_iteration() inside an iteration");
  in_iteration_ = true;
  pager_->set_in_iteration(true);
  executor_->begin_iteration();
  if (profiler_->recording()) profiler_->on_begin_iteration(tensors_);
  return ok_status();
}

Status Engine::end_iteration() {
  if (!in_iteration_) return failed_precondition("end_iteration() without begin_iteration()");
  Status first = wait_reads();
  keep_first(first, rebuild_carried());
  keep_first(first, synchronize());
  pager_->account_gather_waits();
  keep_first(first, poll_timings(/*wait=*/true));
  // Every timing of the iteration has been read: the profiler can finish it.
  const bool was_recording = profiler_->recording();
  if (was_recording) profiler_->on_end_iteration(tensors_, tape_.ops(), first.ok());
  const bool profile_completed = was_recording && !profiler_->recording();
  retire_iteration();
  tape_.clear();
  in_iteration_ = false;
  pager_->set_in_iteration(false);
  keep_first(first, executor_->end_iteration(first.ok(), profile_completed));
  keep_first(first, launcher_->take_error());
  return first;
}

Status Engine::rebuild_carried() {
  Status first;
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    const TensorRecord& r = tensors_.at(slot);
    if (r.live && r.carried && !r.is_view() && r.residency == Residency::kDropped && !r.discarded) {
      keep_first(first, pager_->make_resident(slot, "end_iteration"));
    }
  }
  return first;
}

void Engine::retire_iteration() {
  tensors_.forget_retired();
  for (std::uint32_t slot = 0; slot < tensors_.slot_count(); ++slot) {
    TensorRecord& r = tensors_.at(slot);
    if (!r.live) continue;
    if (r.carried && (r.is_view() || r.residency != Residency::kDropped || r.discarded)) {
      r.producer = kNoProducer;
      r.consumers = 0;
      continue;
    }
    pager_->free_storage(slot);
    tensors_.retire(slot, /*remember_name=*/!r.released);
  }
}

Status Engine::synchronize() {
  Status transfers = pager_->synchronize_transfers();
  Status compute = launcher_->stream().synchronize();
  // Every kernel launched so far has run: their launch records can be reused.
  launcher_->recycle();
  EBB_RETURN_IF_ERROR(launcher_->take_error());
  EBB_RETURN_IF_ERROR(compute);
  return transfers;
}

Status Engine::poll_timings(bool wait) {
  return launcher_->drain_timings(
      [this](std::size_t op_index, std::int64_t ns) {
        OpRecord& op = tape_[op_index];
        if (op.given_cost.count() > 0) return;  // a given cost is not replaced by a measurement
        op.cost_ns = std::max<std::int64_t>(ns, 1);
        tape_.name_stats(op.name_id).last_cost_ns = op.cost_ns;
        if (profiler_->recording()) profiler_->on_timing(op_index, ns);
      },
      wait);
}

IterationScope::IterationScope(Engine& engine)
    : engine_(engine), begin_status_(engine.begin_iteration()) {}

IterationScope::~IterationScope() {
  if (!ended_ && begin_status_.ok()) {
    Status s = engine_.end_iteration();
    if (!s.ok()) engine_.launcher_->defer_error(std::move(s));
  }
}

Status IterationScope::end() {
  if (ended_ || !begin_status_.ok()) return begin_status_;
  ended_ = true;
  return engine_.end_iteration();
}

}  // namespace ebb
