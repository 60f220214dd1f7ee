#include "allocator/dtr_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>

namespace ebb {
namespace {

const char* const kExternalLogs = EBB_SOURCE_DIR "/../shared/external/dtr_logs";
const char* const kBundledLog = EBB_SOURCE_DIR "/profiles/workloads/mlp4_train.dtr.log";

// Writes `text` to a fresh file under the test temp dir and returns its path.
std::string write_dtr_temp(const std::string& name, const std::string& text) {
  std::string path =
      testing::TempDir() + "ebb_dtr_log_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

// The peak of live requested bytes over alloc events.
std::size_t peak_of(const std::vector<AllocEvent>& events) {
  std::unordered_map<std::uint64_t, std::size_t> bytes;
  std::size_t live = 0, peak = 0;
  for (const AllocEvent& e : events) {
    if (e.op == AllocEvent::Op::kAlloc) {
      bytes[e.id] = e.bytes;
      live += e.bytes;
      peak = std::max(peak, live);
    } else {
      live -= bytes.at(e.id);
    }
  }
  return peak;
}

struct CheckFigures {
  const char* file;
  std::size_t peak_live_bytes;
  std::int64_t total_op_time_ns;
  std::size_t constant_bytes;
};

class ExternalLogTest : public testing::TestWithParam<CheckFigures> {};

TEST_P(ExternalLogTest, ReproducesTheCheckFigures) {
  std::string path = std::string(kExternalLogs) + "/" + GetParam().file;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not present";
  Result<DtrLog> log = read_dtr_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<DtrFigures> figures = dtr_figures(*log);
  ASSERT_TRUE(figures.ok()) << figures.status().to_string();
  EXPECT_EQ(figures->peak_live_bytes, GetParam().peak_live_bytes);
  EXPECT_EQ(figures->total_op_time_ns, GetParam().total_op_time_ns);
  EXPECT_EQ(figures->constant_bytes, GetParam().constant_bytes);

  Result<std::vector<AllocEvent>> events = dtr_to_alloc_events(*log);
  ASSERT_TRUE(events.ok()) << events.status().to_string();
  EXPECT_EQ(peak_of(*events), GetParam().peak_live_bytes);
}

INSTANTIATE_TEST_SUITE_P(
    DtrLog, ExternalLogTest,
    testing::Values(CheckFigures{"unet.log", 8'415'764'640, 435'278'292, 93'386'276},
                    CheckFigures{"resnet32.log", 10'061'179'152, 291'905'487, 35'584'920},
                    CheckFigures{"lstm.log", 5'595'127'736, 769'458'833, 194'424'928}),
    [](const testing::TestParamInfo<CheckFigures>& info) {
      std::string name = info.param.file;
      return name.substr(0, name.find('.'));
    });

TEST(DtrLog, KeepsEveryInstructionsInformation) {
  std::string path = std::string(kExternalLogs) + "/unet.log";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not present";
  Result<DtrLog> log = read_dtr_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  const auto& ins = log->instructions;
  ASSERT_FALSE(ins.empty());
  EXPECT_EQ(ins[0].op, DtrOp::kAnnotate);
  EXPECT_EQ(ins[0].annotation, "START");
  EXPECT_EQ(ins[1].op, DtrOp::kConstant);
  EXPECT_EQ(ins[1].name, "x5265");
  EXPECT_EQ(ins[1].memory_bytes, 6912u);
  EXPECT_EQ(ins[1].line, 2u);

  auto call =
      std::find_if(ins.begin(), ins.end(), [](const DtrInstruction& i) { return i.line == 412; });
  ASSERT_NE(call, ins.end());
  EXPECT_EQ(call->op, DtrOp::kCall);
  EXPECT_EQ(call->name, "cudnn_convolution");
  EXPECT_EQ(call->args, (std::vector<std::string>{"x5467", "x5266"}));
  ASSERT_EQ(call->results.size(), 1u);
  EXPECT_EQ(call->results[0].name, "x5471");
  EXPECT_EQ(call->results[0].memory_bytes, 388'497'408u);
  EXPECT_EQ(call->results[0].alias, -1);
  EXPECT_EQ(call->time_ns, 920'906);
  // The view at line 415 shares argument 0's storage.
  EXPECT_EQ((call + 1)->results.at(0).alias, 0);
  // Line 420: add_ mutates its first argument in place.
  auto mutate =
      std::find_if(ins.begin(), ins.end(), [](const DtrInstruction& i) { return i.line == 420; });
  ASSERT_NE(mutate, ins.end());
  EXPECT_EQ(mutate->op, DtrOp::kMutate);
  EXPECT_EQ(mutate->name, "add_");
  EXPECT_EQ(mutate->mutated, std::vector<int>{0});
  EXPECT_EQ(mutate->time_ns, 2'689'120);
}

// A small log exercising every instruction: the figures follow the documented semantics.
TEST(DtrLog, StorageSemantics) {
  std::string text = R"({"ANNOTATION":"START","INSTRUCTION":"ANNOTATE"}
{"INSTRUCTION":"CONSTANT","NAME":"w"}
{"INSTRUCTION":"MEMORY","MEMORY":"1000","NAME":"w"}
{"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"op","RESULT":["a","v"],"TIME":"10"}
{"INSTRUCTION":"MEMORY","MEMORY":"200","NAME":"a"}
{"ALIAS":"-1","INSTRUCTION":"ALIAS","NAME":"a"}
{"INSTRUCTION":"MEMORY","MEMORY":"1000","NAME":"v"}
{"ALIAS":"0","INSTRUCTION":"ALIAS","NAME":"v"}
{"DST":"a2","INSTRUCTION":"COPY","SRC":"a"}
{"ARGS":["a","w"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"add_","TIME":"5"}
{"INSTRUCTION":"RELEASE","NAME":"a2"}
{"ARGS":["a"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"relu_","TIME":"7"}
{"ANNOTATION":"BACKWARD","INSTRUCTION":"ANNOTATE"}
{"INSTRUCTION":"RELEASE","NAME":"w"}
{"ARGS":["a"],"INSTRUCTION":"CALL","NAME":"zeros","RESULT":["z"],"TIME":"1"}
{"INSTRUCTION":"MEMORY","MEMORY":"0","NAME":"z"}
{"ALIAS":"-1","INSTRUCTION":"ALIAS","NAME":"z"}
{"DST":"v","INSTRUCTION":"COPY_FROM","SRC":"a"}
)";
  Result<DtrLog> log = parse_dtr_log(text, "small.log");
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  EXPECT_EQ(log->instructions.size(), 11u);  // MEMORY and ALIAS lines are folded
  Result<DtrFigures> f = dtr_figures(*log);
  ASSERT_TRUE(f.ok());
  // w(1000) + a(200); v is a view of w; add_ makes a fresh 200 while a2 still holds the old
  // one: 1400. relu_ then replaces a's storage again (old freed right after): peak stays 1400.
  EXPECT_EQ(f->peak_live_bytes, 1400u);
  EXPECT_EQ(f->total_op_time_ns, 23);
  EXPECT_EQ(f->constant_bytes, 1000u);
  // End: a's storage (200) held by a and v; w's storage freed by COPY_FROM dropping v.
  EXPECT_EQ(f->final_live_bytes, 200u);
  EXPECT_EQ(f->calls, 2u);
  EXPECT_EQ(f->mutates, 2u);

  Result<std::vector<AllocEvent>> events = dtr_to_alloc_events(*log);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(peak_of(*events), 1400u);
  // Allocs: w, a, add_, relu_ (the 0-byte z makes none); frees: a(old, at RELEASE a2),
  // add_'s storage at relu_, w at COPY_FROM.
  std::size_t allocs = std::count_if(events->begin(), events->end(), [](const AllocEvent& e) {
    return e.op == AllocEvent::Op::kAlloc;
  });
  EXPECT_EQ(allocs, 4u);
  EXPECT_EQ(events->size(), 7u);
  EXPECT_EQ(events->front().tag, "constant:w");
  EXPECT_EQ(events->back().t_ns, 23);
}

TEST(DtrLog, DetectsDtrLinesAgainstAllocTraceLines) {
  EXPECT_TRUE(looks_like_dtr_log(R"({"ANNOTATION":"START","INSTRUCTION":"ANNOTATE"})"));
  EXPECT_FALSE(looks_like_dtr_log(R"({"op":"alloc","id":0,"bytes":4096,"stream":0})"));
}

TEST(DtrLog, MissingFileIsNotFound) {
  Result<DtrLog> log = read_dtr_log("/nonexistent/ebb/none.log");
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kNotFound);
  EXPECT_NE(log.status().message().find("/nonexistent/ebb/none.log"), std::string::npos);
}

struct MalformedLog {
  const char* name;
  const char* text;
  int line;           // the line the message must name
  const char* words;  // and a phrase it must contain
};

class MalformedDtrLogTest : public testing::TestWithParam<MalformedLog> {};

TEST_P(MalformedDtrLogTest, IsInvalidArgumentNamingFileAndLine) {
  std::string path = write_dtr_temp(GetParam().name, GetParam().text);
  Result<DtrLog> log = read_dtr_log(path);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kInvalidArgument);
  const std::string& message = log.status().message();
  EXPECT_NE(message.find(path + ":" + std::to_string(GetParam().line) + ":"), std::string::npos)
      << message;
  EXPECT_NE(message.find(GetParam().words), std::string::npos) << message;
}

#define START_LINE                                     \
  R"({"ANNOTATION":"START","INSTRUCTION":"ANNOTATE"})" \
  "\n"
#define CONST_W                                          \
  R"({"INSTRUCTION":"CONSTANT","NAME":"w"})"             \
  "\n"                                                   \
  R"({"INSTRUCTION":"MEMORY","MEMORY":"64","NAME":"w"})" \
  "\n"

INSTANTIATE_TEST_SUITE_P(
    DtrLog, MalformedDtrLogTest,
    testing::Values(
        MalformedLog{"bad_json", START_LINE "{\"INSTRUCTION\":\"CONSTANT\",\n", 2, "JSON"},
        MalformedLog{"unknown_instruction", START_LINE R"({"INSTRUCTION":"FROB"})", 2, "FROB"},
        MalformedLog{"missing_field",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"]})",
                     4, "TIME"},
        MalformedLog{"bad_number",
                     START_LINE R"({"INSTRUCTION":"CONSTANT","NAME":"w"})"
                                "\n"
                                R"({"INSTRUCTION":"MEMORY","MEMORY":"12x","NAME":"w"})",
                     3, "12x"},
        MalformedLog{"negative_number",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"f","TIME":"-3"})",
                     4, "-3"},
        MalformedLog{"number_not_string",
                     START_LINE R"({"INSTRUCTION":"CONSTANT","NAME":"w"})"
                                "\n"
                                R"({"INSTRUCTION":"MEMORY","MEMORY":64,"NAME":"w"})",
                     3, "not a string"},
        MalformedLog{"memory_unknown_name",
                     START_LINE CONST_W R"({"INSTRUCTION":"MEMORY","MEMORY":"64","NAME":"q"})", 4,
                     "q"},
        MalformedLog{"memory_wrong_name",
                     START_LINE R"({"INSTRUCTION":"CONSTANT","NAME":"w"})"
                                "\n"
                                R"({"INSTRUCTION":"MEMORY","MEMORY":"64","NAME":"q"})",
                     3, "MEMORY line for w"},
        MalformedLog{"call_without_memory",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"],"TIME":"1"})"
                     "\n"
                     R"({"INSTRUCTION":"RELEASE","NAME":"w"})",
                     5, "MEMORY line for y"},
        MalformedLog{"call_without_alias",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"],"TIME":"1"})"
                     "\n"
                     R"({"INSTRUCTION":"MEMORY","MEMORY":"8","NAME":"y"})"
                     "\n"
                     R"({"INSTRUCTION":"RELEASE","NAME":"w"})",
                     6, "ALIAS line for y"},
        MalformedLog{"call_at_end_of_file",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"],"TIME":"1"})"
                     "\n",
                     5, "end of file"},
        MalformedLog{"alias_out_of_range",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"],"TIME":"1"})"
                     "\n"
                     R"({"INSTRUCTION":"MEMORY","MEMORY":"8","NAME":"y"})"
                     "\n"
                     R"({"ALIAS":"1","INSTRUCTION":"ALIAS","NAME":"y"})",
                     6, "ALIAS 1"},
        MalformedLog{"reused_name",
                     START_LINE CONST_W R"({"INSTRUCTION":"RELEASE","NAME":"w"})"
                                        "\n" CONST_W,
                     5, "reused"},
        MalformedLog{"copy_onto_existing",
                     START_LINE CONST_W R"({"DST":"w","INSTRUCTION":"COPY","SRC":"w"})", 4,
                     "reused"},
        MalformedLog{
            "arg_not_live",
            START_LINE CONST_W
            R"({"ARGS":["nope"],"INSTRUCTION":"CALL","NAME":"f","RESULT":["y"],"TIME":"1"})"
            "\n"
            R"({"INSTRUCTION":"MEMORY","MEMORY":"8","NAME":"y"})"
            "\n"
            R"({"ALIAS":"-1","INSTRUCTION":"ALIAS","NAME":"y"})",
            4, "nope"},
        MalformedLog{"release_twice",
                     START_LINE CONST_W R"({"INSTRUCTION":"RELEASE","NAME":"w"})"
                                        "\n"
                                        R"({"INSTRUCTION":"RELEASE","NAME":"w"})",
                     5, "not a live handle"},
        MalformedLog{"mutate_index_out_of_range",
                     START_LINE CONST_W
                     R"({"ARGS":["w"],"INSTRUCTION":"MUTATE","MUTATE":[2],"NAME":"f","TIME":"1"})",
                     4, "MUTATE index 2"},
        // Summed unchecked, the two TIMEs overflowed the op-time clock (undefined behaviour).
        MalformedLog{
            "total_time_past_2_63",
            START_LINE CONST_W
            R"({"ARGS":["w"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"f","TIME":"9223372036854775807"})"
            "\n"
            R"({"ARGS":["w"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"g","TIME":"1"})",
            5, "past 2^63 ns"},
        MalformedLog{
            "mutate_strings",
            START_LINE CONST_W
            R"({"ARGS":["w"],"INSTRUCTION":"MUTATE","MUTATE":["0"],"NAME":"f","TIME":"1"})",
            4, "MUTATE"}),
    [](const testing::TestParamInfo<MalformedLog>& info) { return std::string(info.param.name); });

TEST(DtrLog, BundledWorkloadParses) {
  Result<DtrLog> log = read_dtr_log(kBundledLog);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<DtrFigures> f = dtr_figures(*log);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  // The figures profiles/README.md quotes (tools/make_workload.py generated the file).
  EXPECT_EQ(f->peak_live_bytes, 720'043'656u);
  EXPECT_EQ(f->total_op_time_ns, 3'705'292);
  EXPECT_EQ(f->constant_bytes, 504'397'544u);
  EXPECT_EQ(f->final_live_bytes, 502'296'296u);
  EXPECT_EQ(f->calls, 42u);
  EXPECT_EQ(f->mutates, 49u);
  Result<std::vector<AllocEvent>> events = dtr_to_alloc_events(*log);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(peak_of(*events), f->peak_live_bytes);
}

}  // namespace
}  // namespace ebb
