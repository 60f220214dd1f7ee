#include "allocator/dtr_log_generator.h"

#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ebb {
namespace {

// Writes the instructions of one log and names its handles x0, x1, ...
class LogWriter {
 public:
  explicit LogWriter(std::uint64_t seed) : rng_(seed) {
    out_ << R"({"ANNOTATION":"START","INSTRUCTION":"ANNOTATE"})" << '\n';
  }

  // A constant entered as PyTorch logs it: CONSTANT, COPY to the handle kept, RELEASE.
  std::string constant(std::size_t bytes) {
    const std::string first = fresh();
    out_ << R"({"INSTRUCTION":"CONSTANT","NAME":")" << first << "\"}\n";
    memory(first, bytes);
    std::string kept = fresh();
    out_ << R"({"DST":")" << kept << R"(","INSTRUCTION":"COPY","SRC":")" << first << "\"}\n";
    release(first);
    return kept;
  }
  // A CALL with one fresh result of `bytes` (alias -1) or a view of args[alias].
  std::string call(const std::string& name, const std::vector<std::string>& args, std::size_t bytes,
                   int alias = -1) {
    std::string result = fresh();
    out_ << R"({"ARGS":[)" << quoted_list(args) << R"(],"INSTRUCTION":"CALL","NAME":")" << name
         << R"(","RESULT":[")" << result << R"("],"TIME":")" << time_ns() << "\"}\n";
    memory(result, bytes);
    out_ << R"({"ALIAS":")" << alias << R"(","INSTRUCTION":"ALIAS","NAME":")" << result << "\"}\n";
    return result;
  }
  // An in-place op on args[i] for every i in `mutated`.
  void mutate(const std::string& name, const std::vector<std::string>& args,
              const std::vector<int>& mutated) {
    out_ << R"({"ARGS":[)" << quoted_list(args) << R"(],"INSTRUCTION":"MUTATE","MUTATE":[)";
    for (std::size_t i = 0; i < mutated.size(); ++i) out_ << (i > 0 ? "," : "") << mutated[i];
    out_ << R"(],"NAME":")" << name << R"(","TIME":")" << time_ns() << "\"}\n";
  }
  std::string copy(const std::string& src) {
    std::string dst = fresh();
    out_ << R"({"DST":")" << dst << R"(","INSTRUCTION":"COPY","SRC":")" << src << "\"}\n";
    return dst;
  }
  void release(const std::string& handle) {
    out_ << R"({"INSTRUCTION":"RELEASE","NAME":")" << handle << "\"}\n";
  }
  void annotate(const char* what) {
    out_ << R"({"ANNOTATION":")" << what << R"(","INSTRUCTION":"ANNOTATE"})" << '\n';
  }
  std::size_t uniform(std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng_);
  }
  std::string text() const { return out_.str(); }

 private:
  std::string fresh() { return "x" + std::to_string(next_++); }
  void memory(const std::string& handle, std::size_t bytes) {
    out_ << R"({"INSTRUCTION":"MEMORY","MEMORY":")" << bytes << R"(","NAME":")" << handle
         << "\"}\n";
  }
  std::int64_t time_ns() { return static_cast<std::int64_t>(uniform(1000, 100000)); }
  static std::string quoted_list(const std::vector<std::string>& names) {
    std::string s;
    for (const std::string& n : names) s += (s.empty() ? "\"" : ",\"") + n + "\"";
    return s;
  }

  std::mt19937_64 rng_;
  std::ostringstream out_;
  std::size_t next_ = 0;
};

// One network's layers: their weights and batch-norm statistics (constants).
struct Network {
  std::vector<std::string> weights;
  std::vector<std::string> running_mean;
  std::vector<std::string> running_var;
};

Network make_network(LogWriter& log, std::size_t layers, std::size_t weight_bytes) {
  Network n;
  for (std::size_t i = 0; i < layers; ++i) {
    n.weights.push_back(log.constant(weight_bytes));
    n.running_mean.push_back(log.constant(256));
    n.running_var.push_back(log.constant(256));
  }
  return n;
}

// The forward pass: per layer conv, batch norm (its statistics rebound in place), an in-place
// ReLU, and on every other layer a view and a second handle of the result. Returns the handles
// the backward pass reads, in layer order, and sets `out` to the last activation.
std::vector<std::string> forward(LogWriter& log, Network& net, const std::string& input,
                                 const DtrLogShape& shape, std::string& out) {
  std::vector<std::string> saved;
  std::string h = input;
  for (std::size_t i = 0; i < net.weights.size(); ++i) {
    const std::size_t bytes = log.uniform(shape.min_activation_bytes, shape.max_activation_bytes);
    const std::string conv = log.call("conv", {h, net.weights[i]}, bytes);
    const std::string bn =
        log.call("batch_norm", {conv, net.running_mean[i], net.running_var[i]}, bytes);
    // The statistics' handles are rebound to fresh storages: the old ones die here.
    log.mutate("running_stats_", {net.running_mean[i], net.running_var[i], bn}, {0, 1});
    log.mutate("relu_", {bn}, {0});
    std::string next = bn;
    if (i % 2 == 1) {
      next = log.call("view", {bn}, bytes, 0);
      saved.push_back(log.copy(next));
    }
    saved.push_back(conv);
    saved.push_back(bn);
    if (next != bn) saved.push_back(next);
    h = next;
  }
  out = h;
  return saved;
}

// The backward pass through `saved` (reverse order): one gradient op per saved handle, each
// releasing the handle it consumed. Returns the weight gradients.
std::vector<std::string> backward(LogWriter& log, const Network& net, const DtrLogShape& shape,
                                  const std::vector<std::string>& saved, std::string grad) {
  std::vector<std::string> grads;
  for (std::size_t i = saved.size(); i-- > 0;) {
    const std::string g = log.call("grad", {grad, saved[i]}, shape.min_activation_bytes);
    log.release(grad);
    log.release(saved[i]);
    grad = g;
  }
  for (const std::string& w : net.weights) grads.push_back(log.call("weight_grad", {grad, w}, 16));
  log.release(grad);
  return grads;
}

// The optimizer: an in-place update of every weight by its gradient.
void step(LogWriter& log, const Network& net, const std::vector<std::string>& grads) {
  for (std::size_t i = 0; i < net.weights.size(); ++i) {
    log.mutate("add_", {net.weights[i], grads[i]}, {0});
    log.release(grads[i]);
  }
}

}  // namespace

Result<std::string> generate_dtr_log(const DtrLogShape& shape) {
  if (shape.generator_layers < 1 || shape.generator_layers > 64) {
    return invalid_argument("generate_dtr_log: generator_layers " +
                            std::to_string(shape.generator_layers) + " is not in 1..64");
  }
  if (shape.discriminator_layers < 1 || shape.discriminator_layers > 64) {
    return invalid_argument("generate_dtr_log: discriminator_layers " +
                            std::to_string(shape.discriminator_layers) + " is not in 1..64");
  }
  if (shape.min_activation_bytes == 0 || shape.max_activation_bytes < shape.min_activation_bytes) {
    return invalid_argument("generate_dtr_log: activation bytes [" +
                            std::to_string(shape.min_activation_bytes) + ", " +
                            std::to_string(shape.max_activation_bytes) + "] is empty");
  }
  if (shape.weight_bytes == 0) return invalid_argument("generate_dtr_log: weight_bytes is 0");
  LogWriter log(shape.seed);
  Network g = make_network(log, shape.generator_layers, shape.weight_bytes);
  Network d = make_network(log, shape.discriminator_layers, shape.weight_bytes);
  const std::string noise = log.constant(shape.min_activation_bytes);
  const std::string real = log.constant(shape.max_activation_bytes);

  std::string fake;
  const std::vector<std::string> g_saved = forward(log, g, noise, shape, fake);
  // The discriminator's step: on the real batch and on the generator's output, detached.
  std::string d_real_out;
  std::vector<std::string> d_saved = forward(log, d, real, shape, d_real_out);
  const std::string detached = log.call("detach", {fake}, 0, 0);
  std::string d_fake_out;
  std::vector<std::string> d_fake_saved = forward(log, d, detached, shape, d_fake_out);
  d_saved.insert(d_saved.end(), d_fake_saved.begin(), d_fake_saved.end());
  log.annotate("BACKWARD");
  const std::string d_loss = log.call("loss", {d_real_out, d_fake_out}, 4);
  std::vector<std::string> d_grads = backward(log, d, shape, d_saved, d_loss);
  log.release(detached);
  step(log, d, d_grads);
  // The generator's step, through the updated discriminator.
  std::string g_out;
  std::vector<std::string> dg_saved = forward(log, d, fake, shape, g_out);
  const std::string g_loss = log.call("loss", {g_out}, 4);
  std::vector<std::string> all = g_saved;
  all.insert(all.end(), dg_saved.begin(), dg_saved.end());
  std::vector<std::string> grads = backward(log, d, shape, all, g_loss);
  for (std::size_t i = 0; i < d.weights.size(); ++i) log.release(grads[i]);
  grads.assign(g.weights.size(), std::string());
  for (std::size_t i = 0; i < g.weights.size(); ++i) {
    grads[i] = log.call("weight_grad", {g.weights[i]}, 16);
  }
  step(log, g, grads);
  return log.text();
}

}  // namespace ebb
