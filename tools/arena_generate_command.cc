// `ebb arena-generate OUT.csv`: writes a tight static allocation problem whose optimum is known
// (arena_generate.h) as a MiniMalloc CSV, with the offsets of the packing the cuts define in an
// `offset` column, so that `ebb arena-plan` can be measured on problems it was never tuned on.
#include <memory>
#include <string>

#include "allocator/arena_csv.h"
#include "allocator/arena_generate.h"
#include "tools/commands.h"

namespace ebb::cli {
namespace {

struct ArenaGenerateArgs {
  std::string out;
  TightProblemOptions options;
};

int run_arena_generate(const ArenaGenerateArgs& args) {
  Result<TightProblem> generated = generate_tight_problem(args.options);
  if (!generated.ok()) return report_error(generated.status());
  ArenaProblem problem;
  problem.path = args.out;
  problem.buffers = generated->buffers;
  for (const PlanBuffer& b : problem.buffers) problem.ids.push_back(std::to_string(b.id));
  if (Status written = write_arena_csv(args.out, problem, generated->offsets); !written.ok()) {
    return report_error(written);
  }
  return 0;
}

}  // namespace

Command add_arena_generate_command(CLI::App& parent) {
  auto args = std::make_shared<ArenaGenerateArgs>();
  CLI::App* app = parent.add_subcommand(
      "arena-generate",
      "Write a tight arena problem with a known optimum: a full strip cut into random "
      "rectangles, shuffled (name it NAME.CAPACITY.csv for arena-plan to read the capacity)");
  app->add_option("OUT", args->out, "CSV to write (id,lower,upper,size,offset)")->required();
  app->add_option("--buffers", args->options.buffers, "number of buffers (default 200)")
      ->check(CLI::PositiveNumber);
  app->add_option("--capacity", args->options.capacity_bytes,
                  "strip height in bytes, the optimum (default 1048576)")
      ->check(CLI::PositiveNumber);
  app->add_option("--time-steps", args->options.time_steps, "strip length (default: 2 x buffers)")
      ->check(CLI::PositiveNumber);
  app->add_option("--seed", args->options.seed, "random seed (default 1)");
  return Command{app, [args] { return run_arena_generate(*args); }};
}

}  // namespace ebb::cli
