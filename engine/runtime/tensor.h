// Tensor and TensorSpec: how a training loop names the tensors it runs through an Engine.
//
// A TensorSpec describes a tensor to create (name, shape, dtype, kind). A Tensor is a small
// copyable handle {engine, id} to one tensor of one Engine; the engine owns the storage, which
// may be resident on the device, swapped to host, or dropped and recomputable. A handle stays
// valid until the tensor is released (Engine::release, or end_iteration for a tensor that was
// not kept); using it after that is kInvalidArgument naming the tensor.
//
// Thread safety: a Tensor's accessors read its engine's tables: call them from the thread that
// drives the engine (see engine.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema/tensor_kind.h"

namespace ebb {

class Engine;

// What to create: an op's output, an input or a parameter.
struct TensorSpec {
  std::string name;                 // for error messages, traces and profiles
  std::vector<std::int64_t> shape;  // elements per dimension; every dimension > 0
  DType dtype = DType::kF32;
  TensorKind kind = TensorKind::kActivation;
};

// Elements of `shape` times dtype_bytes(dtype); 0 when a dimension is not positive or the
// product overflows.
std::size_t tensor_bytes(const std::vector<std::int64_t>& shape, DType dtype);

// A handle to one tensor of one Engine. Default-constructed: no tensor (valid() is false).
class Tensor {
 public:
  Tensor() = default;
  Tensor(Engine* engine, std::uint64_t id) : engine_(engine), id_(id) {}

  bool valid() const { return engine_ != nullptr; }
  Engine* engine() const { return engine_; }
  // Unique within its engine: a slot and a generation, never reused by another tensor.
  std::uint64_t id() const { return id_; }

  // REQUIRES for the accessors below: a live tensor (not released) of a live engine.
  const std::string& name() const;
  const std::vector<std::int64_t>& shape() const;
  DType dtype() const;
  TensorKind kind() const;
  std::size_t bytes() const;

  friend bool operator==(const Tensor&, const Tensor&) = default;

 private:
  Engine* engine_ = nullptr;
  std::uint64_t id_ = 0;
};

}  // namespace ebb
