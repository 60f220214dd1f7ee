#include "tools/train/model_flops.h"

namespace ebb::train {

double model_flops_per_token(const GptConfig& config) {
  const double parameters = static_cast<double>(parameter_count(config));
  const double attention = 12.0 * config.layers * static_cast<double>(config.d_model) * config.seq;
  return 6.0 * parameters + attention;
}

double model_flops_utilisation(const GptConfig& config, double tokens_per_s,
                               double peak_flops_per_s) {
  return tokens_per_s * model_flops_per_token(config) / peak_flops_per_s;
}

}  // namespace ebb::train
