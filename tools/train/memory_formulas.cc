#include "tools/train/memory_formulas.h"

#include "allocator/caching_allocator.h"
#include "engine/optim/precision.h"
#include "engine/schema/tensor_kind.h"

namespace ebb::train {

double zero_paper_model_state_bytes(double parameters, int ranks, int stage, double k) {
  const double n = static_cast<double>(ranks);
  const double params = 2 * parameters / (stage >= 3 ? n : 1.0);
  const double grads = 2 * parameters / (stage >= 2 ? n : 1.0);
  const double state = k * parameters / (stage >= 1 ? n : 1.0);
  return params + grads + state;
}

double deepspeed_zero2_model_state_bytes(double parameters, int gpus) {
  return 2 * parameters + 18 * parameters / static_cast<double>(gpus);
}

double deepspeed_zero3_model_state_bytes(double parameters, double largest_layer_parameters,
                                         int gpus) {
  return 4 * largest_layer_parameters + 18 * parameters / static_cast<double>(gpus);
}

double korthikanti_activation_bytes_per_layer(double seq, double batch, double width,
                                              double heads) {
  return 34 * seq * batch * width + 5 * heads * seq * seq * batch;
}

std::vector<ActivationTerm> block_activation_terms(const TrainOptions& options) {
  const GptConfig& c = options.model;
  const std::size_t e = dtype_bytes(precision_dtype(options.precision));
  const std::size_t rows = static_cast<std::size_t>(c.batch) * static_cast<std::size_t>(c.seq);
  const std::size_t h = static_cast<std::size_t>(c.d_model);
  const std::size_t att = static_cast<std::size_t>(c.batch) * static_cast<std::size_t>(c.heads) *
                          static_cast<std::size_t>(c.seq) * static_cast<std::size_t>(c.seq);
  const std::size_t stat = rows * sizeof(float);
  const auto term = [](std::string tensor, std::size_t bytes, std::string formula,
                       std::string korthikanti) {
    return ActivationTerm{std::move(tensor), round_block_bytes(bytes), std::move(formula),
                          std::move(korthikanti)};
  };
  return {
      term("x (block input)", rows * h * e, "2sbh", "LayerNorm input, part of 4sbh"),
      term("ln1.out", rows * h * e, "2sbh", "QKV input 2sbh"),
      term("ln1.mean", stat, "4sb (fp32)", "not counted"),
      term("ln1.rstd", stat, "4sb (fp32)", "not counted"),
      term("qkv", rows * 3 * h * e, "6sbh", "Q and K 4sbh, V 2sbh"),
      term("attention.att", att * e, "2as^2b", "softmax output 2as^2b"),
      term("attention.out", rows * h * e, "2sbh", "projection input 2sbh"),
      term("res2", rows * h * e, "2sbh", "LayerNorm input, part of 4sbh"),
      term("ln2.out", rows * h * e, "2sbh", "MLP input 2sbh"),
      term("ln2.mean", stat, "4sb (fp32)", "not counted"),
      term("ln2.rstd", stat, "4sb (fp32)", "not counted"),
      term("fc", rows * 4 * h * e, "8sbh", "GeLU input 8sbh"),
      term("gelu", rows * 4 * h * e, "8sbh", "second linear's input 8sbh"),
  };
}

std::size_t block_activation_bytes(const TrainOptions& options) {
  std::size_t total = 0;
  for (const ActivationTerm& t : block_activation_terms(options)) total += t.bytes;
  return total;
}

}  // namespace ebb::train
