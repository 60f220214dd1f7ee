// A generated DTR log that makes dynamic eviction thrash, shared by the thrash limit's tests
// (tests/engine/thrash_test.cc) and the command line's (tests/tools/ebb_cli_test.cc): one
// iteration of a binary tree recurrent model. Every node's state depends on its whole subtree
// and the backward pass reads the states from the root down, so under a tight budget the replay
// chains reach back to the leaves (the shape of tools/make_workload.py's tree_recurrent_train).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ebb::test_logs {

// A DTR log of one iteration of a binary tree recurrent model of `depth` levels whose states
// are `vec_bytes` each; every op costs 10 us.
inline std::string tree_recurrent_log(int depth, std::size_t vec_bytes) {
  std::string log;
  int next = 0;
  const auto name = [&] { return "x" + std::to_string(next++); };
  const auto call = [&](const std::string& op, const std::vector<std::string>& args,
                        std::size_t bytes) {
    const std::string out = name();
    std::string a;
    for (const std::string& s : args) a += (a.empty() ? "\"" : ",\"") + s + "\"";
    log += R"({"INSTRUCTION":"CALL","NAME":")" + op + R"(","ARGS":[)" + a + R"(],"RESULT":[")" +
           out + R"("],"TIME":"10000"})" + "\n";
    log += R"({"INSTRUCTION":"MEMORY","NAME":")" + out + R"(","MEMORY":")" + std::to_string(bytes) +
           "\"}\n";
    log += R"({"INSTRUCTION":"ALIAS","NAME":")" + out + R"(","ALIAS":"-1"})" + "\n";
    return out;
  };
  const auto release = [&](const std::string& n) {
    log += R"({"INSTRUCTION":"RELEASE","NAME":")" + n + "\"}\n";
  };
  const std::string weight = name();
  log += R"({"INSTRUCTION":"CONSTANT","NAME":")" + weight + "\"}\n";
  log += R"({"INSTRUCTION":"MEMORY","NAME":")" + weight + R"(","MEMORY":"65536"})" + "\n";
  const int nodes = (1 << depth) - 1;
  const int leaves = 1 << (depth - 1);
  std::vector<std::string> h(nodes + 1), saved(nodes + 1);
  for (int node = nodes; node >= 1; --node) {
    const std::string x = node >= leaves ? call("embedding", {weight}, vec_bytes)
                                         : call("cat", {h[2 * node], h[2 * node + 1]}, vec_bytes);
    saved[node] = call("mv", {weight, x}, vec_bytes);
    h[node] = call("tanh", {saved[node]}, vec_bytes);
    release(x);
  }
  std::vector<std::string> grad(nodes + 1);
  grad[1] = call("ones_like", {h[1]}, vec_bytes);
  for (int node = 1; node <= nodes; ++node) {
    const std::string g = call("tanh_backward", {grad[node], saved[node], h[node]}, vec_bytes);
    release(grad[node]);
    release(saved[node]);
    release(h[node]);
    if (node < leaves) {
      grad[2 * node] = call("slice", {g}, vec_bytes);
      grad[2 * node + 1] = call("slice", {g}, vec_bytes);
    }
    release(g);
  }
  return log;
}

}  // namespace ebb::test_logs
