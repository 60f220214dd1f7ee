#include "kernels/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ebb {
namespace {

TEST(StatusTest, DefaultIsOk) {
  const Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.to_string(), "OK");
  EXPECT_TRUE(ok_status().ok());
}

TEST(StatusTest, ToStringNamesCodeAndMessage) {
  EXPECT_EQ(out_of_memory("allocate of 5 bytes").to_string(), "OutOfMemory: allocate of 5 bytes");
  EXPECT_EQ(invalid_argument("x").to_string(), "InvalidArgument: x");
}

TEST(StatusTest, HelpersSetTheirCodes) {
  EXPECT_EQ(invalid_argument("m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out_of_memory("m").code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(not_found("m").code(), StatusCode::kNotFound);
  EXPECT_EQ(failed_precondition("m").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(io_error("m").code(), StatusCode::kIoError);
  EXPECT_EQ(data_loss("m").code(), StatusCode::kDataLoss);
  EXPECT_EQ(unavailable("m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(internal_error("m").code(), StatusCode::kInternal);
  EXPECT_EQ(not_found("tensor w1").message(), "tensor w1");
}

TEST(StatusTest, EveryCodeHasAName) {
  EXPECT_STREQ(status_code_name(StatusCode::kOk), "OK");
  EXPECT_STREQ(status_code_name(StatusCode::kInvalidArgument), "InvalidArgument");
  EXPECT_STREQ(status_code_name(StatusCode::kOutOfMemory), "OutOfMemory");
  EXPECT_STREQ(status_code_name(StatusCode::kNotFound), "NotFound");
  EXPECT_STREQ(status_code_name(StatusCode::kFailedPrecondition), "FailedPrecondition");
  EXPECT_STREQ(status_code_name(StatusCode::kIoError), "IoError");
  EXPECT_STREQ(status_code_name(StatusCode::kDataLoss), "DataLoss");
  EXPECT_STREQ(status_code_name(StatusCode::kUnavailable), "Unavailable");
  EXPECT_STREQ(status_code_name(StatusCode::kInternal), "Internal");
}

TEST(ResultTest, HoldsAValue) {
  Result<int> result = 7;
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.status().ok());
  EXPECT_EQ(result.value(), 7);
  EXPECT_EQ(*result, 7);
  *result = 8;
  EXPECT_EQ(result.value(), 8);
}

TEST(ResultTest, HoldsAStatus) {
  Result<int> result = not_found("file a.bin");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "file a.bin");
}

TEST(ResultTest, FromAnOkStatusIsAnInternalError) {
  Result<int> result = ok_status();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(3);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result->get(), 3);
  std::unique_ptr<int> owned = std::move(result).value();
  EXPECT_EQ(*owned, 3);
}

TEST(ResultDeathTest, ValueOfAFailedResultAborts) {
  Result<int> result = io_error("disk gone");
  EXPECT_DEATH((void)result.value(), "disk gone");
}

TEST(CheckDeathTest, BrokenInvariantPrintsAndAborts) {
  const int free_bytes = 3;
  // GoogleTest's portable regex does not cross lines: match the condition and the state apart.
  EXPECT_DEATH(EBB_CHECK(free_bytes > 4, "free_bytes " + std::to_string(free_bytes)),
               "invariant broken at .*status_test.cc:[0-9]+: free_bytes > 4");
  EXPECT_DEATH(EBB_CHECK(free_bytes > 4, "free_bytes " + std::to_string(free_bytes)),
               "free_bytes 3");
}

Result<int> parse_positive(int x) {
  if (x <= 0) return invalid_argument("not positive: " + std::to_string(x));
  return x;
}

Result<int> doubled(int x) {
  EBB_ASSIGN_OR_RETURN(int value, parse_positive(x));
  return value * 2;
}

Result<int> sum_of_doubles(int x, int y) {
  int total = 0;
  EBB_ASSIGN_OR_RETURN(total, doubled(x));  // assigns to an existing variable
  EBB_ASSIGN_OR_RETURN(int second, doubled(y));
  return total + second;
}

Status check_positive(int x) {
  EBB_RETURN_IF_ERROR(parse_positive(x).status());
  return ok_status();
}

Status check_all(int x, int y) {
  EBB_RETURN_IF_ERROR(check_positive(x));
  EBB_RETURN_IF_ERROR(check_positive(y));
  return ok_status();
}

TEST(StatusMacrosTest, AssignOrReturnPassesValuesAndErrors) {
  Result<int> ok = sum_of_doubles(2, 3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 10);
  Result<int> bad = sum_of_doubles(2, -1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not positive: -1");
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheFirstError) {
  EXPECT_TRUE(check_all(1, 2).ok());
  const Status status = check_all(-4, -5);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "not positive: -4");
}

}  // namespace
}  // namespace ebb
