// The guillotine generator of arena_generate.h.
#include "allocator/arena_generate.h"

#include <algorithm>
#include <random>
#include <string>

namespace ebb {
namespace {

struct Rectangle {
  std::int64_t t0, t1;  // time span [t0, t1)
  std::size_t y0, y1;   // bytes [y0, y1)
};

}  // namespace

Result<TightProblem> generate_tight_problem(const TightProblemOptions& options) {
  const std::size_t n = options.buffers;
  const std::int64_t steps =
      options.time_steps != 0 ? options.time_steps : 2 * static_cast<std::int64_t>(n);
  if (n == 0) return invalid_argument("generate_tight_problem: buffers is 0");
  if (steps <= 0) {
    return invalid_argument("generate_tight_problem: time_steps " + std::to_string(steps) +
                            " is not positive");
  }
  if (options.capacity_bytes == 0 || n > options.capacity_bytes * static_cast<std::size_t>(steps)) {
    return invalid_argument("generate_tight_problem: a strip of capacity_bytes " +
                            std::to_string(options.capacity_bytes) + " x time_steps " +
                            std::to_string(steps) + " cannot be cut into " + std::to_string(n) +
                            " buffers");
  }
  std::mt19937_64 rng(options.seed);
  std::vector<Rectangle> pieces{{0, steps, 0, options.capacity_bytes}};
  // Each round splits one piece into two, so n - 1 rounds make n pieces. A piece is picked
  // with probability proportional to its area in strip fractions, so that sizes and lifetimes
  // both vary; a 1 x 1 piece cannot be split, and the area test below skips it.
  const double strip_area =
      static_cast<double>(steps) * static_cast<double>(options.capacity_bytes);
  while (pieces.size() < n) {
    std::vector<double> weight(pieces.size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const Rectangle& r = pieces[i];
      const bool splittable = r.t1 - r.t0 >= 2 || r.y1 - r.y0 >= 2;
      weight[i] = splittable ? static_cast<double>(r.t1 - r.t0) * static_cast<double>(r.y1 - r.y0) /
                                   strip_area
                             : 0;
    }
    // n <= C x T, so some piece has an area of 2 or more while fewer than n exist.
    std::discrete_distribution<std::size_t> pick(weight.begin(), weight.end());
    Rectangle& r = pieces[pick(rng)];
    const bool can_time = r.t1 - r.t0 >= 2;
    const bool can_bytes = r.y1 - r.y0 >= 2;
    const bool in_time = can_time && (!can_bytes || std::bernoulli_distribution(0.5)(rng));
    Rectangle other = r;
    if (in_time) {
      const std::int64_t cut = std::uniform_int_distribution<std::int64_t>(r.t0 + 1, r.t1 - 1)(rng);
      r.t1 = cut;
      other.t0 = cut;
    } else {
      const std::size_t cut = std::uniform_int_distribution<std::size_t>(r.y0 + 1, r.y1 - 1)(rng);
      r.y1 = cut;
      other.y0 = cut;
    }
    pieces.push_back(other);
  }
  std::shuffle(pieces.begin(), pieces.end(), rng);
  TightProblem problem;
  problem.capacity_bytes = options.capacity_bytes;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Rectangle& r = pieces[i];
    problem.buffers.push_back(
        PlanBuffer{.id = i, .lower = r.t0, .upper = r.t1, .size_bytes = r.y1 - r.y0});
    problem.offsets.push_back(r.y0);
  }
  return problem;
}

}  // namespace ebb
