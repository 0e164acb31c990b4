// Tool calls that deviate from the request's schema or from the XML format: unknown parameters
// and functions, missing close tags, repeated parameters, values of the wrong type, output cut
// mid-tag. Expected arguments are what vLLM's qwen3_coder (v0.17-0.19 regex extraction,
// `_convert_param_value`) and qwen3_xml give; every case is also checked at every chunk split.
#include <gtest/gtest.h>

#include "test_parser_harness.h"

namespace ds::text::parser_testing {
namespace {

using json = nlohmann::json;

const json kWeather = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
  "metric": {"type": "boolean"}, "temp": {"type": "number"}, "opts": {"type": "object"}}}}},
  {"type": "function", "function": {"name": "run", "parameters": {"type": "object",
  "properties": {"code": {"type": "string"}}}}}])");

std::string call(const std::string& fn, const std::string& body) {
  return "<tool_call>\n<function=" + fn + ">\n" + body + "</function>\n</tool_call>";
}
std::string param(const std::string& name, const std::string& value) {
  return "<parameter=" + name + ">\n" + value + "\n</parameter>\n";
}

// Parses `output` whole and at every split; returns the calls as [name, arguments] pairs.
std::vector<std::pair<std::string, std::string>> calls_of(const std::string& output,
                                                          const std::string& label) {
  const OutputParserOptions o = options(false, true, kWeather);
  const ParseRun r = run_whole(o, output);
  EXPECT_EQ(check_invariants(r), "") << label;
  check_all_splits(o, units_of(output), r.msg, label, 10, 3);
  check_all_splits(o, units_plain(output), r.msg, label + " plain-text", 0, 1);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& c : r.msg.tool_calls) out.emplace_back(c.name, c.arguments);
  return out;
}

using Calls = std::vector<std::pair<std::string, std::string>>;

TEST(ParserSchema, UnknownParameterIsKeptAsAString) {
  // Before: the unknown `unit` (and `days` after it) were swallowed into the value of `city`.
  EXPECT_EQ(
      calls_of(call("get_weather", param("city", "Paris") + param("unit", "celsius") + param("days", "3")),
               "unknown between"),
      (Calls{{"get_weather", R"({"city": "Paris", "unit": "celsius", "days": 3})"}}));
  EXPECT_EQ(calls_of(call("get_weather", param("count", "5") + param("city", "Oslo")), "unknown first"),
            (Calls{{"get_weather", R"({"count": "5", "city": "Oslo"})"}}));
  EXPECT_EQ(calls_of(call("get_weather", param("city", "Rome") + param("flag", "true")), "unknown last"),
            (Calls{{"get_weather", R"({"city": "Rome", "flag": "true"})"}}));
  EXPECT_EQ(calls_of(call("get_weather", param("a", "1") + param("b", "{\"x\": 1}")), "only unknown"),
            (Calls{{"get_weather", R"({"a": "1", "b": "{\"x\": 1}"})"}}));
}

TEST(ParserSchema, MissingCloseTagBeforeAnotherParameter) {
  // vLLM's regex ends a value at the next `<parameter=`; qwen3_xml auto-closes it.
  EXPECT_EQ(
      calls_of(call("get_weather", "<parameter=city>\nParis\n" + param("unit", "C")), "missing, unknown"),
      (Calls{{"get_weather", R"({"city": "Paris", "unit": "C"})"}}));
  EXPECT_EQ(calls_of(call("get_weather", "<parameter=city>\nParis\n" + param("days", "2")), "missing, known"),
            (Calls{{"get_weather", R"({"city": "Paris", "days": 2})"}}));
  // A name already seen nests (a `content` value showing `<parameter=path>`; vLLM's golden case
  // string_value_with_same_name_param_literal).
  EXPECT_EQ(calls_of(call("get_weather", "<parameter=days>\n1\n" + param("days", "2")), "missing, repeated"),
            (Calls{{"get_weather", R"({"days": "1\n<parameter=days>\n2\n</parameter>"})"}}));
  EXPECT_EQ(calls_of(call("get_weather", "<parameter=city>\nParis\n"), "missing before </function>"),
            (Calls{{"get_weather", R"({"city": "Paris"})"}}));
}

TEST(ParserSchema, LiteralToolCallXmlInsideAValueStaysText) {
  // Code that shows the format: its parameters (declared or not) nest and stay in the value.
  const std::string code =
      "s = '''\n<tool_call>\n<function=get_weather>\n<parameter=city>\nX\n</parameter>\n"
      "<parameter=zz>\nY\n</parameter>\n</function>\n</tool_call>\n'''";
  const auto got = calls_of(call("run", param("code", code)), "literal call");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::parse(got[0].second), (json{{"code", code}}));
}

TEST(ParserSchema, UnknownFunctionKeepsEveryValueAsAString) {
  EXPECT_EQ(calls_of(call("get_time", param("days", "3") + param("metric", "true")), "unknown function"),
            (Calls{{"get_time", R"({"days": "3", "metric": "true"})"}}));
  EXPECT_EQ(calls_of(call("get_time", ""), "unknown function, no params"), (Calls{{"get_time", "{}"}}));
}

TEST(ParserSchema, RepeatedParameterLastWins) {
  const auto got = calls_of(call("get_weather", param("city", "A") + param("city", "B")), "repeated");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].second, R"({"city": "A", "city": "B"})");     // streamed as it came
  EXPECT_EQ(json::parse(got[0].second), (json{{"city", "B"}}));  // json.loads == vLLM's dict
}

TEST(ParserSchema, ValuesNotMatchingTheirType) {
  EXPECT_EQ(
      calls_of(call("get_weather", param("days", "three") + param("metric", "yes") + param("temp", "1.0") +
                                       param("opts", "not json") + param("city", "42")),
               "mismatched types"),
      (Calls{{"get_weather",
              R"({"days": "three", "metric": false, "temp": 1, "opts": "not json", "city": "42"})"}}));
  EXPECT_EQ(
      calls_of(call("get_weather", param("days", "None") + param("opts", "{'k': True}")), "python literals"),
      (Calls{{"get_weather", R"({"days": null, "opts": {"k": true}})"}}));
}

TEST(ParserSchema, OutputEndsInsideACall) {
  const std::string head = "<tool_call>\n<function=get_weather>\n";
  EXPECT_EQ(calls_of(head + "<parameter=city>\nPar", "cut in value"),
            (Calls{{"get_weather", R"({"city": "Par"})"}}));
  EXPECT_EQ(calls_of(head + param("days", "3"), "cut after a parameter"),
            (Calls{{"get_weather", R"({"days": 3})"}}));
  EXPECT_EQ(calls_of(head + param("days", "3") + "</func", "cut in </function>"),
            (Calls{{"get_weather", R"({"days": 3})"}}));
  EXPECT_EQ(calls_of(head + param("days", "3") + "<parameter=ci", "cut in a parameter name"),
            (Calls{{"get_weather", R"({"days": 3})"}}));
  EXPECT_EQ(calls_of(head + "<parameter=city>\nA\n</param", "cut in </parameter>"),
            (Calls{{"get_weather", R"({"city": "A\n</param"})"}}));
  EXPECT_EQ(calls_of("<tool_call>\n<function=get_wea", "cut in the function name"), Calls{});
}

}  // namespace
}  // namespace ds::text::parser_testing
