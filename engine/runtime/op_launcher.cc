#include "engine/runtime/op_launcher.h"

#include <string>
#include <utility>

namespace ebb {

OpLauncher::OpLauncher(Device& device, Stream& compute)
    : compute_(compute),
      events_(device),
      timer_(events_),
      closure_errors_(std::make_shared<ClosureErrors>()) {}

OpLauncher::~OpLauncher() {
  // Queued kernels read the launch records and the error slot.
  (void)compute_.synchronize();
}

void OpLauncher::run_closure(const OpCode& code, std::span<void* const> all, std::size_t inputs,
                             const LaunchContext& context, ClosureErrors* errors) {
  const OpArgs args{std::span<const void* const>(all.data(), inputs), all.subspan(inputs), context};
  std::string failure;
  try {
    code.fn(args);
    return;
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "an exception not derived from std::exception";
  }
  std::lock_guard<std::mutex> lock(errors->mu);
  if (errors->first.ok()) {
    errors->first = internal_error("op " + quote(code.name) + " threw: " + failure);
  }
  errors->any.store(true, std::memory_order_release);
}

Kernel OpLauncher::closure_kernel(std::shared_ptr<const OpCode> code,
                                  std::span<void* const> pointers, std::size_t inputs) {
  ClosureErrors* errors = closure_errors_.get();  // outlives the queued work (see ~OpLauncher)
  return [code = std::move(code), pointers = LaunchPointers(pointers), inputs,
          errors](const LaunchContext& context) {
    run_closure(*code, pointers.all(), inputs, context, errors);
  };
}

Kernel OpLauncher::tape_kernel(const OpRecord& op, std::span<void* const> pointers) {
  Launch launch{op.code.get(), LaunchPointers(pointers), op.inputs.size()};
  if (launches_used_ == launches_.size()) {
    launches_.push_back(std::make_unique<Launch>(std::move(launch)));
  } else {
    *launches_[launches_used_] = std::move(launch);
  }
  const Launch* record = launches_[launches_used_++].get();
  ClosureErrors* errors = closure_errors_.get();  // outlives the queued work (see ~OpLauncher)
  return [record, errors](const LaunchContext& context) {
    run_closure(*record->code, record->pointers.all(), record->inputs, context, errors);
  };
}

Status OpLauncher::launch(const Tape& tape, std::size_t op_index, std::span<void* const> pointers,
                          bool timed) {
  const OpRecord& op = tape[op_index];
  // Replays launch ops again without bound when eviction thrashes: past a multiple of the
  // tape's ops, wait for the stream and reuse the records, so they stay O(ops).
  if (launches_used_ >= launch_record_limit(tape.size())) {
    EBB_RETURN_IF_ERROR(compute_.synchronize());
    recycle();
  }
  const OpTimer::Timing timing = timed ? timer_.begin(op_index) : OpTimer::Timing{};
  if (timing.start != nullptr) {
    if (Status s = compute_.record(*timing.start); !s.ok()) {
      timer_.abandon_last();
      return s;
    }
  }
  Status launched = compute_.launch(tape_kernel(op, pointers), op.given_cost);
  if (timing.end != nullptr) {
    Status recorded = launched.ok() ? compute_.record(*timing.end) : launched;
    if (!recorded.ok()) {
      // The start event may be recorded already; waiting for it keeps the pool consistent.
      (void)timing.start->synchronize();
      timer_.abandon_last();
      return recorded;
    }
  }
  return launched;
}

Status OpLauncher::check_outputs(const std::shared_ptr<const OpCode>& code,
                                 std::span<void* const> pointers, std::size_t inputs,
                                 std::span<const TensorSpec> outputs,
                                 std::span<const std::size_t> output_bytes,
                                 std::chrono::nanoseconds cost) {
  constexpr std::uint8_t kPatterns[2] = {0xA5, 0x5A};
  std::vector<std::vector<std::uint8_t>> copies[2];
  for (int run = 0; run < 2; ++run) {
    copies[run].resize(outputs.size());
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      EBB_RETURN_IF_ERROR(
          compute_.memset_async(pointers[inputs + i], kPatterns[run], output_bytes[i]));
    }
    EBB_RETURN_IF_ERROR(compute_.launch(closure_kernel(code, pointers, inputs), cost));
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      copies[run][i].resize(output_bytes[i]);
      EBB_RETURN_IF_ERROR(compute_.copy_async(copies[run][i].data(), pointers[inputs + i],
                                              output_bytes[i], CopyKind::kDeviceToHost));
    }
  }
  EBB_RETURN_IF_ERROR(compute_.synchronize());
  EBB_RETURN_IF_ERROR(take_error());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::vector<std::uint8_t>& a = copies[0][i];
    const std::vector<std::uint8_t>& b = copies[1][i];
    std::size_t first = a.size();
    std::size_t differing = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
      if (a[k] != b[k]) {
        if (differing == 0) first = k;
        ++differing;
      }
    }
    if (differing > 0) {
      return failed_precondition(
          "op " + quote(code->name) + " (check_outputs): output " + std::to_string(i) + " " +
          quote(outputs[i].name) + " differs between two runs on poisoned outputs from byte " +
          std::to_string(first) + ", " + std::to_string(differing) + " of " +
          std::to_string(a.size()) +
          " bytes differ: the closure leaves them unwritten or is not deterministic");
    }
  }
  return ok_status();
}

Status OpLauncher::take_error() {
  if (!deferred_.ok()) return std::exchange(deferred_, ok_status());
  if (!closure_errors_->any.load(std::memory_order_acquire)) return ok_status();
  std::lock_guard<std::mutex> lock(closure_errors_->mu);
  closure_errors_->any.store(false, std::memory_order_relaxed);
  return std::exchange(closure_errors_->first, ok_status());
}

void OpLauncher::defer_error(Status error) {
  if (deferred_.ok()) deferred_ = std::move(error);
}

}  // namespace ebb
