#include "tools/train/gpt_model.h"

#include <cmath>
#include <string>

#include "engine/nn_ops.h"
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

Result<std::unique_ptr<GptModel>> GptModel::create(Engine& engine, const GptConfig& config,
                                                   std::uint64_t seed) {
  EBB_RETURN_IF_ERROR(validate_config(config));
  if (engine.in_iteration()) {
    return failed_precondition(
        "GptModel::create inside an iteration: parameters are created "
        "outside one so that they are carried");
  }
  std::unique_ptr<GptModel> model(new GptModel(engine, config));
  SplitMix64 rng(seed);
  const double std_dev = 0.02;
  const double residual_std = 0.02 / std::sqrt(2.0 * config.layers);
  std::vector<float> host;
  for (const ParameterShape& p : parameter_shapes(config)) {
    std::int64_t n = 1;
    for (std::int64_t d : p.shape) n *= d;
    host.assign(static_cast<std::size_t>(n), 0.0F);
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
    EBB_ASSIGN_OR_RETURN(
        Tensor param,
        engine.parameter({p.name, p.shape, DType::kF32, TensorKind::kParameter}, host.data()));
    EBB_ASSIGN_OR_RETURN(
        Tensor m, engine.parameter(
                      {p.name + ".m", p.shape, DType::kF32, TensorKind::kOptimizerState}, nullptr));
    EBB_ASSIGN_OR_RETURN(
        Tensor v, engine.parameter(
                      {p.name + ".v", p.shape, DType::kF32, TensorKind::kOptimizerState}, nullptr));
    model->params_.push_back(param);
    model->m_.push_back(m);
    model->v_.push_back(v);
    model->parameter_bytes_ += param.bytes();
  }
  return model;
}

Result<float> GptModel::step(std::span<const std::int32_t> inputs,
                             std::span<const std::int32_t> targets, const nn::AdamWConfig& adamw,
                             int step) {
  const std::int64_t n = static_cast<std::int64_t>(config_.batch) * config_.seq;
  if (static_cast<std::int64_t>(inputs.size()) != n ||
      static_cast<std::int64_t>(targets.size()) != n) {
    return invalid_argument("step: " + std::to_string(inputs.size()) + " inputs and " +
                            std::to_string(targets.size()) +
                            " targets, expected batch * seq = " + std::to_string(n));
  }
  IterationScope iteration(engine_);
  EBB_RETURN_IF_ERROR(iteration.status());
  const std::vector<std::int64_t> shape{config_.batch, config_.seq};
  EBB_ASSIGN_OR_RETURN(Tensor tokens, engine_.input({"tokens", shape, DType::kI32}, inputs.data()));
  EBB_ASSIGN_OR_RETURN(Tensor target,
                       engine_.input({"targets", shape, DType::kI32}, targets.data()));
  Result<Tensor> loss = forward_backward_update(tokens, target, adamw, step);
  if (!loss.ok()) {
    (void)iteration.end();  // the step's error is the one to report
    return loss.status();
  }
  float host_loss = 0;
  Status read = engine_.read(*loss, &host_loss, sizeof(host_loss));
  Status ended = iteration.end();
  EBB_RETURN_IF_ERROR(read);
  EBB_RETURN_IF_ERROR(ended);
  return host_loss;
}

Result<Tensor> GptModel::forward_backward_update(const Tensor& tokens, const Tensor& targets,
                                                 const nn::AdamWConfig& adamw, int step) {
  const int B = config_.batch;
  const int T = config_.seq;
  const int NH = config_.heads;
  const int V = config_.vocab;
  const int L = config_.layers;
  const int N = B * T;
  auto block_param = [&](int l, BlockParam p) -> const Tensor& {
    return params_[kBlockBase + static_cast<std::size_t>(l) * kPerBlock + p];
  };
  const std::size_t lnf_w = kBlockBase + static_cast<std::size_t>(L) * kPerBlock;
  const std::size_t lnf_b = lnf_w + 1;
  std::vector<Tensor> grads(params_.size());
  auto release = [&](std::initializer_list<Tensor> tensors) -> Status {
    for (const Tensor& t : tensors) EBB_RETURN_IF_ERROR(engine_.release(t));
    return ok_status();
  };

  // ---- forward ----
  EBB_ASSIGN_OR_RETURN(Tensor x,
                       ops::embedding(engine_, "embedding", tokens, params_[kWte], params_[kWpe]));
  std::vector<BlockSaved> saved(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    BlockSaved& s = saved[static_cast<std::size_t>(l)];
    s.x = x;
    EBB_ASSIGN_OR_RETURN(
        s.ln1, ops::layernorm(engine_, h + "ln1", x, block_param(l, kLn1W), block_param(l, kLn1B)));
    EBB_ASSIGN_OR_RETURN(s.qkv, ops::matmul(engine_, h + "qkv", s.ln1.out, block_param(l, kQkvW),
                                            &block_param(l, kQkvB)));
    EBB_ASSIGN_OR_RETURN(s.attn, ops::attention(engine_, h + "attention", s.qkv, B, T, NH));
    EBB_ASSIGN_OR_RETURN(Tensor attproj,
                         ops::matmul(engine_, h + "attproj", s.attn.out, block_param(l, kAttprojW),
                                     &block_param(l, kAttprojB)));
    EBB_ASSIGN_OR_RETURN(s.res2, ops::add(engine_, h + "res2", x, attproj));
    EBB_RETURN_IF_ERROR(release({attproj}));
    EBB_ASSIGN_OR_RETURN(s.ln2, ops::layernorm(engine_, h + "ln2", s.res2, block_param(l, kLn2W),
                                               block_param(l, kLn2B)));
    EBB_ASSIGN_OR_RETURN(s.fch, ops::matmul(engine_, h + "fc", s.ln2.out, block_param(l, kFcW),
                                            &block_param(l, kFcB)));
    EBB_ASSIGN_OR_RETURN(s.fch_gelu, ops::gelu(engine_, h + "gelu", s.fch));
    EBB_ASSIGN_OR_RETURN(Tensor fcproj,
                         ops::matmul(engine_, h + "fcproj", s.fch_gelu, block_param(l, kFcprojW),
                                     &block_param(l, kFcprojB)));
    EBB_ASSIGN_OR_RETURN(x, ops::add(engine_, h + "res3", s.res2, fcproj));
    EBB_RETURN_IF_ERROR(release({fcproj}));
  }
  EBB_ASSIGN_OR_RETURN(ops::LayerNormOut lnf,
                       ops::layernorm(engine_, "lnf", x, params_[lnf_w], params_[lnf_b]));
  EBB_ASSIGN_OR_RETURN(Tensor logits, ops::matmul(engine_, "logits", lnf.out, params_[kWte],
                                                  /*bias=*/nullptr));
  EBB_ASSIGN_OR_RETURN(ops::CrossEntropyOut xent,
                       ops::softmax_cross_entropy(engine_, "cross_entropy", logits, targets));
  EBB_RETURN_IF_ERROR(release({logits}));
  EBB_ASSIGN_OR_RETURN(Tensor loss, ops::mean(engine_, "loss", xent.losses));
  EBB_RETURN_IF_ERROR(release({xent.losses}));

  // ---- backward ----
  const float dloss = 1.0F / static_cast<float>(N);
  EBB_ASSIGN_OR_RETURN(Tensor dlogits,
                       ops::softmax_cross_entropy_backward(engine_, "cross_entropy_backward",
                                                           xent.probs, targets, dloss));
  EBB_RETURN_IF_ERROR(release({xent.probs}));
  EBB_ASSIGN_OR_RETURN(ops::MatmulGrads dhead,
                       ops::matmul_backward(engine_, "logits_backward", dlogits, lnf.out,
                                            params_[kWte], /*has_bias=*/false));
  EBB_RETURN_IF_ERROR(release({dlogits, lnf.out}));
  EBB_ASSIGN_OR_RETURN(ops::LayerNormGrads dlnf,
                       ops::layernorm_backward(engine_, "lnf_backward", dhead.dinp, x,
                                               params_[lnf_w], lnf.mean, lnf.rstd));
  EBB_RETURN_IF_ERROR(release({dhead.dinp, lnf.mean, lnf.rstd, x}));
  grads[lnf_w] = dlnf.dweight;
  grads[lnf_b] = dlnf.dbias;
  Tensor dx = dlnf.dinp;

  for (int l = L - 1; l >= 0; --l) {
    const std::string h = "h" + std::to_string(l) + ".";
    const BlockSaved& s = saved[static_cast<std::size_t>(l)];
    const std::size_t base = kBlockBase + static_cast<std::size_t>(l) * kPerBlock;
    // Runs the backward of the block's matmul `name` (weight w, bias w + 1) and records the
    // weight and bias gradients.
    auto matmul_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                               BlockParam w) -> Result<Tensor> {
      EBB_ASSIGN_OR_RETURN(ops::MatmulGrads g,
                           ops::matmul_backward(engine_, h + name + "_backward", dout, in,
                                                params_[base + w], /*has_bias=*/true));
      grads[base + w] = g.dweight;
      grads[base + w + 1] = g.dbias;
      return g.dinp;
    };
    auto layernorm_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                                  BlockParam w, const ops::LayerNormOut& ln) -> Result<Tensor> {
      EBB_ASSIGN_OR_RETURN(ops::LayerNormGrads g,
                           ops::layernorm_backward(engine_, h + name + "_backward", dout, in,
                                                   params_[base + w], ln.mean, ln.rstd));
      grads[base + w] = g.dweight;
      grads[base + w + 1] = g.dbias;
      return g.dinp;
    };
    // MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dx is d(res3).
    EBB_ASSIGN_OR_RETURN(Tensor dfcproj, matmul_backward("fcproj", dx, s.fch_gelu, kFcprojW));
    EBB_RETURN_IF_ERROR(release({s.fch_gelu}));
    EBB_ASSIGN_OR_RETURN(Tensor dfch,
                         ops::gelu_backward(engine_, h + "gelu_backward", s.fch, dfcproj));
    EBB_RETURN_IF_ERROR(release({s.fch, dfcproj}));
    EBB_ASSIGN_OR_RETURN(Tensor dfc, matmul_backward("fc", dfch, s.ln2.out, kFcW));
    EBB_RETURN_IF_ERROR(release({dfch, s.ln2.out}));
    EBB_ASSIGN_OR_RETURN(Tensor dln2, layernorm_backward("ln2", dfc, s.res2, kLn2W, s.ln2));
    EBB_RETURN_IF_ERROR(release({dfc, s.res2, s.ln2.mean, s.ln2.rstd}));
    EBB_ASSIGN_OR_RETURN(Tensor dres2,
                         ops::add(engine_, h + "dres2", dx, dln2, TensorKind::kGradient));
    EBB_RETURN_IF_ERROR(release({dx, dln2}));
    // Attention: res2 = x + attproj(attention(qkv(ln1(x)))).
    EBB_ASSIGN_OR_RETURN(Tensor dattproj, matmul_backward("attproj", dres2, s.attn.out, kAttprojW));
    EBB_RETURN_IF_ERROR(release({s.attn.out}));
    EBB_ASSIGN_OR_RETURN(Tensor dqkv,
                         ops::attention_backward(engine_, h + "attention_backward", dattproj, s.qkv,
                                                 s.attn.att, B, T, NH));
    EBB_RETURN_IF_ERROR(release({dattproj, s.attn.att}));
    EBB_ASSIGN_OR_RETURN(Tensor dln1_out, matmul_backward("qkv", dqkv, s.ln1.out, kQkvW));
    EBB_RETURN_IF_ERROR(release({dqkv, s.ln1.out, s.qkv}));
    EBB_ASSIGN_OR_RETURN(Tensor dln1, layernorm_backward("ln1", dln1_out, s.x, kLn1W, s.ln1));
    EBB_RETURN_IF_ERROR(release({dln1_out, s.ln1.mean, s.ln1.rstd}));
    if (l > 0) EBB_RETURN_IF_ERROR(release({s.x}));  // block 0's input is the embedding's output
    EBB_ASSIGN_OR_RETURN(Tensor dxin,
                         ops::add(engine_, h + "dx", dres2, dln1, TensorKind::kGradient));
    EBB_RETURN_IF_ERROR(release({dres2, dln1}));
    dx = dxin;
  }
  EBB_RETURN_IF_ERROR(release({saved[0].x}));
  EBB_ASSIGN_OR_RETURN(ops::EmbeddingGrads demb,
                       ops::embedding_backward(engine_, "embedding_backward", dx, tokens, V));
  EBB_RETURN_IF_ERROR(release({dx}));
  EBB_ASSIGN_OR_RETURN(grads[kWte],
                       ops::add(engine_, "dwte", demb.dwte, dhead.dweight, TensorKind::kGradient));
  EBB_RETURN_IF_ERROR(release({demb.dwte, dhead.dweight}));
  grads[kWpe] = demb.dwpe;

  // ---- AdamW, out of place: the outputs replace the parameter and moment handles ----
  for (std::size_t i = 0; i < params_.size(); ++i) {
    EBB_ASSIGN_OR_RETURN(ops::AdamWOut updated,
                         ops::adamw(engine_, "adamw." + params_[i].name(), params_[i], grads[i],
                                    m_[i], v_[i], adamw, step));
    for (const Tensor& t : {updated.param, updated.m, updated.v}) {
      EBB_RETURN_IF_ERROR(engine_.keep(t));
    }
    EBB_RETURN_IF_ERROR(release({params_[i], grads[i], m_[i], v_[i]}));
    params_[i] = updated.param;
    m_[i] = updated.m;
    v_[i] = updated.v;
  }
  return loss;
}

Result<std::vector<float>> GptModel::parameters_to_host() {
  std::vector<float> out(parameter_bytes_ / sizeof(float));
  std::size_t offset = 0;
  for (const Tensor& p : params_) {
    EBB_RETURN_IF_ERROR(engine_.read(p, out.data() + offset, p.bytes()));
    offset += p.bytes() / sizeof(float);
  }
  return out;
}

}  // namespace ebb::train
