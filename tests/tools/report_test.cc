// The report's pieces (tools/report/): the memory curve by kind, the timeline's lanes, the Chrome
// trace, the decision table, the HTML, and the files the commands write, including bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/planner/planner.h"
#include "engine/planner/simulator.h"
#include "engine/schema/plan.h"
#include "engine/schema/profile.h"
#include "tests/engine/training_profile.h"
#include "tools/report/chrome_trace.h"
#include "tools/report/decision_table.h"
#include "tools/report/memory_series.h"
#include "tools/report/report_files.h"
#include "tools/report/report_html.h"
#include "tools/report/report_input.h"
#include "tools/report/timeline.h"

namespace ebb::report {
namespace {

using testing_profiles::training_profile;

// Tensor ids of training_profile(4, seed, false): w_i = i, x = 4, a_i = 5 + i, g_i = 9 + i; op i
// makes a_i, op 4 + j makes g_{3-j}; a_i is read by op i+1 and by the backward of layer i+1.
constexpr std::size_t kA0 = 5;
constexpr std::size_t kA1 = 6;

Profile small_profile() { return training_profile(4, 7, /*skips=*/false); }

// A plan for small_profile: a0 swapped out after op 1 and back before op 5 for op 6; a1 dropped
// after op 2 and recomputed before op 5.
Plan small_plan(const Profile& profile, double gbps) {
  Plan plan;
  plan.policy = "hand";
  plan.budget_bytes = 1;
  plan.profile = profile_key(profile);
  plan.hardware = link_hardware_model(gbps);
  plan.evictions.push_back({.tensor = kA0,
                            .method = EvictionMethod::kSwap,
                            .tier = OffloadTier::kHost,
                            .evict_after = 1,
                            .prefetch_at = 5,
                            .needed_at = 6});
  plan.evictions.push_back({.tensor = kA1,
                            .method = EvictionMethod::kRecompute,
                            .evict_after = 2,
                            .prefetch_at = 5,
                            .needed_at = 5});
  sort_evictions(plan.evictions);
  return plan;
}

std::string temp_dir(const std::string& name) {
  std::string dir =
      ::testing::TempDir() + "ebb_report_test_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST(MemoryCurveTest, WithoutAPlanTheStackIsTheProfilesLiveBytes) {
  for (unsigned seed : {1U, 2U, 3U}) {
    const Profile profile = training_profile(30, seed);
    ASSERT_TRUE(validate_profile(profile, "generated").ok());
    const MemoryCurve curve = memory_curve(profile, nullptr);
    ASSERT_EQ(curve.after_op.size(), profile.ops.size());
    for (std::size_t k = 0; k < profile.ops.size(); ++k) {
      EXPECT_EQ(total_bytes(curve.after_op[k]), profile.memory[k].live_bytes) << "op " << k;
    }
    EXPECT_EQ(curve.peak_bytes, profile_figures(profile).peak_live_bytes);
  }
}

TEST(MemoryCurveTest, SplitsByKindAndNamesOnlyTheKindsPresent) {
  Profile profile = small_profile();
  // A ZeRO collective scratch buffer is communication, other workspace is workspace.
  profile.tensors[kA1].kind = TensorKind::kWorkspace;
  profile.tensors[kA1].name = "zero.scratch";
  const MemoryCurve curve = memory_curve(profile, nullptr);
  std::vector<std::string> present;
  for (MemoryCategory c : curve.present) present.emplace_back(category_id(c));
  EXPECT_EQ(present, (std::vector<std::string>{"parameter", "gradient", "activation",
                                               "communication", "input"}));
  const auto comm = static_cast<std::size_t>(MemoryCategory::kCommunication);
  EXPECT_EQ(curve.after_op[0][comm], 0U);
  EXPECT_EQ(curve.after_op[1][comm], profile.tensors[kA1].bytes);  // made by op 1
}

TEST(MemoryCurveTest, AnEvictionTakesItsBytesOffForTheOpsItIsAway) {
  const Profile profile = small_profile();
  const Plan plan = small_plan(profile, 10);
  ASSERT_TRUE(validate_plan(plan, profile, "plan").ok());
  const MemoryCurve before = memory_curve(profile, nullptr);
  const MemoryCurve after = memory_curve(profile, &plan);
  const std::size_t a0 = profile.tensors[kA0].bytes;
  const std::size_t a1 = profile.tensors[kA1].bytes;
  for (std::size_t k = 0; k < profile.ops.size(); ++k) {
    std::size_t off = 0;
    if (k >= 2 && k < 5) off += a0;  // swapped out after op 1, copied back before op 5
    if (k >= 3 && k < 5) off += a1;  // dropped after op 2, rebuilt before op 5
    EXPECT_EQ(total_bytes(after.after_op[k]), total_bytes(before.after_op[k]) - off) << k;
  }
}

TEST(MemoryCurveTest, AHoldKeepsAFreedTensorUntilItsOp) {
  Profile profile = small_profile();
  // x (id 4, an input: no producer) read by op 0 only and freed right after it.
  constexpr std::size_t kX = 4;
  std::vector<std::size_t>& last_inputs = profile.ops[7].inputs;
  last_inputs.erase(std::remove(last_inputs.begin(), last_inputs.end(), kX), last_inputs.end());
  profile.tensors[kX].accesses = {0};
  profile.ops[0].frees.push_back(kX);
  const std::vector<std::size_t> live = recompute_live_bytes(profile);
  for (std::size_t k = 0; k < live.size(); ++k) profile.memory[k].live_bytes = live[k];
  ASSERT_TRUE(validate_profile(profile, "held").ok());
  Plan plan;
  plan.holds.push_back({.tensor = kX, .until = 3});
  const MemoryCurve before = memory_curve(profile, nullptr);
  const MemoryCurve after = memory_curve(profile, &plan);
  for (std::size_t k = 0; k < profile.ops.size(); ++k) {
    const std::size_t extra = k >= 1 && k <= 3 ? profile.tensors[kX].bytes : 0;
    EXPECT_EQ(total_bytes(after.after_op[k]), total_bytes(before.after_op[k]) + extra) << k;
  }
}

TEST(MemoryCurveTest, DecimationKeepsThePeakAndBoundsThePoints) {
  const Profile profile = training_profile(5000, 11);
  const MemoryCurve curve = memory_curve(profile, nullptr);
  const std::vector<std::size_t> ops = decimate_curve(curve, 2000);
  EXPECT_EQ(ops.size(), 2000U);
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end()));
  EXPECT_NE(std::find(ops.begin(), ops.end(), curve.peak_op), ops.end());
  EXPECT_EQ(decimate_curve(curve, 20000).size(), profile.ops.size());
}

// Events of one lane must not overlap (ends at or before the next start).
void expect_lanes_disjoint(const Timeline& t) {
  std::map<Lane, std::int64_t> end;
  for (const TimelineEvent& e : t.events) {
    EXPECT_GE(e.duration_ns, 0);
    EXPECT_GE(e.start_ns, end[e.lane]) << e.name;
    end[e.lane] = e.end_ns();
  }
}

TEST(TimelineTest, WithoutAPlanOpsRunBackToBack) {
  const Profile profile = small_profile();
  const Timeline t = build_timeline(profile, nullptr);
  std::int64_t at = 0;
  for (std::size_t k = 0; k < profile.ops.size(); ++k) {
    EXPECT_EQ(t.op_start_ns[k], at);
    at += profile.ops[k].duration_ns;
  }
  EXPECT_EQ(t.step_ns, at);
  EXPECT_EQ(t.base_compute_ns, profile_figures(profile).total_op_time_ns);
  EXPECT_EQ(t.events.size(), profile.ops.size());
  EXPECT_EQ(t.exposed_transfer_ns, 0);
}

TEST(TimelineTest, CollectivesRunOnTheCommunicationLane) {
  Profile profile = small_profile();
  profile.ops[5].name = "zero.reduce.block.s1";
  const Timeline t = build_timeline(profile, nullptr);
  const auto it = std::find_if(t.events.begin(), t.events.end(),
                               [](const TimelineEvent& e) { return e.op == 5U; });
  ASSERT_NE(it, t.events.end());
  EXPECT_EQ(it->lane, Lane::kCommunication);
  EXPECT_EQ(t.communication_ns, profile.ops[5].duration_ns);
  EXPECT_EQ(t.step_ns, profile_figures(profile).total_op_time_ns);
  expect_lanes_disjoint(t);
}

TEST(TimelineTest, APlansCopiesAndReplaysTakeTheirTime) {
  const Profile profile = small_profile();
  // A slow link (1 MB/s): the copy back of a0 cannot be hidden; op 6 waits for it.
  const Plan slow = small_plan(profile, 0.001);
  const Timeline t = build_timeline(profile, &slow);
  expect_lanes_disjoint(t);
  const std::size_t a0 = profile.tensors[kA0].bytes;
  std::map<std::string, int> categories;
  for (const TimelineEvent& e : t.events) ++categories[e.category];
  EXPECT_EQ(categories["swap_out"], 1);
  EXPECT_EQ(categories["swap_in"], 1);
  EXPECT_EQ(categories["recompute"], 1);
  EXPECT_EQ(t.extra_compute_ns, profile.ops[1].duration_ns);  // a1's producer, op 1
  const std::int64_t copy_ns = 5000 + static_cast<std::int64_t>(a0 / 1e6 * 1e9);
  EXPECT_GT(t.exposed_transfer_ns, 0);
  EXPECT_GE(t.step_ns, t.base_compute_ns + t.extra_compute_ns + t.exposed_transfer_ns);
  // The copy back starts after the copy out ends, and op 6 waits for both.
  EXPECT_GE(t.op_start_ns[6], t.op_start_ns[2] + 2 * copy_ns - 2);  // ns rounding
  // A fast link hides the copy: nothing exposed.
  const Plan fast = small_plan(profile, 1000);
  EXPECT_EQ(build_timeline(profile, &fast).exposed_transfer_ns, 0);
}

TEST(ChromeTraceTest, HasTheFormatsFieldsAndNestsPerThread) {
  const Profile profile = small_profile();
  const Plan plan = small_plan(profile, 0.01);
  ReportInput input;
  input.title = "t";
  input.profile = profile;
  input.plan = plan;
  const Timeline t = build_timeline(profile, &plan);
  const MemoryCurve curve = memory_curve(profile, &plan);
  const nlohmann::json trace = nlohmann::json::parse(chrome_trace_json(input, t, curve));
  ASSERT_TRUE(trace["traceEvents"].is_array());
  std::set<int> named_threads;
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> spans;
  std::size_t complete = 0;
  for (const nlohmann::json& e : trace["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph") && e.contains("pid") && e.contains("name")) << e.dump();
    const std::string ph = e["ph"];
    if (ph == "M" && e["name"] == "thread_name") named_threads.insert(e["tid"].get<int>());
    if (ph != "X") continue;
    ++complete;
    for (const char* field : {"cat", "ts", "dur", "tid"}) ASSERT_TRUE(e.contains(field)) << field;
    spans[{e["pid"].get<int>(), e["tid"].get<int>()}].emplace_back(e["ts"].get<double>(),
                                                                   e["dur"].get<double>());
  }
  EXPECT_EQ(complete, t.events.size());
  EXPECT_EQ(named_threads.size(), kLanes);
  for (auto& [thread, list] : spans) {
    std::sort(list.begin(), list.end());
    for (std::size_t i = 1; i < list.size(); ++i) {
      // The next event starts after the previous one ends (or lies inside it): no partial overlap.
      const double prev_end = list[i - 1].first + list[i - 1].second;
      const bool inside = list[i].first + list[i].second <= prev_end + 1e-6;
      EXPECT_TRUE(list[i].first >= prev_end - 1e-6 || inside) << "tid " << thread.second;
    }
  }
}

TEST(DecisionTableTest, OneRowPerEvictedOrHeldTensorAndPerSlice) {
  const Profile profile = small_profile();
  Plan plan = small_plan(profile, 10);
  // A second interval of a0 folds into its row.
  plan.evictions.push_back({.tensor = kA0,
                            .method = EvictionMethod::kRecompute,
                            .evict_after = 6,
                            .prefetch_at = 7,
                            .needed_at = std::nullopt});
  plan.state_placement.push_back({.slice = "decay.s0", .choice = "host", .state_bytes = 64});
  const std::vector<DecisionRow> rows = decision_rows(profile, plan);
  ASSERT_EQ(rows.size(), 3U);
  EXPECT_EQ(rows[0].name, profile.tensors[kA0].name);
  EXPECT_EQ(rows[0].intervals, 2U);
  EXPECT_EQ(rows[0].decision, "swap to host + recompute");
  EXPECT_EQ(rows[1].decision, "recompute");
  EXPECT_EQ(rows[2].decision, "state on host");
  EXPECT_EQ(count(decision_table_html(rows), "<tr data-decision="), 3U);
}

TEST(DecisionTableTest, RowsPastTheFirstPageAreInTheDocumentButNotLaidOut) {
  std::vector<DecisionRow> rows(kDecisionPageRows + 50);
  const std::string html = decision_table_html(rows);
  EXPECT_EQ(count(html, "<tr data-decision="), rows.size());
  EXPECT_EQ(count(html, "class=\"paged\""), 50U);
}

TEST(ReportHtmlTest, HasOneSeriesPerKindThePeakAndTheRows) {
  const Profile profile = small_profile();
  const Plan plan = small_plan(profile, 10);
  ReportInput input;
  input.title = "a <title> & more";
  input.profile = profile;
  input.plan = plan;
  input.budget_bytes = 123456;
  const MemoryCurve curve = memory_curve(profile, &plan);
  const std::string html = report_html(input, build_timeline(profile, &plan), curve);
  EXPECT_EQ(count(html, "<g class=\"series\""), curve.present.size());
  EXPECT_NE(html.find("id=\"peak-label\" data-bytes=\"" + std::to_string(curve.peak_bytes) + "\""),
            std::string::npos);
  EXPECT_NE(html.find(">peak " + std::to_string(curve.peak_bytes) + " B"), std::string::npos);
  EXPECT_NE(html.find("id=\"budget-line\" data-bytes=\"123456\""), std::string::npos);
  EXPECT_EQ(count(html, "<tr data-decision="), 2U);
  EXPECT_EQ(count(html, "class=\"lane\""), kLanes);
  EXPECT_EQ(html.find("<title>"), html.find("<title>ebb report: a &lt;title&gt; &amp; more"));
  // Self-contained: nothing is fetched.
  for (const char* fetch : {"src=", "href=", "<link", "@import", "url("}) {
    EXPECT_EQ(html.find(fetch), std::string::npos) << fetch;
  }
  EXPECT_EQ(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
}

TEST(ReportHtmlTest, LargeStepsAreDecimated) {
  const Profile profile = training_profile(10000, 5);  // 20,000 ops
  ReportInput input;
  input.profile = profile;
  const MemoryCurve curve = memory_curve(profile, nullptr);
  const std::string html = report_html(input, build_timeline(profile, nullptr), curve);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(html, m,
                                std::regex("data-lane=\"compute\" data-events=\"(\\d+)\" "
                                           "data-drawn=\"(\\d+)\"")));
  EXPECT_EQ(std::stoul(m[1]), 20000U);
  // About one merged rect per pixel column of the 1,088-unit plot: not one per op, nor one
  // for the whole lane.
  EXPECT_LE(std::stoul(m[2]), 1100U);
  EXPECT_GE(std::stoul(m[2]), 500U);
  EXPECT_NE(html.find("data-points=\"2000\""), std::string::npos);
  EXPECT_LT(html.size(), 3'000'000U);
}

TEST(ReportInputTest, APlanForAnotherProfileNamesBothKeys) {
  const Profile profile = small_profile();
  const Profile other = training_profile(5, 7, false);
  const Plan plan = small_plan(other, 10);
  Result<Profile> matched = profile_for_plan(profile, plan, "p.json", "plan.json");
  ASSERT_FALSE(matched.ok());
  const std::string message = matched.status().message();
  EXPECT_NE(message.find("plan.json"), std::string::npos) << message;
  EXPECT_NE(message.find("p.json"), std::string::npos) << message;
  EXPECT_NE(message.find(describe_key(profile_key(other))), std::string::npos) << message;
  EXPECT_NE(message.find(describe_key(profile_key(profile))), std::string::npos) << message;
}

TEST(ReportFilesTest, WritesBothFilesFromFiles) {
  const std::string dir = temp_dir("both");
  const Profile profile = small_profile();
  ASSERT_TRUE(write_profile(profile, dir + "/p.json").ok());
  ASSERT_TRUE(write_plan(small_plan(profile, 10), dir + "/plan.json").ok());
  Result<ReportInput> input = read_report_input(dir + "/p.json", dir + "/plan.json");
  ASSERT_TRUE(input.ok()) << input.status().to_string();
  EXPECT_EQ(input->budget_bytes, 1U);
  ASSERT_TRUE(write_report_files(*input, {dir + "/r.html", dir + "/t.json"}).ok());
  EXPECT_NE(read_file(dir + "/r.html").find("</html>"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(read_file(dir + "/t.json")).contains("traceEvents"));
}

TEST(ReportFilesTest, AnUnwritablePathFailsAndLeavesNothingBehind) {
  const std::string dir = temp_dir("unwritable");
  ReportInput input;
  input.profile = small_profile();
  // The target is a directory: the temporary file is written, the rename fails, and the
  // temporary file is removed.
  std::filesystem::create_directory(dir + "/r.html");
  Status s = write_report_files(input, {dir + "/r.html", ""});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir + "/r.html"), std::string::npos) << s.message();
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    left.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"r.html"});
  EXPECT_TRUE(std::filesystem::is_empty(dir + "/r.html"));
  // A missing directory is refused up front, naming the option and the path.
  Status checked = check_report_paths({"", dir + "/no/such/dir/t.json"});
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.message().find("--chrome-trace " + dir + "/no/such/dir/t.json"),
            std::string::npos)
      << checked.message();
  EXPECT_FALSE(check_report_paths({dir + "/r.html", ""}).ok());
  EXPECT_TRUE(check_report_paths({dir + "/ok.html", dir + "/ok.json"}).ok());
}

TEST(ReportFilesTest, APlannersPlanReportsAgainstTheProfileAsTheEngineRunsIt) {
  const Profile profile = training_profile(40, 9);
  PlannerOptions options;
  options.budget_bytes = profile_figures(profile).peak_live_bytes * 6 / 10;
  options.hardware = link_hardware_model(16);
  Result<Plan> plan = make_plan(profile, options);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  Result<Profile> matched = profile_for_plan(profile, *plan, "p", "plan");
  ASSERT_TRUE(matched.ok()) << matched.status().to_string();
  const MemoryCurve curve = memory_curve(*matched, &*plan);
  EXPECT_LT(curve.peak_bytes, profile_figures(profile).peak_live_bytes);
  expect_lanes_disjoint(build_timeline(*matched, &*plan));
}

}  // namespace
}  // namespace ebb::report
