// parse_int64 / parse_double: the whole text is one number in range, or an error naming the flag.
#include "deltaserve/core/parse.h"

#include <gtest/gtest.h>

#include <string>

namespace ds {
namespace {

TEST(ParseInt64, AcceptsWholeIntegers) {
  EXPECT_EQ(*parse_int64("0", "--n"), 0);
  EXPECT_EQ(*parse_int64("4096", "--n"), 4096);
  EXPECT_EQ(*parse_int64("-7", "--n"), -7);
  EXPECT_EQ(*parse_int64("+12", "--n"), 12);
  EXPECT_EQ(*parse_int64("9223372036854775807", "--n"), INT64_MAX);
  EXPECT_EQ(*parse_int64("-9223372036854775808", "--n"), INT64_MIN);
}

TEST(ParseInt64, RefusesWhatAtollWouldTurnIntoANumber) {
  for (const char* bad : {"", "abc", "12x", "1.5", " 3", "3 ", "0x10", "1e3", "+", "-", "+-1", "--1"}) {
    auto r = parse_int64(bad, "--ctx");
    ASSERT_FALSE(r) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), std::string("--ctx: '") + bad + "' is not an integer");
  }
  auto big = parse_int64("9223372036854775808", "--ctx");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.status().message(), "--ctx: '9223372036854775808' is out of range");
}

TEST(ParseInt64, ChecksTheRange) {
  auto low = parse_int64("0", "--stride", 1);
  ASSERT_FALSE(low);
  EXPECT_EQ(low.status().message(), "--stride: '0' must be at least 1");
  auto high = parse_int64("11", "-n", 0, 10);
  ASSERT_FALSE(high);
  EXPECT_EQ(high.status().message(), "-n: '11' must be at most 10");
  EXPECT_EQ(*parse_int64("10", "-n", 0, 10), 10);
}

TEST(ParseDouble, AcceptsFiniteNumbers) {
  EXPECT_DOUBLE_EQ(*parse_double("0.7", "--t"), 0.7);
  EXPECT_DOUBLE_EQ(*parse_double("1", "--t"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_double("-2.5e-3", "--t"), -2.5e-3);
  EXPECT_DOUBLE_EQ(*parse_double("+.5", "--t"), 0.5);
}

TEST(ParseDouble, RefusesNonNumbersAndNonFinite) {
  for (const char* bad : {"", "abc", "0.7x", "1,5", " 1", "inf", "-inf", "nan", "1e999x"}) {
    auto r = parse_double(bad, "--temperature");
    ASSERT_FALSE(r) << "'" << bad << "'";
    EXPECT_EQ(r.status().message(), std::string("--temperature: '") + bad + "' is not a number");
  }
  auto huge = parse_double("1e999", "--top-p");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.status().message(), "--top-p: '1e999' is out of range");
  auto neg = parse_double("-0.1", "--temperature", 0.0);
  ASSERT_FALSE(neg);
  EXPECT_EQ(neg.status().message(), "--temperature: '-0.1' must be at least 0");
}

}  // namespace
}  // namespace ds
