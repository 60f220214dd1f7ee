// Generated training-like profiles for the planner and simulator tests: a chain of `layers`
// layers (forward a_i = f(a_{i-1}, w_i), optionally reading a_{i-2} too as a skip connection),
// then the backward pass in reverse (g_i = b(g_{i+1}, a_{i-1}, w_i)), every activation and
// gradient freed after its last use except the last gradient. Sizes and durations are drawn
// from `seed`.
#pragma once

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "engine/schema/profile.h"

namespace ebb::testing_profiles {

inline Profile training_profile(std::size_t layers, unsigned seed, bool skips = true) {
  std::mt19937 rng(seed);
  auto draw = [&](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  Profile p;
  p.source = "generated";
  const std::size_t L = layers;
  // Tensor ids: w_i = i, x = L, a_i = L + 1 + i, g_i = 2L + 1 + i.
  auto w = [&](std::size_t i) { return i; };
  auto a = [&](std::size_t i) { return L + 1 + i; };
  auto g = [&](std::size_t i) { return 2 * L + 1 + i; };
  const std::size_t x = L;
  p.tensors.resize(3 * L + 1);
  for (std::size_t id = 0; id < p.tensors.size(); ++id) {
    ProfiledTensor& t = p.tensors[id];
    t.id = id;
    t.dtype = DType::kU8;
    t.bytes = draw(1, 8) * 1024 * 1024 + draw(0, 4095);
    t.kind = id < L           ? TensorKind::kParameter
             : id == L        ? TensorKind::kInput
             : id < 2 * L + 1 ? TensorKind::kActivation
                              : TensorKind::kGradient;
    t.name = (id < L           ? "w"
              : id == L        ? "x"
              : id < 2 * L + 1 ? "a"
                               : "g") +
             std::to_string(id < L           ? id
                            : id == L        ? 0
                            : id < 2 * L + 1 ? id - L - 1
                                             : id - 2 * L - 1);
  }
  auto input_of = [&](std::size_t i) { return i == 0 ? x : a(i - 1); };
  for (std::size_t i = 0; i < L; ++i) {
    ProfiledOp op;
    op.index = p.ops.size();
    op.name = "forward";
    op.inputs = {input_of(i), w(i)};
    if (skips && i >= 2 && draw(0, 2) == 0) op.inputs.push_back(a(i - 2));
    op.outputs = {a(i)};
    op.duration_ns = static_cast<std::int64_t>(draw(10, 400)) * 1000;
    p.ops.push_back(op);
  }
  for (std::size_t j = 0; j < L; ++j) {
    const std::size_t i = L - 1 - j;
    ProfiledOp op;
    op.index = p.ops.size();
    op.name = "backward";
    op.inputs = {i == L - 1 ? a(L - 1) : g(i + 1), input_of(i), w(i)};
    op.outputs = {g(i)};
    op.duration_ns = static_cast<std::int64_t>(draw(20, 800)) * 1000;
    p.ops.push_back(op);
  }
  for (const ProfiledOp& op : p.ops) {
    for (std::size_t id : op.outputs) p.tensors[id].producer = op.index;
    for (std::size_t id : op.inputs) {
      std::vector<std::size_t>& acc = p.tensors[id].accesses;
      if (acc.empty() || acc.back() != op.index) acc.push_back(op.index);
    }
  }
  for (const ProfiledTensor& t : p.tensors) {
    if (t.kind != TensorKind::kActivation && t.kind != TensorKind::kGradient) continue;
    if (t.id == g(0)) continue;
    p.ops[t.last_use().value()].frees.push_back(t.id);
  }
  const std::vector<std::size_t> live = recompute_live_bytes(p);
  for (std::size_t k = 0; k < p.ops.size(); ++k) p.memory.push_back({live[k], 0});
  return p;
}

}  // namespace ebb::testing_profiles
