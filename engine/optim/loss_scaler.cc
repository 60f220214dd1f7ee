#include "engine/optim/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

namespace ebb {

Result<LossScaler> LossScaler::create(const LossScalerOptions& o) {
  if (!(o.growth_factor > 1) || !(o.backoff_factor > 0 && o.backoff_factor < 1) ||
      o.growth_interval < 1 || !(o.min_scale > 0) || !(o.initial_scale >= o.min_scale)) {
    return invalid_argument("loss scaler: growth factor " + std::to_string(o.growth_factor) +
                            " (> 1), backoff " + std::to_string(o.backoff_factor) +
                            " (in (0, 1)), growth interval " + std::to_string(o.growth_interval) +
                            " (>= 1), min scale " + std::to_string(o.min_scale) +
                            " (> 0, <= the initial scale " + std::to_string(o.initial_scale) + ")");
  }
  return LossScaler(o);
}

Status LossScaler::update(bool found_nonfinite) {
  if (found_nonfinite) {
    ++skipped_;
    growth_tracker_ = 0;
    scale_ *= options_.backoff_factor;
    if (scale_ < options_.min_scale) {
      return failed_precondition(
          "loss scale fell to " + std::to_string(scale_) + ", below the minimum " +
          std::to_string(options_.min_scale) +
          ": the fp16 gradients overflow however small the scale (" + std::to_string(skipped_) +
          " steps skipped so far); try bf16, a lower learning rate, or gradient "
          "clipping");
    }
    return ok_status();
  }
  if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  return ok_status();
}

void LossScaler::restore(float scale, int growth_tracker, std::int64_t skipped) {
  scale_ = scale;
  growth_tracker_ = growth_tracker;
  skipped_ = skipped;
}

float scheduled_learning_rate(int step, int total_steps, float peak, int warmup_steps,
                              float min_lr) {
  if (warmup_steps > 0 && step <= warmup_steps) {
    return peak * static_cast<float>(step) / static_cast<float>(warmup_steps);
  }
  const int decay_steps = total_steps - warmup_steps;
  if (decay_steps <= 1) return peak;
  const double progress = std::clamp(
      static_cast<double>(step - warmup_steps - 1) / static_cast<double>(decay_steps - 1), 0.0,
      1.0);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return static_cast<float>(min_lr + (peak - min_lr) * cosine);
}

}  // namespace ebb
