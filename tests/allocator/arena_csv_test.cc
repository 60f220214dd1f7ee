// The MiniMalloc CSV reader and writer: the fixtures under testdata/, and one malformed input
// per rule, each reported as "FILE:LINE: what".
#include "allocator/arena_csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace ebb {
namespace {

using ::testing::HasSubstr;

const std::string kTestdata = EBB_SOURCE_DIR "/tests/allocator/testdata/";

std::string parse_error(const std::string& text) {
  Result<ArenaProblem> problem = parse_arena_csv(text, "p.csv");
  EXPECT_FALSE(problem.ok()) << text;
  return problem.ok() ? std::string() : problem.status().message();
}

TEST(ArenaCsv, ReadsTheFixture) {
  Result<ArenaProblem> problem = read_arena_csv(kTestdata + "small.12.csv");
  ASSERT_TRUE(problem.ok()) << problem.status().to_string();
  ASSERT_EQ(problem->buffers.size(), 5u);
  EXPECT_EQ(problem->buffers[1].id, 1u);
  EXPECT_EQ(problem->buffers[1].lower, 3);
  EXPECT_EQ(problem->buffers[1].upper, 9);
  EXPECT_EQ(problem->buffers[1].size_bytes, 4u);
  EXPECT_EQ(problem->buffers[1].alignment, 1u);
  EXPECT_EQ(problem->lines[1], 3u);
  EXPECT_EQ(capacity_from_file_name(kTestdata + "small.12.csv"), 12u);
  EXPECT_EQ(capacity_from_file_name("dir.7/aligned.csv"), 0u);
  EXPECT_EQ(capacity_from_file_name("A.1048576.csv"), 1048576u);
}

TEST(ArenaCsv, ReadsAnAlignmentColumnAndTextIds) {
  Result<ArenaProblem> aligned = read_arena_csv(kTestdata + "aligned.csv");
  ASSERT_TRUE(aligned.ok()) << aligned.status().to_string();
  EXPECT_EQ(aligned->buffers[3].alignment, 16u);
  // minimalloc's own example names its buffers b1..b5; text ids sort as text.
  Result<ArenaProblem> named =
      parse_arena_csv("id,lower,upper,size\r\nb1,0,3,4\r\nb2,3,9,4\r\n\r\n", "named.csv");
  ASSERT_TRUE(named.ok()) << named.status().to_string();
  EXPECT_EQ(named->ids[1], "b2");
  EXPECT_EQ(named->buffers[1].id, 1u);  // the row index stands in for a text id
  // Columns in another order, and an offset column (a solution) that is read over.
  Result<ArenaProblem> reordered =
      parse_arena_csv("size,id,upper,lower,offset\n8,0,5,1,0\n", "r.csv");
  ASSERT_TRUE(reordered.ok()) << reordered.status().to_string();
  EXPECT_EQ(reordered->buffers[0].size_bytes, 8u);
  EXPECT_EQ(reordered->buffers[0].lower, 1);
}

TEST(ArenaCsv, EachMalformedLineIsNamed) {
  const std::string header = "id,lower,upper,size\n";
  EXPECT_THAT(parse_error(header + "1,0,2,4\n0,0,2,4\n"),
              HasSubstr("p.csv:3: id 0 comes after id 1: ids must be sorted"));
  EXPECT_THAT(parse_error(header + "1,0,2,4\n1,0,2,4\n"),
              HasSubstr("p.csv:3: id 1 repeats the previous line's"));
  EXPECT_THAT(parse_error(header + "0,5,5,4\n"),
              HasSubstr("p.csv:2: upper 5 is not after lower 5"));
  EXPECT_THAT(parse_error(header + "0,5,3,4\n"),
              HasSubstr("p.csv:2: upper 3 is not after lower 5"));
  EXPECT_THAT(parse_error(header + "0,0,1,0\n"), HasSubstr("p.csv:2: size 0 is not positive"));
  EXPECT_THAT(parse_error(header + "0,0,1,-4\n"), HasSubstr("p.csv:2: size -4 is not positive"));
  EXPECT_THAT(parse_error(header + "0,0,1,18446744073709551616\n"),
              HasSubstr("p.csv:2: size \"18446744073709551616\" overflows 64 bits"));
  EXPECT_THAT(parse_error(header + "0,0,1,9223372036854775807\n"),
              HasSubstr("p.csv:2: size 9223372036854775807 brings the total past 2^62 bytes"));
  EXPECT_THAT(parse_error(header + "0,0,1,4611686018427387000\n1,0,1,4611686018427387000\n"),
              HasSubstr("p.csv:3: size 4611686018427387000 brings the total past 2^62"));
  EXPECT_THAT(parse_error(header + "0,0,1,4x\n"), HasSubstr("p.csv:2: size \"4x\" is not an"));
  EXPECT_THAT(parse_error(header + "0,a,1,4\n"), HasSubstr("p.csv:2: lower \"a\" is not"));
  EXPECT_THAT(parse_error(header + "0,0,1\n"), HasSubstr("p.csv:2: 3 fields where the header"));
  EXPECT_THAT(parse_error("id,lower,size\n0,0,1\n"), HasSubstr("p.csv:1: the header has no upper"));
  EXPECT_THAT(parse_error("id,lower,upper,size,colour\n"), HasSubstr("unknown column \"colour\""));
  EXPECT_THAT(parse_error("id,lower,upper,size,alignment\n0,0,1,4,3\n"),
              HasSubstr("p.csv:2: alignment \"3\" is not a power of two"));
  EXPECT_THAT(parse_error(""), HasSubstr("p.csv: empty"));
  EXPECT_EQ(read_arena_csv(kTestdata + "no_such.csv").status().code(), StatusCode::kNotFound);
}

TEST(ArenaCsv, WritesAnOffsetColumn) {
  Result<ArenaProblem> problem = read_arena_csv(kTestdata + "small.12.csv");
  ASSERT_TRUE(problem.ok()) << problem.status().to_string();
  const std::string path = testing::TempDir() + "arena_csv_" + std::to_string(getpid()) + ".csv";
  ASSERT_TRUE(write_arena_csv(path, *problem, {0, 4, 8, 0, 4}).ok());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(
      text.str(),
      "id,lower,upper,size,offset\n0,0,3,4,0\n1,3,9,4,4\n2,0,9,4,8\n3,9,21,4,0\n4,0,21,4,4\n");
  // What was written reads back (the offset column is read over).
  Result<ArenaProblem> again = read_arena_csv(path);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->buffers.size(), 5u);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ebb
