// generate_dtr_log: synthetic training iterations in the DTR log format (allocator/dtr_log.h), for
// tests that need workloads nobody tuned on. The shape is a GAN step, the case that broke ebb on
// a real log: a generator and a discriminator of random depth and sizes; batch norms whose
// running statistics (constants) an in-place MUTATE rebinds right after the op that read them;
// in-place activations (MUTATE on the activation); views (ALIAS k) and extra handles (COPY) of
// activations; constants entered the way PyTorch logs them (CONSTANT, COPY, RELEASE of the first
// handle); the discriminator's step (MUTATE of its weights) between its backward pass and the
// generator's; the generator's step at the end. Every intermediate handle is released once the
// backward pass read it, so the log's storages die as a real one's do.
//
// Thread safety: pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/status.h"

namespace ebb {

struct DtrLogShape {
  std::uint64_t seed = 1;
  std::size_t generator_layers = 4;             // REQUIRES: 1..64
  std::size_t discriminator_layers = 3;         // REQUIRES: 1..64
  std::size_t min_activation_bytes = 4 << 20;   // 4 MiB; REQUIRES: > 0
  std::size_t max_activation_bytes = 32 << 20;  // 32 MiB; REQUIRES: >= min
  std::size_t weight_bytes = 1 << 20;           // 1 MiB per layer's weight; REQUIRES: > 0
};

// The log's text (one JSON object a line, first line START). kInvalidArgument naming the field
// when the shape breaks a REQUIRES.
Result<std::string> generate_dtr_log(const DtrLogShape& shape);

}  // namespace ebb
