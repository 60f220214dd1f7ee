#include "allocator/alloc_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace ebb {
namespace {

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "ebb_alloc_trace_test_" + std::to_string(getpid()) + "_" + name;
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

AllocEvent alloc(std::uint64_t id, std::size_t bytes, std::uint32_t stream, std::int64_t t_ns,
                 std::string tag) {
  return AllocEvent{AllocEvent::Op::kAlloc, id, bytes, stream, t_ns, std::move(tag)};
}
AllocEvent free_of(std::uint64_t id, std::uint32_t stream, std::int64_t t_ns) {
  return AllocEvent{AllocEvent::Op::kFree, id, 0, stream, t_ns, {}};
}

void expect_same(const std::vector<AllocEvent>& a, const std::vector<AllocEvent>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].op, b[i].op) << i;
    EXPECT_EQ(a[i].id, b[i].id) << i;
    EXPECT_EQ(a[i].bytes, b[i].bytes) << i;
    EXPECT_EQ(a[i].stream, b[i].stream) << i;
    EXPECT_EQ(a[i].t_ns, b[i].t_ns) << i;
    EXPECT_EQ(a[i].tag, b[i].tag) << i;
  }
}

TEST(AllocTrace, JsonLineMatchesTheDocumentedFormat) {
  EXPECT_EQ(alloc_event_to_json_line(alloc(7, 4096, 0, 1234, "attn.qkv")),
            R"({"op":"alloc","id":7,"bytes":4096,"stream":0,"tag":"attn.qkv","t_ns":1234})");
  EXPECT_EQ(alloc_event_to_json_line(free_of(7, 0, 1300)),
            R"({"op":"free","id":7,"stream":0,"t_ns":1300})");
}

TEST(AllocTrace, WriterRoundTrip) {
  std::vector<AllocEvent> events = {
      alloc(0, 4096, 0, 10, "a"),
      alloc(1, std::size_t{3} << 32, 2, 20, "needs \"quotes\"\nand a newline"),
      free_of(0, 0, 30),
      alloc(2, 1, 0, 40, ""),
      free_of(1, 1, 50),  // freed on another stream than it was allocated on
  };
  std::string path = temp_path("round_trip.jsonl");
  Result<std::unique_ptr<AllocTraceWriter>> writer = AllocTraceWriter::open(path);
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  for (const AllocEvent& e : events) (*writer)->record(e);
  ASSERT_TRUE((*writer)->close().ok());

  Result<std::vector<AllocEvent>> read = read_alloc_trace(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  expect_same(*read, events);
}

TEST(AllocTrace, BufferKeepsEventsFromManyThreads) {
  AllocTraceBuffer buffer;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&buffer, t] {
      for (int i = 0; i < 100; ++i) buffer.record(alloc(t * 100 + i, 512, 0, i, ""));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(buffer.take().size(), 400u);
  EXPECT_TRUE(buffer.take().empty());
}

TEST(AllocTrace, OptionalFieldsDefaultAndBlankLinesAreSkipped) {
  std::string path = write_temp("defaults.jsonl",
                                "{\"op\":\"alloc\",\"id\":3,\"bytes\":100}\n\n"
                                "{\"op\":\"free\",\"id\":3,\"extra\":true}\n");
  Result<std::vector<AllocEvent>> read = read_alloc_trace(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  expect_same(*read, {alloc(3, 100, 0, 0, ""), free_of(3, 0, 0)});
}

TEST(AllocTrace, MissingFileIsNotFound) {
  Result<std::vector<AllocEvent>> read = read_alloc_trace("/nonexistent/ebb/trace.jsonl");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("/nonexistent/ebb/trace.jsonl"), std::string::npos);
}

TEST(AllocTrace, WriterToUnwritablePathFails) {
  Result<std::unique_ptr<AllocTraceWriter>> writer =
      AllocTraceWriter::open("/nonexistent/ebb/trace.jsonl");
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kIoError);
  EXPECT_NE(writer.status().message().find("/nonexistent/ebb/trace.jsonl"), std::string::npos);
}

struct Malformed {
  const char* name;
  const char* text;
  int line;
  const char* words;
};

class MalformedAllocTraceTest : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedAllocTraceTest, IsInvalidArgumentNamingFileAndLine) {
  std::string path = write_temp(GetParam().name, GetParam().text);
  Result<std::vector<AllocEvent>> read = read_alloc_trace(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  const std::string& message = read.status().message();
  EXPECT_NE(message.find(path + ":" + std::to_string(GetParam().line) + ":"), std::string::npos)
      << message;
  EXPECT_NE(message.find(GetParam().words), std::string::npos) << message;
}

#define ALLOC0                                               \
  R"({"op":"alloc","id":0,"bytes":512,"stream":0,"t_ns":0})" \
  "\n"

INSTANTIATE_TEST_SUITE_P(
    AllocTrace, MalformedAllocTraceTest,
    testing::Values(
        Malformed{"bad_json", ALLOC0 R"({"op":"alloc","id":1,)", 2, "JSON"},
        Malformed{"not_an_object", ALLOC0 "[1,2]", 2, "JSON object"},
        Malformed{"unknown_op", ALLOC0 R"({"op":"realloc","id":1,"bytes":8})", 2, "realloc"},
        Malformed{"missing_op", ALLOC0 R"({"id":1,"bytes":8})", 2, "\"op\""},
        Malformed{"missing_id", ALLOC0 R"({"op":"alloc","bytes":8})", 2, "\"id\""},
        Malformed{"missing_bytes", ALLOC0 R"({"op":"alloc","id":1})", 2, "\"bytes\""},
        Malformed{"zero_bytes", ALLOC0 R"({"op":"alloc","id":1,"bytes":0})", 2, "positive"},
        Malformed{"negative_bytes", ALLOC0 R"({"op":"alloc","id":1,"bytes":-8})", 2, "positive"},
        Malformed{"fractional_bytes", ALLOC0 R"({"op":"alloc","id":1,"bytes":8.5})", 2, "positive"},
        Malformed{"string_bytes", ALLOC0 R"({"op":"alloc","id":1,"bytes":"8"})", 2, "positive"},
        Malformed{"negative_id", ALLOC0 R"({"op":"free","id":-1})", 2, "\"id\""},
        Malformed{"bad_stream", ALLOC0 R"({"op":"alloc","id":1,"bytes":8,"stream":-2})", 2,
                  "\"stream\""},
        Malformed{"bad_t_ns", ALLOC0 R"({"op":"alloc","id":1,"bytes":8,"t_ns":"soon"})", 2,
                  "\"t_ns\""},
        Malformed{"duplicate_alloc_id",
                  ALLOC0 R"({"op":"free","id":0})"
                         "\n" ALLOC0,
                  3, "earlier alloc"},
        Malformed{"free_never_allocated", ALLOC0 R"({"op":"free","id":9})", 2, "not live"},
        Malformed{"double_free",
                  ALLOC0 "\n"
                         R"({"op":"free","id":0})"
                         "\n"
                         R"({"op":"free","id":0})",
                  4, "not live"}),
    [](const testing::TestParamInfo<Malformed>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ebb
