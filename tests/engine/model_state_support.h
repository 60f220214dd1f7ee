// A small model for the model-state tests (model_state_test.cc, offload_step_test.cc): five
// parameters in two groups and three slices, with initial values that differ per element.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/optim/flat_layout.h"

namespace ebb::test_support {

// w1 (a 3 x 100 matrix) and b1 share slice 0, w2 and b2 slice 1, gain slice 2.
inline std::vector<ParameterDecl> small_model() {
  return {
      {"w1", {3, 100}, ParameterGroup::kDecay, 0},  // 300 elements
      {"b1", {3}, ParameterGroup::kNoDecay, 0},    {"w2", {4, 3}, ParameterGroup::kDecay, 1},  // 12
      {"b2", {4}, ParameterGroup::kNoDecay, 1},    {"gain", {5}, ParameterGroup::kNoDecay, 2},
  };
}

inline std::vector<std::vector<float>> initial_values(const std::vector<ParameterDecl>& params) {
  std::vector<std::vector<float>> values;
  for (std::size_t p = 0; p < params.size(); ++p) {
    std::vector<float> v(static_cast<std::size_t>(shape_numel(params[p].shape)));
    for (std::size_t i = 0; i < v.size(); ++i) {
      v[i] = 0.01F * static_cast<float>((i * 7 + p * 13) % 29) - 0.1F;
    }
    values.push_back(std::move(v));
  }
  return values;
}

}  // namespace ebb::test_support
