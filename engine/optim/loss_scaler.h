// LossScaler: dynamic loss scaling for fp16 training, with PyTorch GradScaler's defaults: the
// loss (its gradient) is multiplied by the scale before backward, so that small gradients do not
// flush to zero in fp16, and the gradients are divided by it before the update. A step whose
// gradients hold an infinity or a NaN is skipped and the scale backs off; after growth_interval
// steps in a row without one, the scale grows. A scale that falls below min_scale means the
// gradients overflow however small the scale: the run stops with an error saying so.
//
// Thread safety: a plain value.
#pragma once

#include <cstdint>

#include "kernels/status.h"

namespace ebb {

struct LossScalerOptions {
  float initial_scale = 65536.0F;  // 2^16, GradScaler's init_scale
  float growth_factor = 2.0F;
  float backoff_factor = 0.5F;
  int growth_interval = 2000;
  // Below this the run stops: at 1 the loss is no longer scaled up at all, and the gradients
  // still overflow fp16.
  float min_scale = 1.0F;
};

class LossScaler {
 public:
  // kInvalidArgument for factors or intervals out of range (growth > 1, 0 < backoff < 1,
  // interval >= 1, 0 < min_scale <= initial_scale).
  static Result<LossScaler> create(const LossScalerOptions& options);

  float scale() const { return scale_; }
  // After a step's gradients were checked: skips (found_nonfinite) back the scale off, clean
  // steps count towards growth. kFailedPrecondition when the scale falls below min_scale, naming
  // both.
  Status update(bool found_nonfinite);
  std::int64_t skipped_steps() const { return skipped_; }
  int growth_tracker() const { return growth_tracker_; }
  // For resuming from a checkpoint: the state update() changes.
  void restore(float scale, int growth_tracker, std::int64_t skipped);

 private:
  explicit LossScaler(const LossScalerOptions& options)
      : options_(options), scale_(options.initial_scale) {}

  LossScalerOptions options_;
  float scale_;
  int growth_tracker_ = 0;
  std::int64_t skipped_ = 0;
};

// The learning rate at `step` (from 1) of `total_steps`: linear warm-up from peak / warmup to
// the peak over the first `warmup_steps` steps, then cosine decay to `min_lr` at the last step
// (the schedule of GPT-2-style training; llm.c's). With no warm-up it starts at the peak.
float scheduled_learning_rate(int step, int total_steps, float peak, int warmup_steps,
                              float min_lr);

}  // namespace ebb
