// SplitMix64 and a normal sampler on it: the trainer's random numbers (weight init, synthetic
// tokens). Written out here rather than taken from <random>, whose distributions differ between
// standard libraries: the same seed must give the same model everywhere.
//
// Thread safety: one generator per thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

namespace ebb::train {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: 53 random bits, never 0 (Box-Muller takes its log).
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }
  // Standard normal by Box-Muller (one of the pair; simplicity over speed).
  double normal() {
    const double u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::uint64_t state_;
};

}  // namespace ebb::train
