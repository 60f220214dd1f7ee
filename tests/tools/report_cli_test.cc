// `ebb report`, `ebb plan --report` and `ebb train --report` run as a user runs them (the built
// binary, EBB_CLI_PATH): the files they write, and the errors for bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/planner/simulator.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "tests/engine/training_profile.h"
#include "tools/report/report_input.h"

namespace {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `ebb <args>` through the shell, stderr kept apart.
CliRun ebb(const std::string& args, const std::string& dir) {
  static int calls = 0;
  const std::string err_path = dir + "/stderr_" + std::to_string(calls++) + ".txt";
  const std::string command =
      "timeout 300 " + std::string(EBB_CLI_PATH) + " " + args + " 2>" + err_path;
  CliRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) run.out.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.err = slurp(err_path);
  std::filesystem::remove(err_path);
  return run;
}

// The figures a report embeds for tools (script#report-data).
nlohmann::json report_data(const std::string& html_path) {
  const std::string html = slurp(html_path);
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  const std::size_t start = html.find(open);
  if (start == std::string::npos) return {};
  const std::size_t end = html.find("</script>", start);
  return nlohmann::json::parse(html.substr(start + open.size(), end - start - open.size()));
}

class ReportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "ebb_report_cli_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(
        ebb::write_profile(ebb::testing_profiles::training_profile(12, 3), path("p.json")).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(ReportCliTest, ReportsAProfileAndThePlanThatEbbPlanWrote) {
  const CliRun planned =
      ebb("plan " + path("p.json") + " --budget 60% --link-gbps 8 --out " + path("plan.json") +
              " --report " + path("plan.html") + " --chrome-trace " + path("plan.trace.json"),
          dir_);
  ASSERT_EQ(planned.exit_code, 0) << planned.err;
  const CliRun reported = ebb("report " + path("p.json") + " --plan " + path("plan.json") + " -o " +
                                  path("r.html") + " --chrome-trace " + path("t.json"),
                              dir_);
  ASSERT_EQ(reported.exit_code, 0) << reported.err;
  EXPECT_NE(reported.out.find("report written to " + path("r.html")), std::string::npos);
  const nlohmann::json from_report = report_data(path("r.html"));
  const nlohmann::json from_plan = report_data(path("plan.html"));
  EXPECT_EQ(from_report["plan_policy"], "plan");
  EXPECT_GT(from_report["decision_rows"].get<int>(), 0);
  // Both show the same plan of the same profile.
  for (const char* field : {"peak_bytes", "decision_rows", "budget_bytes", "step_ns"}) {
    EXPECT_EQ(from_report[field], from_plan[field]) << field;
  }
  EXPECT_TRUE(nlohmann::json::parse(slurp(path("t.json"))).contains("traceEvents"));
  EXPECT_TRUE(nlohmann::json::parse(slurp(path("plan.trace.json"))).contains("traceEvents"));
}

TEST_F(ReportCliTest, APlanOfAnotherProfileIsRefusedNamingBothKeys) {
  const ebb::Profile other = ebb::testing_profiles::training_profile(13, 3);
  ASSERT_TRUE(ebb::write_profile(other, path("other.json")).ok());
  ASSERT_EQ(ebb("plan " + path("other.json") + " --budget 60% --link-gbps 8 --out " +
                    path("other_plan.json"),
                dir_)
                .exit_code,
            0);
  const CliRun run = ebb(
      "report " + path("p.json") + " --plan " + path("other_plan.json") + " -o " + path("r.html"),
      dir_);
  EXPECT_EQ(run.exit_code, 1);
  ebb::Result<ebb::Profile> mine = ebb::read_profile(path("p.json"));
  ASSERT_TRUE(mine.ok());
  const std::string other_key = ebb::report::describe_key(ebb::profile_key(other));
  const std::string my_key = ebb::report::describe_key(ebb::profile_key(*mine));
  EXPECT_NE(run.err.find(other_key), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(my_key), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(path("other_plan.json")), std::string::npos) << run.err;
  EXPECT_FALSE(std::filesystem::exists(path("r.html")));
}

TEST_F(ReportCliTest, AnOutputThatCannotBeWrittenIsAnErrorAndLeavesNothing) {
  const CliRun missing_dir = ebb("report " + path("p.json") + " -o " + path("no/dir/r.html"), dir_);
  EXPECT_EQ(missing_dir.exit_code, 1);
  EXPECT_NE(missing_dir.err.find(path("no/dir/r.html")), std::string::npos) << missing_dir.err;
  std::filesystem::create_directory(path("taken.html"));
  const CliRun directory = ebb("report " + path("p.json") + " -o " + path("taken.html"), dir_);
  EXPECT_EQ(directory.exit_code, 1);
  EXPECT_NE(directory.err.find("is a directory"), std::string::npos) << directory.err;
  // ebb train refuses before it trains.
  const CliRun train =
      ebb("train --layers 1 --d-model 32 --heads 2 --seq 16 --batch 2 --steps 3 "
          "--report " +
              path("no/dir/t.html"),
          dir_);
  EXPECT_EQ(train.exit_code, 1);
  EXPECT_EQ(train.out.find("step "), std::string::npos) << train.out;
  EXPECT_NE(train.err.find("--report " + path("no/dir/t.html")), std::string::npos) << train.err;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "p.json" || name == "taken.html") << "left behind: " << name;
  }
  EXPECT_TRUE(std::filesystem::is_empty(path("taken.html")));
}

TEST_F(ReportCliTest, TrainWritesAReportOfItsMeasuredSteps) {
  const CliRun run =
      ebb("train --layers 1 --d-model 64 --heads 2 --seq 32 --batch 2 --steps 4 "
          "--budget 70% --policy plan --link-gbps 8 --report " +
              path("train.html") + " --chrome-trace " + path("train.json"),
          dir_);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("report written to"), std::string::npos);
  EXPECT_EQ(run.out.find("profile written to"), std::string::npos);  // a temporary one
  const nlohmann::json data = report_data(path("train.html"));
  EXPECT_GT(data["measured_step_ms"].get<double>(), 0);
  EXPECT_GT(data["budget_bytes"].get<double>(), 0);
  EXPECT_GT(data["ops"].get<int>(), 0);
  EXPECT_TRUE(nlohmann::json::parse(slurp(path("train.json"))).contains("traceEvents"));
}

// ebb plan --model: the configuration answered, simulated once more and reported as a run. The
// sim's clock is virtual, so the report's step is the answer's.
TEST_F(ReportCliTest, PlanReportsTheConfigurationItAnswers) {
  const std::string hw = EBB_SOURCE_DIR "/profiles/hw/h100-sxm.json";
  const CliRun run = ebb("plan --model gpt2-124m --seq 128 --hw " + hw +
                             " --optimizer-state host --json --report " + path("r.html") +
                             " --chrome-trace " + path("r.json"),
                         dir_);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // The answer is stdout's one line of JSON.
  const std::string out = run.out.substr(0, run.out.find('\n'));
  const nlohmann::json answer = nlohmann::json::parse(out)["configuration"];
  const nlohmann::json data = report_data(path("r.html"));
  EXPECT_NEAR(data["measured_step_ms"].get<double>() / answer["step_ms"].get<double>(), 1.0, 0.01);
  EXPECT_EQ(data["budget_bytes"].get<double>(), 80.0 * (1 << 30));
  EXPECT_GT(data["ops"].get<int>(), 0);
  EXPECT_TRUE(nlohmann::json::parse(slurp(path("r.json"))).contains("traceEvents"));

  const CliRun compare =
      ebb("plan --model gpt2-124m --compare-hw --report " + path("c.html"), dir_);
  EXPECT_EQ(compare.exit_code, 1);
  EXPECT_NE(compare.err.find("--compare-hw"), std::string::npos) << compare.err;
  EXPECT_FALSE(std::filesystem::exists(path("c.html")));
}

}  // namespace
