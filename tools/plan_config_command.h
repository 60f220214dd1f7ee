// `ebb plan --model ...`: the configuration mode of `ebb plan` (plan_config_command.cc).
#pragma once

#include <string>

#include "tools/report/report_files.h"

namespace ebb::cli {

struct ConfigArgs {
  std::string model;  // a preset (tools/train/gpt_config.h)
  std::string hw_file;
  std::string hw_dir;  // --compare-hw: the profiles to compare
  int gpus = 1;
  int zero = -1;  // -1: none given
  int micro_batch = 1;
  int seq = 0;  // 0: the preset's
  int grad_accum = 1;
  long long global_batch = 0;  // 0: gpus x micro_batch x grad_accum
  std::string precision = "bf16";
  std::string policy = "plan";
  std::string budget;           // empty: the chip's memory
  std::string optimizer_state;  // empty: device
  std::string host_memory;      // empty: the chip's
  double nvme_gbps = 0;         // 0: the chip's
  bool search = false;
  bool compare_hw = false;
  bool json = false;
  // --report, --chrome-trace: of the configuration answered (what would fit, where it does not;
  // --search: the fastest that fits), from a simulation of it run once more.
  report::ReportPaths reports;
};

// Exit status: 0 when the configuration fits (--search: when one does; --compare-hw: when the
// comparison ran); 1 when it does not (the answer, on stdout, says what would), and 1 with an
// error on stderr naming the field for bad input, as `ebb plan` does.
int run_plan_config(const ConfigArgs& args);

}  // namespace ebb::cli
