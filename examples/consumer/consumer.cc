// A training loop through an installed ebb: one linear layer and a softmax cross-entropy, fp32
// weights updated in place by AdamW, on the cpu device under an 8 MiB budget. Prints each
// step's loss and the peak bytes reserved; exits 1 when the loss did not fall or the engine
// reserved more than its budget.
#include <ebb/engine/ebb.h>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  using namespace ebb;
  std::unique_ptr<Device> device = create_device(DeviceOptions{}).value();
  const std::size_t budget_bytes = 8 * kMiB;
  std::unique_ptr<Engine> engine =
      Engine::create({.device = *device, .budget_bytes = budget_bytes}).value();
  const std::vector<std::vector<float>> init{std::vector<float>(64 * 16, 0.0f)};
  std::unique_ptr<ModelState> state =
      ModelState::create(*engine, {{.name = "w", .shape = {16, 64}}}, {}, init).value();
  std::unique_ptr<Optimizer> adamw =
      Optimizer::create(*engine, *state, {.kind = OptimizerKind::kAdamW}).value();
  std::vector<float> x(32 * 64);
  std::vector<std::int32_t> labels(32);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7) % 11) * 0.1f;
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i % 16);
  float first_loss = 0, loss_value = 0;
  for (int step = 1; step <= 20; ++step) {
    IterationScope iteration(*engine);
    Tensor input = engine->input({"x", {32, 64}}, x.data()).value();
    Tensor targets = engine->input({"labels", {32}, DType::kI32}, labels.data()).value();
    Tensor logits = ops::matmul(*engine, "fc", input, state->param(0), nullptr).value();
    ops::CrossEntropyOut ce = ops::softmax_cross_entropy(*engine, "ce", logits, targets).value();
    Tensor loss = ops::mean(*engine, "loss", ce.losses).value();
    Tensor dlogits =
        ops::softmax_cross_entropy_backward(*engine, "ce_bw", ce.probs, targets, 1.0f / 32).value();
    ops::MatmulGrads g =
        ops::matmul_backward(*engine, "fc_bw", dlogits, input, state->param(0), false).value();
    state->begin_step();
    if (!state->accumulate(0, g.dweight).ok() || !adamw->step(step, 1e-2f, 1.0f).ok()) return 1;
    if (!engine->read(loss, &loss_value, sizeof loss_value).ok()) return 1;
    if (step == 1) first_loss = loss_value;
    std::printf("step %d: loss %.4f\n", step, loss_value);
  }
  const auto peak = static_cast<std::size_t>(engine->allocator().stats().all.reserved_bytes.peak);
  std::printf("peak reserved %zu B, budget %zu B\n", peak, budget_bytes);
  const bool ok = loss_value < first_loss && peak <= budget_bytes;
  std::printf("%s\n", ok ? "consumer: ok" : "consumer: FAILED");
  return ok ? 0 : 1;
}
