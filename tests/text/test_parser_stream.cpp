// Streaming behaviour of the output parser beyond the golden cases: what is held back, what is
// streamed early, request options, truncation, and token-level (not text-level) reasoning tags.
#include <gtest/gtest.h>

#include <set>

#include "test_parser_harness.h"

namespace ds::text::parser_testing {
namespace {

using json = nlohmann::json;

const json kWriteTool =
    json::parse(R"([{"type": "function", "function": {"name": "write_file", "parameters": {
  "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"},
  "optional": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "n": {"type": "integer"}}}}}])");

std::string args_of(const ParserDelta& d) {
  std::string s;
  for (const auto& tc : d.tool_calls) s += tc.arguments;
  return s;
}

TEST(ParserStream, PartialTagPrefixIsHeldBack) {
  OutputParser p(options(false, true, kWriteTool));
  EXPECT_EQ(p.feed_text("Hello <tool").content, "Hello ");
  const ParserDelta d = p.feed_text("_call>\n<function=write_file>\n");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_TRUE(d.tool_calls[0].header);
  EXPECT_EQ(d.tool_calls[0].name, "write_file");
  EXPECT_EQ(d.tool_calls[0].arguments, "");
  // a '<' that turns out not to be a tag is released as soon as that is known
  OutputParser q(options(false, true, kWriteTool));
  EXPECT_EQ(q.feed_text("a <too").content, "a ");
  EXPECT_EQ(q.feed_text("ls b").content, "<tools b");
  EXPECT_EQ(q.feed_text("x<").content, "x");
  EXPECT_EQ(q.finish("stop").content, "<");
  EXPECT_EQ(q.message().content.value_or(""), "a <tools bx<");
}

TEST(ParserStream, StringValuesStreamBeforeTheCloseTag) {
  OutputParser p(options(false, true, kWriteTool));
  EXPECT_EQ(args_of(p.feed_text("<tool_call>\n<function=write_file>\n<parameter=content>\n")),
            "{\"content\": ");
  EXPECT_EQ(args_of(p.feed_text("line \"one\"")), "\"line \\\"one\\\"");
  EXPECT_EQ(args_of(p.feed_text("\n")), "");  // maybe the newline before </parameter>: held
  EXPECT_EQ(args_of(p.feed_text("two")), "\\ntwo");
  EXPECT_EQ(args_of(p.feed_text("\n</parameter>\n<parameter=n>\n4")), "\", \"n\": ");  // numbers wait
  EXPECT_EQ(args_of(p.feed_text("2\n</parameter>\n</function>\n</tool_call>")), "42}");
  p.finish("stop");
  EXPECT_EQ(p.message().tool_calls.at(0).arguments, "{\"content\": \"line \\\"one\\\"\\ntwo\", \"n\": 42}");
  EXPECT_EQ(p.message().finish_reason, "tool_calls");
}

TEST(ParserStream, NullableStringWaitsUntilItCannotBeNull) {
  OutputParser p(options(false, true, kWriteTool));
  EXPECT_EQ(args_of(p.feed_text("<tool_call>\n<function=write_file>\n<parameter=optional>\n")),
            "{\"optional\": ");
  EXPECT_EQ(args_of(p.feed_text("No")), "");
  EXPECT_EQ(args_of(p.feed_text("ne\n</parameter>\n</function>")), "null}");
  OutputParser q(options(false, true, kWriteTool));
  q.feed_text("<tool_call>\n<function=write_file>\n<parameter=optional>\n");
  EXPECT_EQ(args_of(q.feed_text("No")), "");
  EXPECT_EQ(args_of(q.feed_text("body")), "\"Nobody");
  q.finish("stop");
  EXPECT_EQ(q.message().tool_calls.at(0).arguments, "{\"optional\": \"Nobody\"}");
}

TEST(ParserStream, ParallelToolCallsFalseKeepsTheFirst) {
  OutputParserOptions o = options(false, true, kWriteTool);
  o.parallel_tool_calls = false;
  const std::string out =
      "<tool_call>\n<function=write_file>\n<parameter=path>\na\n</parameter>\n</function>\n</tool_call>\n"
      "<tool_call>\n<function=write_file>\n<parameter=path>\nb\n</parameter>\n</function>\n</tool_call>\nbye";
  const ParseRun r = run_whole(o, out);
  EXPECT_EQ(check_invariants(r), "");
  ASSERT_EQ(r.msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.msg.tool_calls[0].arguments, "{\"path\": \"a\"}");
  EXPECT_EQ(r.msg.content.value_or(""), "\nbye");
  check_all_splits(o, units_of(out), r.msg, "parallel=false", 10, 1);
}

TEST(ParserStream, TruncationKeepsLength) {
  // a thought cut by max_tokens is all reasoning
  ParseRun r = run_whole(options(true, true), "still thinking about", "length");
  EXPECT_EQ(r.msg.reasoning.value_or(""), "still thinking about");
  EXPECT_FALSE(r.msg.content);
  EXPECT_EQ(r.msg.finish_reason, "length");
  // a call cut inside a value: closed into valid JSON, finish_reason stays "length"
  r = run_whole(options(true, true, kWriteTool),
                "ok</think>\n\n<tool_call>\n<function=write_file>\n<parameter=content>\nabc\n", "length");
  EXPECT_EQ(check_invariants(r), "");
  ASSERT_EQ(r.msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.msg.tool_calls[0].arguments, "{\"content\": \"abc\"}");
  EXPECT_EQ(r.msg.finish_reason, "length");
  EXPECT_EQ(r.msg.content.value_or(""), "\n\n");
  // a complete call followed by the end of output: tool_calls
  r = run_whole(options(true, true, kWriteTool), "ok</think><tool_call>\n<function=write_file>\n</function>",
                "stop");
  EXPECT_EQ(r.msg.finish_reason, "tool_calls");
  EXPECT_EQ(r.msg.tool_calls.at(0).arguments, "{}");
}

TEST(ParserStream, ReasoningTagsAreTokensNotText) {
  OutputParser p(options(true, true));
  // a literal "</think>" made of ordinary tokens does not end the thought
  EXPECT_EQ(p.feed_text("the tag </think> closes").reasoning, "the tag </think> closes");
  const ParserDelta d = p.feed_control(ControlToken::kThinkClose);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(p.feed_text("\n\nAnswer").content, "\n\nAnswer");
  p.finish("stop");
  EXPECT_EQ(p.message().reasoning.value_or(""), "the tag </think> closes");
  EXPECT_EQ(p.message().content.value_or(""), "\n\nAnswer");
}

TEST(ParserStream, FeedWithTokenIds) {
  OutputParser p(options(true, true, kWriteTool));
  const ControlTokenIds ids;
  std::vector<int32_t> step1 = {11, ids.think_close, 12};
  ParserDelta d = p.feed(step1, "plan</think>\n\n");
  EXPECT_EQ(d.reasoning, "plan");
  EXPECT_EQ(d.content, "\n\n");
  std::vector<int32_t> step2 = {ids.tool_call_open, 13, 14};
  d = p.feed(step2, "<tool_call>\n<function=write_file>\n");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "write_file");
  p.finish("stop");
  EXPECT_EQ(p.message().tool_calls.size(), 1u);
}

TEST(ParserStream, IncludeReasoningFalseDropsIt) {
  OutputParserOptions o = options(true, false);
  o.include_reasoning = false;
  const ParseRun r = run_whole(o, "secret</think>visible");
  EXPECT_FALSE(r.msg.reasoning);
  EXPECT_EQ(r.msg.content.value_or(""), "visible");
  for (const auto& d : r.deltas) EXPECT_TRUE(d.reasoning.empty());
}

TEST(ParserStream, LeadingThinkIsStripped) {
  const ParseRun r = run_whole(options(true, false), "<think>\nidea\n</think>\n\nhi");
  EXPECT_EQ(r.msg.reasoning.value_or(""), "\nidea\n");
  EXPECT_EQ(r.msg.content.value_or(""), "\n\nhi");
}

TEST(ParserStream, NoReasoningParserLeavesTagsInContent) {
  const ParseRun r = run_whole(options(false, false), "a</think>b<tool_call>c");
  EXPECT_EQ(r.msg.content.value_or(""), "a</think>b<tool_call>c");
  EXPECT_FALSE(r.msg.reasoning);
}

TEST(ParserStream, Utf8SplitAndInvalidBytes) {
  OutputParser p(options(false, true, kWriteTool));
  EXPECT_EQ(p.feed_text("caf\xc3").content, "caf");
  EXPECT_EQ(p.feed_text("\xa9 \xff!").content, "\xc3\xa9 \xef\xbf\xbd!");
  // a character cut by a control token becomes U+FFFD before the token
  OutputParser r(options(true, false));
  r.feed_text("ab\xe2\x82");
  r.feed_control(ControlToken::kThinkClose);
  r.finish("stop");
  EXPECT_EQ(r.message().reasoning.value_or(""), "ab\xef\xbf\xbd");
  p.feed_text("<tool_call><function=write_file><parameter=path>\xe2\x82");
  p.finish("stop");
  EXPECT_NO_THROW((void)message_to_json(p.message(), true).dump());
  EXPECT_EQ(p.message().tool_calls.at(0).arguments, "{\"path\": \"\xef\xbf\xbd\"}");
}

TEST(ParserStream, DuplicateParameterKeepsBothLastWins) {
  const ParseRun r = run_whole(options(false, true, kWriteTool),
                               "<tool_call><function=write_file><parameter=n>1</parameter>"
                               "<parameter=n>2</parameter></function></tool_call>");
  ASSERT_EQ(r.msg.tool_calls.size(), 1u);
  EXPECT_EQ(r.msg.tool_calls[0].arguments, "{\"n\": 1, \"n\": 2}");
  EXPECT_EQ(json::parse(r.msg.tool_calls[0].arguments)["n"], 2);  // what json.loads / vLLM give
}

TEST(ParserStream, DeltaJsonShapes) {
  ParserDelta d;
  d.reasoning = "r";
  d.tool_calls.push_back({0, true, "chatcmpl-tool-1", "f", ""});
  d.tool_calls.push_back({0, false, "", "", "{\"a\": 1}"});
  const json j = delta_to_json(d, "both");
  EXPECT_EQ(j["reasoning"], "r");
  EXPECT_EQ(j["reasoning_content"], "r");
  EXPECT_FALSE(j.contains("content"));
  EXPECT_EQ(
      j["tool_calls"][0],
      json::parse(
          R"({"index":0,"id":"chatcmpl-tool-1","type":"function","function":{"name":"f","arguments":""}})"));
  EXPECT_EQ(j["tool_calls"][1], json::parse(R"({"index":0,"function":{"arguments":"{\"a\": 1}"}})"));
  ParsedMessage m;
  m.content = "hi";
  const json mj = message_to_json(m, true);
  EXPECT_TRUE(mj["reasoning"].is_null());
  EXPECT_EQ(mj["tool_calls"], json::array());
  EXPECT_FALSE(message_to_json(m, false).contains("reasoning"));
}

TEST(ParserStream, StrayCloseTagsAfterACallDoNotLeak) {
  const ParseRun r =
      run_whole(options(false, true, kWriteTool),
                "<tool_call>\n<function=write_file>\n</function>\n</tool_call>\n</tool_call>\nDone.");
  EXPECT_EQ(check_invariants(r), "");
  EXPECT_EQ(r.msg.content.value_or(""), "\nDone.");
  ASSERT_EQ(r.msg.tool_calls.size(), 1u);
}

TEST(ParserStream, PromptThinkingState) {
  const ControlTokenIds ids;
  const std::vector<int32_t> open = {1, ids.think_open, ids.think_close, 2, ids.think_open, 3};
  const std::vector<int32_t> closed = {1, ids.think_open, 4, ids.think_close, 5};
  const std::vector<int32_t> none = {1, 2, 3};
  EXPECT_EQ(prompt_leaves_thought_open(open), std::optional<bool>(true));
  EXPECT_EQ(prompt_leaves_thought_open(closed), std::optional<bool>(false));
  EXPECT_EQ(prompt_leaves_thought_open(none), std::nullopt);
}

TEST(ParserStream, ToolCallIdsAreUniqueAndVllmShaped) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = make_tool_call_id();
    ASSERT_EQ(id.size(), 14u + 32u);
    ASSERT_EQ(id.rfind("chatcmpl-tool-", 0), 0u);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace ds::text::parser_testing
