// `ebb checkpoint export DIR --out FILE`: the consolidated fp32 weights of the latest checkpoint
// in DIR (sharded by any number of ZeRO ranks, or one process's) as one weights file
// (engine/schema/weights_file.h) that one process loads, e.g. with `ebb train --init-from`.
#include <cstdio>
#include <memory>
#include <string>

#include "tools/commands.h"
#include "tools/train/checkpoint_io.h"

namespace ebb::cli {
namespace {

struct ExportArgs {
  std::string dir;
  std::string out;
  bool optimizer_state = false;
};

int run_export(const ExportArgs& args) {
  Result<WeightsFile> weights = train::export_checkpoint(args.dir, args.optimizer_state);
  if (!weights.ok()) {
    return report_error(
        Status(weights.status().code(), "checkpoint export: " + weights.status().message()));
  }
  const Status written = write_weights_file(args.out, *weights);
  if (!written.ok()) {
    return report_error(Status(written.code(), "checkpoint export: " + written.message()));
  }
  std::size_t values = 0;
  for (const NamedTensor& t : weights->tensors) values += t.values.size();
  std::printf("exported %zu tensors (%zu fp32 values) of %s into %s\n", weights->tensors.size(),
              values, args.dir.c_str(), args.out.c_str());
  return 0;
}

}  // namespace

Command add_checkpoint_command(CLI::App& parent) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* app = parent.add_subcommand("checkpoint", "work with training checkpoints");
  app->require_subcommand(1);
  CLI::App* exp = app->add_subcommand(
      "export", "write the latest checkpoint's consolidated fp32 weights into one weights file");
  exp->add_option("dir", args->dir, "the checkpoint directory (--checkpoint-dir of ebb train)")
      ->required();
  exp->add_option("--out", args->out, "the weights file to write (atomically)")->required();
  exp->add_flag("--optimizer-state", args->optimizer_state,
                "also export every parameter's optimizer state (\"optimizer/<buffer>/<name>\")");
  return {app, [args] { return run_export(*args); }};
}

}  // namespace ebb::cli
