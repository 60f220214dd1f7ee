// What the trainer tests share (train_model_state_test.cc, train_offload_test.cc).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tools/train/trainer.h"

namespace ebb::train::test_support {

// A fresh path under the test temporary directory, unique to the process.
inline std::string temp_dir(const std::string& prefix, const std::string& name) {
  std::string dir = testing::TempDir() + prefix + "_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

// train(o) fails before any step runs, with `needle` in its message.
inline void expect_refused(const TrainOptions& o, const std::string& needle) {
  int steps_run = 0;
  Result<TrainResult> r = train(o, [&](const StepStats&) { ++steps_run; });
  EXPECT_FALSE(r.ok()) << needle;
  EXPECT_EQ(steps_run, 0) << needle;
  if (!r.ok()) {
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().to_string();
  }
}

}  // namespace ebb::train::test_support
