#include "tools/train/gpt_model.h"

#include <cmath>
#include <limits>
#include <string>

#include "engine/nn_ops.h"
#include "tools/train/op_work.h"
#include "tools/train/rng.h"

namespace ebb::train {
namespace {

// Parameter indices in parameter_shapes() order.
constexpr std::size_t kWte = 0;
constexpr std::size_t kWpe = 1;
constexpr std::size_t kBlockBase = 2;
constexpr std::size_t kPerBlock = 12;
enum BlockParam : std::size_t {
  kLn1W,
  kLn1B,
  kQkvW,
  kQkvB,
  kAttprojW,
  kAttprojB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcprojW,
  kFcprojB,
};

// What one block's forward saves for its backward.
struct BlockSaved {
  Tensor x;  // the block's input (the residual stream)
  ops::LayerNormOut ln1;
  Tensor qkv;
  ops::AttentionOut attn;
  Tensor res2;  // x + attention
  ops::LayerNormOut ln2;
  Tensor fch, fch_gelu;
};

}  // namespace

std::vector<ParameterDecl> parameter_decls(const GptConfig& config) {
  std::vector<ParameterDecl> decls;
  const int final_key = config.layers;
  for (const ParameterShape& p : parameter_shapes(config)) {
    ParameterDecl d{.name = p.name, .shape = p.shape};
    // GPT-2's convention: weight decay on the block matrices only; the embeddings (the token
    // one doubles as the output head), biases and LayerNorm gains take none.
    const bool block_matrix = p.shape.size() == 2 && p.name.front() == 'h';
    d.group = block_matrix ? ParameterGroup::kDecay : ParameterGroup::kNoDecay;
    // One slice per block ("hL." names), the embeddings and the final LayerNorm their own.
    if (p.name.front() == 'h') {
      d.slice_key = std::stoi(p.name.substr(1, p.name.find('.') - 1));
    } else {
      d.slice_key = p.name.starts_with("ln") ? final_key : -1;
    }
    decls.push_back(std::move(d));
  }
  return decls;
}

Result<std::unique_ptr<GptModel>> GptModel::create(Engine& engine, const GptConfig& config,
                                                   std::uint64_t seed,
                                                   const GptTraining& training) {
  EBB_RETURN_IF_ERROR(validate_config(config));
  if (engine.in_iteration()) {
    return failed_precondition(
        "GptModel::create inside an iteration: parameters are created "
        "outside one so that they are carried");
  }
  std::unique_ptr<GptModel> model(new GptModel(engine, config));
  model->kernel_time_ = training.kernel_time;
  SplitMix64 rng(seed);
  const double std_dev = 0.02;
  const double residual_std = 0.02 / std::sqrt(2.0 * config.layers);
  // A sim device's memory holds no values: no initial values are drawn or written.
  std::vector<std::vector<float>> initial;
  for (const ParameterShape& p : parameter_shapes(config)) {
    if (model->simulated()) break;
    std::int64_t n = 1;
    for (std::int64_t d : p.shape) n *= d;
    std::vector<float> host(static_cast<std::size_t>(n), 0.0F);
    switch (p.init) {
      case ParameterShape::Init::kNormal:
        for (float& x : host) x = static_cast<float>(rng.normal() * std_dev);
        break;
      case ParameterShape::Init::kScaledNormal:
        for (float& x : host) x = static_cast<float>(rng.normal() * residual_std);
        break;
      case ParameterShape::Init::kOnes:
        for (float& x : host) x = 1.0F;
        break;
      case ParameterShape::Init::kZeros:
        break;
    }
    initial.push_back(std::move(host));
  }
  ModelStateOptions options{.precision = training.precision,
                            .grad_dtype = training.grad_dtype,
                            .placement = training.placement};
  if (training.micro_batches < 1) {
    return invalid_argument("model: " + std::to_string(training.micro_batches) +
                            " micro-batches per step; at least 1");
  }
  // Every parameter's gradient is accumulated once per micro-batch, wte's twice: the embedding's
  // part and the tied head's.
  options.accumulations.assign(parameter_decls(config).size(), training.micro_batches);
  options.accumulations[kWte] = 2 * training.micro_batches;
  if (!training.zero_stage.has_value()) {
    EBB_ASSIGN_OR_RETURN(model->state_,
                         ModelState::create(engine, parameter_decls(config), options, initial));
    EBB_ASSIGN_OR_RETURN(
        model->optimizer_,
        Optimizer::create(engine, *model->state_, training.optimizer, training.offload));
    model->set_optimizer_costs(*model->optimizer_, training);
    return model;
  }
  if (training.comm == nullptr) return invalid_argument("ZeRO without a communicator");
  const int stage = *training.zero_stage;
  ZeroOptions zero{.stage = stage,
                   .bucket_bytes = training.zero_bucket_bytes,
                   .placement = {},
                   .offload = training.offload,
                   .gather_comm = training.gather_comm,
                   .gather_policy = training.gather_policy};
  if (stage >= 1) {
    zero.placement = std::move(options.placement);
    options.placement.clear();
  }
  EBB_ASSIGN_OR_RETURN(options, zero_model_state_options(options, training.comm->size(), stage));
  EBB_ASSIGN_OR_RETURN(model->state_,
                       ModelState::create(engine, parameter_decls(config), options, initial));
  EBB_ASSIGN_OR_RETURN(
      model->zero_,
      ZeroOptimizer::create(engine, *model->state_, training.optimizer, *training.comm, zero));
  model->set_optimizer_costs(model->zero_->optimizer(), training);
  return model;
}

void GptModel::set_optimizer_costs(Optimizer& optimizer, const GptTraining& training) {
  if (kernel_time_) {
    // AdamW's traffic; Adafactor's and SM3's factored state moves less, so for them it is an
    // upper bound.
    const DType param = state_->param_dtype();
    const DType grad = state_->grad_dtype();
    optimizer.set_update_cost([this, param, grad](std::int64_t elements) {
      return cost(adamw_work(elements, param, grad));
    });
  }
  if (training.host_step_cost) optimizer.set_host_step_cost(training.host_step_cost);
}

GptModel::~GptModel() {
  // The optimizer's state before the model state it was made for.
  zero_.reset();
  optimizer_.reset();
  state_.reset();
}

Result<std::vector<float>> GptModel::parameters_to_host() {
  if (simulated()) {
    return failed_precondition("the parameters of a model on a sim device hold no values to read");
  }
  return state_->masters_to_host();
}

std::chrono::nanoseconds GptModel::cost(const KernelWork& work) const {
  return kernel_time_ ? kernel_time_(work) : std::chrono::nanoseconds(0);
}

std::size_t GptModel::parameter_bytes() const {
  return static_cast<std::size_t>(parameter_count(config_)) * dtype_bytes(state_->param_dtype());
}

Result<StepOutcome> GptModel::step(std::span<const std::vector<std::int32_t>> inputs,
                                   std::span<const std::vector<std::int32_t>> targets,
                                   const StepControl& control) {
  const std::int64_t n = static_cast<std::int64_t>(config_.batch) * config_.seq;
  if (inputs.empty() || inputs.size() != targets.size()) {
    return invalid_argument("step: " + std::to_string(inputs.size()) + " input and " +
                            std::to_string(targets.size()) +
                            " target micro-batches; expected the same number, at least 1");
  }
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (static_cast<std::int64_t>(inputs[k].size()) != n ||
        static_cast<std::int64_t>(targets[k].size()) != n) {
      return invalid_argument("step: micro-batch " + std::to_string(k) + " has " +
                              std::to_string(inputs[k].size()) + " inputs and " +
                              std::to_string(targets[k].size()) +
                              " targets, expected batch * seq = " + std::to_string(n));
    }
  }
  IterationScope iteration(engine_);
  EBB_RETURN_IF_ERROR(iteration.status());
  Result<StepOutcome> outcome = accumulate_and_update(inputs, targets, control);
  Status ended = iteration.end();
  EBB_RETURN_IF_ERROR(outcome.status());
  EBB_RETURN_IF_ERROR(ended);
  return outcome;
}

Result<StepOutcome> GptModel::accumulate_and_update(
    std::span<const std::vector<std::int32_t>> inputs,
    std::span<const std::vector<std::int32_t>> targets, const StepControl& control) {
  const std::vector<std::int64_t> shape{config_.batch, config_.seq};
  const auto micro = static_cast<float>(inputs.size());
  const float n = static_cast<float>(config_.batch) * static_cast<float>(config_.seq);
  // d(loss)/d(each token's loss): the step's loss is the mean over micro-batches of their means,
  // scaled for fp16 so that small gradients survive.
  const float dloss = control.loss_scale / (n * micro);
  state_->begin_step();
  StepOutcome outcome;
  // Each micro-batch's loss (one float) is read after the last one, so that the host does not
  // wait for the device between micro-batches.
  std::vector<Tensor> losses;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    // On sim the token tensors are made without an upload (zeros): there is nothing to read.
    EBB_ASSIGN_OR_RETURN(Tensor tokens, engine_.input({"tokens", shape, DType::kI32},
                                                      simulated() ? nullptr : inputs[k].data()));
    EBB_ASSIGN_OR_RETURN(Tensor target, engine_.input({"targets", shape, DType::kI32},
                                                      simulated() ? nullptr : targets[k].data()));
    EBB_ASSIGN_OR_RETURN(Tensor loss, forward_backward(tokens, target, dloss));
    losses.push_back(loss);
    for (const Tensor& t : {tokens, target}) EBB_RETURN_IF_ERROR(engine_.release(t));
  }
  // On sim nothing computed the loss: it is not read, and is NaN.
  if (simulated()) outcome.loss = std::numeric_limits<float>::quiet_NaN();
  for (const Tensor& loss : losses) {
    float host_loss = 0;
    if (!simulated()) EBB_RETURN_IF_ERROR(engine_.read(loss, &host_loss, sizeof(host_loss)));
    outcome.loss += host_loss / micro;
    EBB_RETURN_IF_ERROR(engine_.release(loss));
  }
  float grad_scale = 1.0F / control.loss_scale;
  // The gradient norm needs the gradients' values, which a sim device does not have.
  if (simulated() && (control.skip_nonfinite || control.clip_norm > 0)) {
    return failed_precondition(
        "step: clipping and fp16's overflow check read the gradient norm, which a sim device "
        "does not compute (leave out --clip-grad-norm; use fp32 or bf16)");
  }
  if (control.skip_nonfinite || control.clip_norm > 0) {
    EBB_ASSIGN_OR_RETURN(GradientStats stats, zero_ != nullptr
                                                  ? zero_->gradient_stats(grad_scale)
                                                  : gradient_stats(engine_, *state_, grad_scale));
    outcome.grad_norm = stats.norm();
    if (control.skip_nonfinite && stats.nonfinite > 0) {
      outcome.skipped = true;
      return outcome;
    }
    // PyTorch's clip_grad_norm_: scale by C / (norm + 1e-6) when that is below 1.
    if (control.clip_norm > 0) {
      const float clip = control.clip_norm / (outcome.grad_norm + 1e-6F);
      if (clip < 1.0F) grad_scale *= clip;
    }
  }
  EBB_RETURN_IF_ERROR(
      zero_ != nullptr
          ? zero_->step(control.optimizer_step, control.learning_rate, grad_scale)
          : optimizer_->step(control.optimizer_step, control.learning_rate, grad_scale));
  return outcome;
}

Result<Tensor> GptModel::forward_backward(const Tensor& tokens, const Tensor& targets,
                                          float dloss) {
  const int B = config_.batch;
  const int T = config_.seq;
  const int NH = config_.heads;
  const int V = config_.vocab;
  const int L = config_.layers;
  const std::int64_t C = config_.d_model;
  const std::int64_t N = static_cast<std::int64_t>(B) * T;
  const ModelState& state = *state_;
  const DType act = state.param_dtype();  // activations and working parameters
  const DType grad = state.grad_dtype();
  auto param = [&](std::size_t i) -> const Tensor& { return state.param(i); };
  auto block_param = [&](int l, BlockParam p) -> const Tensor& {
    return param(kBlockBase + static_cast<std::size_t>(l) * kPerBlock + p);
  };
  const std::size_t lnf_w = kBlockBase + static_cast<std::size_t>(L) * kPerBlock;
  const std::size_t lnf_b = lnf_w + 1;
  auto release = [&](std::initializer_list<Tensor> tensors) -> Status {
    for (const Tensor& t : tensors) EBB_RETURN_IF_ERROR(engine_.release(t));
    return ok_status();
  };

  // ---- forward ----
  EBB_ASSIGN_OR_RETURN(Tensor x, ops::embedding(engine_, "embedding", tokens, param(kWte),
                                                param(kWpe), cost(embedding_work(B, T, C, act))));
  std::vector<BlockSaved> saved(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    BlockSaved& s = saved[static_cast<std::size_t>(l)];
    s.x = x;
    EBB_ASSIGN_OR_RETURN(
        s.ln1, ops::layernorm(engine_, h + "ln1", x, block_param(l, kLn1W), block_param(l, kLn1B),
                              cost(layernorm_work(N, C, act))));
    EBB_ASSIGN_OR_RETURN(
        s.qkv, ops::matmul(engine_, h + "qkv", s.ln1.out, block_param(l, kQkvW),
                           &block_param(l, kQkvB), cost(matmul_work(N, C, 3 * C, true, act))));
    EBB_ASSIGN_OR_RETURN(s.attn, ops::attention(engine_, h + "attention", s.qkv, B, T, NH,
                                                cost(attention_work(B, T, C, NH, act))));
    EBB_ASSIGN_OR_RETURN(
        Tensor attproj,
        ops::matmul(engine_, h + "attproj", s.attn.out, block_param(l, kAttprojW),
                    &block_param(l, kAttprojB), cost(matmul_work(N, C, C, true, act))));
    EBB_ASSIGN_OR_RETURN(s.res2, ops::add(engine_, h + "res2", x, attproj, TensorKind::kActivation,
                                          cost(add_work(N * C, act))));
    EBB_RETURN_IF_ERROR(release({attproj}));
    EBB_ASSIGN_OR_RETURN(s.ln2,
                         ops::layernorm(engine_, h + "ln2", s.res2, block_param(l, kLn2W),
                                        block_param(l, kLn2B), cost(layernorm_work(N, C, act))));
    EBB_ASSIGN_OR_RETURN(
        s.fch, ops::matmul(engine_, h + "fc", s.ln2.out, block_param(l, kFcW),
                           &block_param(l, kFcB), cost(matmul_work(N, C, 4 * C, true, act))));
    EBB_ASSIGN_OR_RETURN(s.fch_gelu,
                         ops::gelu(engine_, h + "gelu", s.fch, cost(gelu_work(N * 4 * C, act))));
    EBB_ASSIGN_OR_RETURN(
        Tensor fcproj,
        ops::matmul(engine_, h + "fcproj", s.fch_gelu, block_param(l, kFcprojW),
                    &block_param(l, kFcprojB), cost(matmul_work(N, 4 * C, C, true, act))));
    EBB_ASSIGN_OR_RETURN(x, ops::add(engine_, h + "res3", s.res2, fcproj, TensorKind::kActivation,
                                     cost(add_work(N * C, act))));
    EBB_RETURN_IF_ERROR(release({fcproj}));
  }
  EBB_ASSIGN_OR_RETURN(ops::LayerNormOut lnf,
                       ops::layernorm(engine_, "lnf", x, param(lnf_w), param(lnf_b),
                                      cost(layernorm_work(N, C, act))));
  EBB_ASSIGN_OR_RETURN(Tensor logits,
                       ops::matmul(engine_, "logits", lnf.out, param(kWte),
                                   /*bias=*/nullptr, cost(matmul_work(N, C, V, false, act))));
  EBB_ASSIGN_OR_RETURN(ops::CrossEntropyOut xent,
                       ops::softmax_cross_entropy(engine_, "cross_entropy", logits, targets,
                                                  cost(cross_entropy_work(N, V, act))));
  EBB_RETURN_IF_ERROR(release({logits}));
  EBB_ASSIGN_OR_RETURN(Tensor loss, ops::mean(engine_, "loss", xent.losses, cost(mean_work(N))));
  EBB_RETURN_IF_ERROR(release({xent.losses}));

  // ---- backward: weight and bias gradients (fp32) go into the gradient buffers at once ----
  auto accumulate = [&](std::size_t i, const Tensor& g) -> Status {
    const auto elements = static_cast<std::int64_t>(g.bytes() / sizeof(float));  // f32
    EBB_RETURN_IF_ERROR(state_->accumulate(i, g, cost(accumulate_work(elements, grad))));
    return engine_.release(g);
  };
  EBB_ASSIGN_OR_RETURN(Tensor dlogits, ops::softmax_cross_entropy_backward(
                                           engine_, "cross_entropy_backward", xent.probs, targets,
                                           dloss, cost(cross_entropy_backward_work(N, V, act))));
  EBB_RETURN_IF_ERROR(release({xent.probs}));
  EBB_ASSIGN_OR_RETURN(
      ops::MatmulGrads dhead,
      ops::matmul_backward(engine_, "logits_backward", dlogits, lnf.out, param(kWte),
                           /*has_bias=*/false, cost(matmul_backward_work(N, C, V, false, act))));
  EBB_RETURN_IF_ERROR(release({dlogits, lnf.out}));
  EBB_ASSIGN_OR_RETURN(
      ops::LayerNormGrads dlnf,
      ops::layernorm_backward(engine_, "lnf_backward", dhead.dinp, x, param(lnf_w), lnf.mean,
                              lnf.rstd, cost(layernorm_backward_work(N, C, act))));
  EBB_RETURN_IF_ERROR(release({dhead.dinp, lnf.mean, lnf.rstd, x}));
  EBB_RETURN_IF_ERROR(accumulate(kWte, dhead.dweight));  // the tied head's part of wte's
  EBB_RETURN_IF_ERROR(accumulate(lnf_w, dlnf.dweight));
  EBB_RETURN_IF_ERROR(accumulate(lnf_b, dlnf.dbias));
  Tensor dx = dlnf.dinp;

  for (int l = L - 1; l >= 0; --l) {
    const std::string h = "h" + std::to_string(l) + ".";
    const BlockSaved& s = saved[static_cast<std::size_t>(l)];
    const std::size_t base = kBlockBase + static_cast<std::size_t>(l) * kPerBlock;
    // Runs the backward of the block's matmul `name` (weight w, bias w + 1) and accumulates the
    // weight and bias gradients.
    auto matmul_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                               BlockParam w) -> Result<Tensor> {
      EBB_ASSIGN_OR_RETURN(
          ops::MatmulGrads g,
          ops::matmul_backward(
              engine_, h + name + "_backward", dout, in, param(base + w),
              /*has_bias=*/true,
              cost(matmul_backward_work(N, in.shape().back(), dout.shape().back(), true, act))));
      EBB_RETURN_IF_ERROR(accumulate(base + w, g.dweight));
      EBB_RETURN_IF_ERROR(accumulate(base + w + 1, g.dbias));
      return g.dinp;
    };
    auto layernorm_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                                  BlockParam w, const ops::LayerNormOut& ln) -> Result<Tensor> {
      EBB_ASSIGN_OR_RETURN(
          ops::LayerNormGrads g,
          ops::layernorm_backward(engine_, h + name + "_backward", dout, in, param(base + w),
                                  ln.mean, ln.rstd, cost(layernorm_backward_work(N, C, act))));
      EBB_RETURN_IF_ERROR(accumulate(base + w, g.dweight));
      EBB_RETURN_IF_ERROR(accumulate(base + w + 1, g.dbias));
      return g.dinp;
    };
    // MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dx is d(res3).
    EBB_ASSIGN_OR_RETURN(Tensor dfcproj, matmul_backward("fcproj", dx, s.fch_gelu, kFcprojW));
    EBB_RETURN_IF_ERROR(release({s.fch_gelu}));
    EBB_ASSIGN_OR_RETURN(Tensor dfch,
                         ops::gelu_backward(engine_, h + "gelu_backward", s.fch, dfcproj,
                                            cost(gelu_backward_work(N * 4 * C, act))));
    EBB_RETURN_IF_ERROR(release({s.fch, dfcproj}));
    EBB_ASSIGN_OR_RETURN(Tensor dfc, matmul_backward("fc", dfch, s.ln2.out, kFcW));
    EBB_RETURN_IF_ERROR(release({dfch, s.ln2.out}));
    EBB_ASSIGN_OR_RETURN(Tensor dln2, layernorm_backward("ln2", dfc, s.res2, kLn2W, s.ln2));
    EBB_RETURN_IF_ERROR(release({dfc, s.res2, s.ln2.mean, s.ln2.rstd}));
    EBB_ASSIGN_OR_RETURN(Tensor dres2, ops::add(engine_, h + "dres2", dx, dln2,
                                                TensorKind::kGradient, cost(add_work(N * C, act))));
    EBB_RETURN_IF_ERROR(release({dx, dln2}));
    // Attention: res2 = x + attproj(attention(qkv(ln1(x)))).
    EBB_ASSIGN_OR_RETURN(Tensor dattproj, matmul_backward("attproj", dres2, s.attn.out, kAttprojW));
    EBB_RETURN_IF_ERROR(release({s.attn.out}));
    EBB_ASSIGN_OR_RETURN(
        Tensor dqkv,
        ops::attention_backward(engine_, h + "attention_backward", dattproj, s.qkv, s.attn.att, B,
                                T, NH, cost(attention_backward_work(B, T, C, NH, act))));
    EBB_RETURN_IF_ERROR(release({dattproj, s.attn.att}));
    EBB_ASSIGN_OR_RETURN(Tensor dln1_out, matmul_backward("qkv", dqkv, s.ln1.out, kQkvW));
    EBB_RETURN_IF_ERROR(release({dqkv, s.ln1.out, s.qkv}));
    EBB_ASSIGN_OR_RETURN(Tensor dln1, layernorm_backward("ln1", dln1_out, s.x, kLn1W, s.ln1));
    EBB_RETURN_IF_ERROR(release({dln1_out, s.ln1.mean, s.ln1.rstd}));
    if (l > 0) EBB_RETURN_IF_ERROR(release({s.x}));  // block 0's input is the embedding's output
    EBB_ASSIGN_OR_RETURN(Tensor dxin, ops::add(engine_, h + "dx", dres2, dln1,
                                               TensorKind::kGradient, cost(add_work(N * C, act))));
    EBB_RETURN_IF_ERROR(release({dres2, dln1}));
    dx = dxin;
  }
  EBB_RETURN_IF_ERROR(release({saved[0].x}));
  EBB_ASSIGN_OR_RETURN(ops::EmbeddingGrads demb,
                       ops::embedding_backward(engine_, "embedding_backward", dx, tokens, V,
                                               cost(embedding_backward_work(B, T, C, V, act))));
  EBB_RETURN_IF_ERROR(release({dx}));
  EBB_RETURN_IF_ERROR(accumulate(kWte, demb.dwte));
  EBB_RETURN_IF_ERROR(accumulate(kWpe, demb.dwpe));
  return loss;
}

}  // namespace ebb::train
