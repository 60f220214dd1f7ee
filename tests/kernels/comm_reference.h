// The collectives of kernels/comm/communicator.h by their definitions, computed on the host for
// every rank's input at once, and the unequal per-rank inputs the comm tests feed them. Shared
// by comm_test.cc (single, mpi) and comm_nccl_test.cc (nccl).
//
// Inputs are small integers (and bytes), so that every float sum is exact in fp32 whatever the
// order a library adds them in, and exact again when rounded to bf16 or fp16: a test compares
// bits, not tolerances.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/comm/communicator.h"
#include "kernels/nn_scalar.h"

namespace ebb::comm_reference {

using Bytes = std::vector<std::uint8_t>;

// What element i of rank r's input stands for: an integer in [-11, 11] for the float types, a
// byte value for kByte; a different sequence on every rank.
inline float element(int r, std::size_t i, CommDType t) {
  if (t == CommDType::kByte) return static_cast<float>((r * 37 + i * 11 + 5) % 256);
  return static_cast<float>(static_cast<int>(((r + 1) * 7 + i * 3) % 23) - 11);
}

inline Bytes encode(const std::vector<float>& values, CommDType t) {
  Bytes out(values.size() * comm_dtype_bytes(t));
  for (std::size_t i = 0; i < values.size(); i++) {
    switch (t) {
      case CommDType::kF32:
        std::memcpy(out.data() + 4 * i, &values[i], 4);
        break;
      case CommDType::kBF16:
      case CommDType::kF16: {
        const std::uint16_t bits =
            t == CommDType::kBF16 ? nn::f32_to_bf16(values[i]) : nn::f32_to_f16(values[i]);
        std::memcpy(out.data() + 2 * i, &bits, 2);
        break;
      }
      case CommDType::kByte:
        out[i] = static_cast<std::uint8_t>(values[i]);
        break;
    }
  }
  return out;
}

inline std::vector<float> decode(const Bytes& bytes, CommDType t) {
  const std::size_t n = bytes.size() / comm_dtype_bytes(t);
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; i++) {
    if (t == CommDType::kF32) {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    } else if (t == CommDType::kByte) {
      out[i] = bytes[i];
    } else {
      std::uint16_t bits = 0;
      std::memcpy(&bits, bytes.data() + 2 * i, 2);
      out[i] = t == CommDType::kBF16 ? nn::bf16_to_f32(bits) : nn::f16_to_f32(bits);
    }
  }
  return out;
}

// Rank r's input: the first n elements of its sequence.
inline Bytes input(int r, std::size_t n, CommDType t) {
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; i++) values[i] = element(r, i, t);
  return encode(values, t);
}

// The sum over ranks of element `i` of each rank's input: in fp32, rounded to t once; bytes wrap
// modulo 256.
inline float sum_over_ranks(int size, std::size_t i, CommDType t) {
  float sum = 0;
  for (int r = 0; r < size; r++) sum += element(r, i, t);
  if (t == CommDType::kByte) return static_cast<float>(static_cast<int>(sum) % 256);
  return decode(encode({sum}, t), t)[0];
}

// The expected results on rank `me` of `size`, each for inputs made by input() above.
inline Bytes all_reduce(int size, std::size_t count, CommDType t) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; i++) out[i] = sum_over_ranks(size, i, t);
  return encode(out, t);
}

inline Bytes reduce_scatter(int me, int size, std::size_t recv_count, CommDType t) {
  std::vector<float> out(recv_count);
  for (std::size_t i = 0; i < recv_count; i++) {
    out[i] = sum_over_ranks(size, static_cast<std::size_t>(me) * recv_count + i, t);
  }
  return encode(out, t);
}

inline Bytes all_gather(int size, std::size_t send_count, CommDType t) {
  std::vector<float> out(static_cast<std::size_t>(size) * send_count);
  for (int r = 0; r < size; r++) {
    for (std::size_t i = 0; i < send_count; i++) out[r * send_count + i] = element(r, i, t);
  }
  return encode(out, t);
}

inline Bytes all_to_all(int me, int size, std::size_t count, CommDType t) {
  std::vector<float> out(static_cast<std::size_t>(size) * count);
  for (int r = 0; r < size; r++) {
    for (std::size_t i = 0; i < count; i++) {
      out[r * count + i] = element(r, static_cast<std::size_t>(me) * count + i, t);
    }
  }
  return encode(out, t);
}

inline Bytes broadcast(int root, std::size_t count, CommDType t) { return input(root, count, t); }

}  // namespace ebb::comm_reference
