#include "tools/train/gpt_model.h"

#include <cmath>
#include <string>
#include <utility>

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

const float* in_f32(const OpArgs& a, std::size_t i) {
  return static_cast<const float*>(a.inputs[i]);
}
const std::int32_t* in_i32(const OpArgs& a, std::size_t i) {
  return static_cast<const std::int32_t*>(a.inputs[i]);
}
float* out_f32(const OpArgs& a, std::size_t i) { return static_cast<float*>(a.outputs[i]); }

TensorSpec activation(std::string name, std::vector<std::int64_t> shape) {
  return {std::move(name), std::move(shape), DType::kF32, TensorKind::kActivation};
}
TensorSpec gradient(std::string name, std::vector<std::int64_t> shape) {
  return {std::move(name), std::move(shape), DType::kF32, TensorKind::kGradient};
}

// What one block's forward saves for its backward.
struct BlockSaved {
  Tensor x;  // the block's input (the residual stream)
  Tensor ln1, ln1_mean, ln1_rstd, qkv, atty, att;
  Tensor res2;  // x + attention
  Tensor ln2, ln2_mean, ln2_rstd, fch, fch_gelu;
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
  const int C = config_.d_model;
  const int NH = config_.heads;
  const int V = config_.vocab;
  const int L = config_.layers;
  const int N = B * T;
  const std::vector<std::int64_t> nc{N, C};
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
  EBB_ASSIGN_OR_RETURN(auto enc, engine_.run("embedding", {tokens, params_[kWte], params_[kWpe]},
                                             {activation("encoded", nc)}, [=](const OpArgs& a) {
                                               nn::embedding_forward(a.launch, out_f32(a, 0),
                                                                     in_i32(a, 0), in_f32(a, 1),
                                                                     in_f32(a, 2), B, T, C, V);
                                             }));
  Tensor x = enc[0];
  std::vector<BlockSaved> saved(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    BlockSaved& s = saved[static_cast<std::size_t>(l)];
    s.x = x;
    auto layernorm = [&](const std::string& name, const Tensor& in, const Tensor& w,
                         const Tensor& b) {
      return engine_.run(h + name, {in, w, b},
                         {activation(h + name, nc), activation(h + name + "_mean", {N}),
                          activation(h + name + "_rstd", {N})},
                         [=](const OpArgs& a) {
                           nn::layernorm_forward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                                 out_f32(a, 2), in_f32(a, 0), in_f32(a, 1),
                                                 in_f32(a, 2), N, C);
                         });
    };
    auto matmul = [&](const std::string& name, const Tensor& in, const Tensor& w, const Tensor& b,
                      int in_c, int out_c) {
      return engine_.run(h + name, {in, w, b}, {activation(h + name, {N, out_c})},
                         [=](const OpArgs& a) {
                           nn::matmul_forward(a.launch, out_f32(a, 0), in_f32(a, 0), in_f32(a, 1),
                                              in_f32(a, 2), N, in_c, out_c);
                         });
    };
    auto add = [&](const std::string& name, const Tensor& a_in, const Tensor& b_in) {
      return engine_.run(h + name, {a_in, b_in}, {activation(h + name, nc)}, [=](const OpArgs& a) {
        nn::add(a.launch, out_f32(a, 0), in_f32(a, 0), in_f32(a, 1),
                static_cast<std::int64_t>(N) * C);
      });
    };
    EBB_ASSIGN_OR_RETURN(auto ln1,
                         layernorm("ln1", x, block_param(l, kLn1W), block_param(l, kLn1B)));
    s.ln1 = ln1[0], s.ln1_mean = ln1[1], s.ln1_rstd = ln1[2];
    EBB_ASSIGN_OR_RETURN(
        auto qkv, matmul("qkv", s.ln1, block_param(l, kQkvW), block_param(l, kQkvB), C, 3 * C));
    s.qkv = qkv[0];
    EBB_ASSIGN_OR_RETURN(
        auto attn, engine_.run(h + "attention", {s.qkv},
                               {activation(h + "atty", nc), activation(h + "att", {B, NH, T, T})},
                               [=](const OpArgs& a) {
                                 nn::attention_forward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                                       in_f32(a, 0), B, T, C, NH);
                               }));
    s.atty = attn[0], s.att = attn[1];
    EBB_ASSIGN_OR_RETURN(auto attproj, matmul("attproj", s.atty, block_param(l, kAttprojW),
                                              block_param(l, kAttprojB), C, C));
    EBB_ASSIGN_OR_RETURN(auto res2, add("res2", x, attproj[0]));
    EBB_RETURN_IF_ERROR(release({attproj[0]}));
    s.res2 = res2[0];
    EBB_ASSIGN_OR_RETURN(auto ln2,
                         layernorm("ln2", s.res2, block_param(l, kLn2W), block_param(l, kLn2B)));
    s.ln2 = ln2[0], s.ln2_mean = ln2[1], s.ln2_rstd = ln2[2];
    EBB_ASSIGN_OR_RETURN(auto fch,
                         matmul("fc", s.ln2, block_param(l, kFcW), block_param(l, kFcB), C, 4 * C));
    s.fch = fch[0];
    EBB_ASSIGN_OR_RETURN(auto gelu,
                         engine_.run(h + "gelu", {s.fch}, {activation(h + "fch_gelu", {N, 4 * C})},
                                     [=](const OpArgs& a) {
                                       nn::gelu_forward(a.launch, out_f32(a, 0), in_f32(a, 0),
                                                        static_cast<std::int64_t>(N) * 4 * C);
                                     }));
    s.fch_gelu = gelu[0];
    EBB_ASSIGN_OR_RETURN(auto fcproj, matmul("fcproj", s.fch_gelu, block_param(l, kFcprojW),
                                             block_param(l, kFcprojB), 4 * C, C));
    EBB_ASSIGN_OR_RETURN(auto res3, add("res3", s.res2, fcproj[0]));
    EBB_RETURN_IF_ERROR(release({fcproj[0]}));
    x = res3[0];
  }
  EBB_ASSIGN_OR_RETURN(
      auto lnf,
      engine_.run("lnf", {x, params_[lnf_w], params_[lnf_b]},
                  {activation("lnf", nc), activation("lnf_mean", {N}), activation("lnf_rstd", {N})},
                  [=](const OpArgs& a) {
                    nn::layernorm_forward(a.launch, out_f32(a, 0), out_f32(a, 1), out_f32(a, 2),
                                          in_f32(a, 0), in_f32(a, 1), in_f32(a, 2), N, C);
                  }));
  EBB_ASSIGN_OR_RETURN(
      auto logits, engine_.run("logits", {lnf[0], params_[kWte]}, {activation("logits", {N, V})},
                               [=](const OpArgs& a) {
                                 nn::matmul_forward(a.launch, out_f32(a, 0), in_f32(a, 0),
                                                    in_f32(a, 1), nullptr, N, C, V);
                               }));
  EBB_ASSIGN_OR_RETURN(
      auto xent,
      engine_.run("cross_entropy", {logits[0], targets},
                  {activation("losses", {N}), activation("probs", {N, V})}, [=](const OpArgs& a) {
                    nn::softmax_cross_entropy_forward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                                      in_f32(a, 0), in_i32(a, 1), N, V);
                  }));
  EBB_RETURN_IF_ERROR(release({logits[0]}));
  EBB_ASSIGN_OR_RETURN(
      auto loss, engine_.run("loss", {xent[0]}, {activation("loss", {1})}, [=](const OpArgs& a) {
        nn::mean(a.launch, out_f32(a, 0), in_f32(a, 0), N);
      }));
  EBB_RETURN_IF_ERROR(release({xent[0]}));

  // ---- backward ----
  const float dloss = 1.0F / static_cast<float>(N);
  EBB_ASSIGN_OR_RETURN(auto dlogits,
                       engine_.run("cross_entropy_backward", {xent[1], targets},
                                   {gradient("dlogits", {N, V})}, [=](const OpArgs& a) {
                                     nn::softmax_cross_entropy_backward(a.launch, out_f32(a, 0),
                                                                        in_f32(a, 0), in_i32(a, 1),
                                                                        dloss, N, V);
                                   }));
  EBB_RETURN_IF_ERROR(release({xent[1]}));
  EBB_ASSIGN_OR_RETURN(
      auto dhead,
      engine_.run("logits_backward", {dlogits[0], lnf[0], params_[kWte]},
                  {gradient("dlnf", nc), gradient("dwte_head", {V, C})}, [=](const OpArgs& a) {
                    nn::matmul_backward(a.launch, out_f32(a, 0), out_f32(a, 1), nullptr,
                                        in_f32(a, 0), in_f32(a, 1), in_f32(a, 2), N, C, V);
                  }));
  EBB_RETURN_IF_ERROR(release({dlogits[0], lnf[0]}));
  auto layernorm_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                                const Tensor& w, const Tensor& mean, const Tensor& rstd) {
    return engine_.run(name + "_backward", {dout, in, w, mean, rstd},
                       {gradient("d" + name, nc), gradient("d" + name + "_w", {C}),
                        gradient("d" + name + "_b", {C})},
                       [=](const OpArgs& a) {
                         nn::layernorm_backward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                                out_f32(a, 2), in_f32(a, 0), in_f32(a, 1),
                                                in_f32(a, 2), in_f32(a, 3), in_f32(a, 4), N, C);
                       });
  };
  EBB_ASSIGN_OR_RETURN(auto dlnf,
                       layernorm_backward("lnf", dhead[0], x, params_[lnf_w], lnf[1], lnf[2]));
  EBB_RETURN_IF_ERROR(release({dhead[0], lnf[1], lnf[2], x}));
  grads[lnf_w] = dlnf[1];
  grads[lnf_b] = dlnf[2];
  Tensor dx = dlnf[0];

  for (int l = L - 1; l >= 0; --l) {
    const std::string h = "h" + std::to_string(l) + ".";
    const BlockSaved& s = saved[static_cast<std::size_t>(l)];
    const std::size_t base = kBlockBase + static_cast<std::size_t>(l) * kPerBlock;
    auto matmul_backward = [&](const std::string& name, const Tensor& dout, const Tensor& in,
                               BlockParam w, int in_c, int out_c) {
      return engine_.run(h + name + "_backward", {dout, in, params_[base + w]},
                         {gradient(h + "d" + name + "_in", {N, in_c}),
                          gradient(h + "d" + name + "_w", {out_c, in_c}),
                          gradient(h + "d" + name + "_b", {out_c})},
                         [=](const OpArgs& a) {
                           nn::matmul_backward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                               out_f32(a, 2), in_f32(a, 0), in_f32(a, 1),
                                               in_f32(a, 2), N, in_c, out_c);
                         });
    };
    auto add = [&](const std::string& name, const Tensor& a_in, const Tensor& b_in) {
      return engine_.run(h + name, {a_in, b_in}, {gradient(h + name, nc)}, [=](const OpArgs& a) {
        nn::add(a.launch, out_f32(a, 0), in_f32(a, 0), in_f32(a, 1),
                static_cast<std::int64_t>(N) * C);
      });
    };
    // MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dx is d(res3).
    EBB_ASSIGN_OR_RETURN(auto dfcproj,
                         matmul_backward("fcproj", dx, s.fch_gelu, kFcprojW, 4 * C, C));
    grads[base + kFcprojW] = dfcproj[1];
    grads[base + kFcprojB] = dfcproj[2];
    EBB_RETURN_IF_ERROR(release({s.fch_gelu}));
    EBB_ASSIGN_OR_RETURN(auto dfch,
                         engine_.run(h + "gelu_backward", {s.fch, dfcproj[0]},
                                     {gradient(h + "dfch", {N, 4 * C})}, [=](const OpArgs& a) {
                                       nn::gelu_backward(a.launch, out_f32(a, 0), in_f32(a, 0),
                                                         in_f32(a, 1),
                                                         static_cast<std::int64_t>(N) * 4 * C);
                                     }));
    EBB_RETURN_IF_ERROR(release({s.fch, dfcproj[0]}));
    EBB_ASSIGN_OR_RETURN(auto dfc, matmul_backward("fc", dfch[0], s.ln2, kFcW, C, 4 * C));
    grads[base + kFcW] = dfc[1];
    grads[base + kFcB] = dfc[2];
    EBB_RETURN_IF_ERROR(release({dfch[0], s.ln2}));
    EBB_ASSIGN_OR_RETURN(
        auto dln2, layernorm_backward(h + "ln2", dfc[0], s.res2, params_[base + kLn2W], s.ln2_mean,
                                      s.ln2_rstd));
    grads[base + kLn2W] = dln2[1];
    grads[base + kLn2B] = dln2[2];
    EBB_RETURN_IF_ERROR(release({dfc[0], s.res2, s.ln2_mean, s.ln2_rstd}));
    EBB_ASSIGN_OR_RETURN(auto dres2, add("dres2", dx, dln2[0]));
    EBB_RETURN_IF_ERROR(release({dx, dln2[0]}));
    // Attention: res2 = x + attproj(attention(qkv(ln1(x)))).
    EBB_ASSIGN_OR_RETURN(auto dattproj,
                         matmul_backward("attproj", dres2[0], s.atty, kAttprojW, C, C));
    grads[base + kAttprojW] = dattproj[1];
    grads[base + kAttprojB] = dattproj[2];
    EBB_RETURN_IF_ERROR(release({s.atty}));
    EBB_ASSIGN_OR_RETURN(
        auto dqkv, engine_.run(h + "attention_backward", {dattproj[0], s.qkv, s.att},
                               {gradient(h + "dqkv", {N, 3 * C})}, [=](const OpArgs& a) {
                                 nn::attention_backward(a.launch, out_f32(a, 0), in_f32(a, 0),
                                                        in_f32(a, 1), in_f32(a, 2), B, T, C, NH);
                               }));
    EBB_RETURN_IF_ERROR(release({dattproj[0], s.att}));
    EBB_ASSIGN_OR_RETURN(auto dqkvw, matmul_backward("qkv", dqkv[0], s.ln1, kQkvW, C, 3 * C));
    grads[base + kQkvW] = dqkvw[1];
    grads[base + kQkvB] = dqkvw[2];
    EBB_RETURN_IF_ERROR(release({dqkv[0], s.ln1, s.qkv}));
    EBB_ASSIGN_OR_RETURN(
        auto dln1, layernorm_backward(h + "ln1", dqkvw[0], s.x, params_[base + kLn1W], s.ln1_mean,
                                      s.ln1_rstd));
    grads[base + kLn1W] = dln1[1];
    grads[base + kLn1B] = dln1[2];
    EBB_RETURN_IF_ERROR(release({dqkvw[0], s.ln1_mean, s.ln1_rstd}));
    if (l > 0) EBB_RETURN_IF_ERROR(release({s.x}));  // block 0's input is the embedding's output
    EBB_ASSIGN_OR_RETURN(auto dxin, add("dx", dres2[0], dln1[0]));
    EBB_RETURN_IF_ERROR(release({dres2[0], dln1[0]}));
    dx = dxin[0];
  }
  EBB_RETURN_IF_ERROR(release({saved[0].x}));
  EBB_ASSIGN_OR_RETURN(auto demb,
                       engine_.run("embedding_backward", {dx, tokens},
                                   {gradient("dwte_embedding", {V, C}), gradient("dwpe", {T, C})},
                                   [=](const OpArgs& a) {
                                     nn::embedding_backward(a.launch, out_f32(a, 0), out_f32(a, 1),
                                                            in_f32(a, 0), in_i32(a, 1), B, T, C, V);
                                   }));
  EBB_RETURN_IF_ERROR(release({dx}));
  const std::int64_t vc = static_cast<std::int64_t>(V) * C;
  EBB_ASSIGN_OR_RETURN(
      auto dwte,
      engine_.run("dwte", {demb[0], dhead[1]}, {gradient("dwte", {V, C})}, [=](const OpArgs& a) {
        nn::add(a.launch, out_f32(a, 0), in_f32(a, 0), in_f32(a, 1), vc);
      }));
  EBB_RETURN_IF_ERROR(release({demb[0], dhead[1]}));
  grads[kWte] = dwte[0];
  grads[kWpe] = demb[1];

  // ---- AdamW, out of place: the outputs replace the parameter and moment handles ----
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const std::int64_t count = static_cast<std::int64_t>(p.bytes() / sizeof(float));
    const std::vector<std::int64_t> shape = p.shape();
    EBB_ASSIGN_OR_RETURN(
        auto updated,
        engine_.run("adamw." + p.name(), {p, grads[i], m_[i], v_[i]},
                    {{p.name(), shape, DType::kF32, TensorKind::kParameter},
                     {p.name() + ".m", shape, DType::kF32, TensorKind::kOptimizerState},
                     {p.name() + ".v", shape, DType::kF32, TensorKind::kOptimizerState}},
                    [=](const OpArgs& a) {
                      nn::adamw(a.launch, out_f32(a, 0), out_f32(a, 1), out_f32(a, 2), in_f32(a, 0),
                                in_f32(a, 1), in_f32(a, 2), in_f32(a, 3), count, adamw, step);
                    }));
    for (const Tensor& t : updated) EBB_RETURN_IF_ERROR(engine_.keep(t));
    EBB_RETURN_IF_ERROR(release({p, grads[i], m_[i], v_[i]}));
    params_[i] = updated[0];
    m_[i] = updated[1];
    v_[i] = updated[2];
  }
  return loss[0];
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
