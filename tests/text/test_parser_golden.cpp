// Golden cases extracted from vLLM's tests (tests/data/vllm-parser-golden): every case, in the
// modes it lists, then re-run at every split point, unit by unit and in random chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "deltaserve/text/parsers/tool_choice.h"
#include "test_parser_harness.h"

namespace ds::text::parser_testing {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

json load(const std::string& name) {
  const std::string path = test_data_dir() + "/vllm-parser-golden/" + name;
  std::ifstream f(path);
  if (!f) return nullptr;
  return json::parse(f, nullptr, false);
}

size_t g_split_runs = 0;
size_t g_cases = 0;

std::string model_output_of(const json& c) {
  if (c.contains("model_output") && c["model_output"].is_string()) return c["model_output"];
  std::string s;
  for (const auto& d : c["streaming_deltas"]) s += d.get<std::string>();
  return s;
}

std::vector<std::string> as_list(const json& v) {
  if (v.is_array()) return v.get<std::vector<std::string>>();
  return {v.get<std::string>()};
}

// The assertions of one tool-parser case against a final message.
void check_tool_expectations(const json& c, const ParsedMessage& m) {
  const json& e = c["expected"];
  const std::string id = c["id"];
  SCOPED_TRACE(id + ": " + describe(m));
  if (e.contains("tools_called")) {
    EXPECT_EQ(!m.tool_calls.empty(), e["tools_called"].get<bool>());
  }
  if (e.contains("tool_calls")) {
    ASSERT_EQ(m.tool_calls.size(), e["tool_calls"].size());
    for (size_t i = 0; i < m.tool_calls.size(); ++i) {
      EXPECT_EQ(m.tool_calls[i].name, e["tool_calls"][i]["name"]);
      const json got = json::parse(m.tool_calls[i].arguments, nullptr, false);
      EXPECT_EQ(got, e["tool_calls"][i]["arguments"]);
    }
    if (!m.tool_calls.empty()) {
      EXPECT_EQ(m.finish_reason, "tool_calls");
    }
  }
  if (e.contains("tool_calls_count")) {
    EXPECT_EQ(m.tool_calls.size(), e["tool_calls_count"].get<size_t>());
  }
  if (e.contains("tool_call_names")) {
    std::vector<std::string> names;
    for (const auto& t : m.tool_calls) names.push_back(t.name);
    EXPECT_EQ(names, e["tool_call_names"].get<std::vector<std::string>>());
  }
  if (e.contains("content")) {
    if (id == "parallel_tools") {  // the vLLM test accepts None, "" or "\n"
      EXPECT_TRUE(!m.content || m.content->find_first_not_of(" \n") == std::string::npos);
    } else if (e["content"].is_null()) {
      EXPECT_FALSE(m.content.has_value());
    } else {
      EXPECT_EQ(m.content.value_or("<null>"), e["content"].get<std::string>());
    }
  }
  if (e.contains("content_contains")) {
    for (const auto& s : as_list(e["content_contains"])) {
      EXPECT_NE(m.content.value_or("").find(s), std::string::npos) << s;
    }
  }
  if (e.contains("raw_arguments_must_not_contain")) {
    for (const auto& t : m.tool_calls) {
      EXPECT_EQ(t.arguments.find(e["raw_arguments_must_not_contain"].get<std::string>()), std::string::npos);
    }
  }
  if (e.contains("argument_keys_in_order")) {
    ASSERT_FALSE(m.tool_calls.empty());
    const ojson args = ojson::parse(m.tool_calls.back().arguments);
    std::vector<std::string> keys;
    for (auto it = args.begin(); it != args.end(); ++it) keys.push_back(it.key());
    EXPECT_EQ(keys, e["argument_keys_in_order"].get<std::vector<std::string>>());
  }
  if (e.contains("no_null_tool_calls")) {
    for (const auto& t : m.tool_calls) {
      EXPECT_FALSE(t.name.empty());
    }
  }
  // Tool XML never reaches content, except where the model's text is not a valid call.
  static const std::set<std::string> kLiteralXmlAllowed = {
      "inline_empty_tool_call_keeps_content", "jinja_phantom_call_rejected", "malformed_function_no_gt",
      "bad_call_filtered_then_valid_call"};
  if (!kLiteralXmlAllowed.count(id)) {
    EXPECT_FALSE(has_tool_xml(m.content.value_or(""))) << m.content.value_or("");
  }
}

// Streaming-shape assertions for unit-by-unit (token-by-token) runs.
void check_stream_expectations(const json& c, const ParseRun& r) {
  const json& e = c["expected"];
  SCOPED_TRACE(c["id"].get<std::string>());
  std::vector<const ParserDelta*> chunks;
  for (const auto& d : r.deltas) {
    if (!d.empty()) chunks.push_back(&d);
  }
  if (e.contains("min_chunks")) {
    EXPECT_GE(chunks.size(), e["min_chunks"].get<size_t>());
  }
  if (e.value("first_chunk_is_content", false)) {
    ASSERT_FALSE(chunks.empty());
    EXPECT_FALSE(chunks[0]->content.empty());
    EXPECT_TRUE(chunks[0]->tool_calls.empty());
  }
  if (e.contains("header_chunk_arguments_in")) {
    const auto allowed = e["header_chunk_arguments_in"].get<std::vector<std::string>>();
    for (const auto* d : chunks) {
      for (const auto& tc : d->tool_calls) {
        if (tc.header) {
          EXPECT_NE(std::find(allowed.begin(), allowed.end(), tc.arguments), allowed.end());
        }
      }
    }
  }
  if (e.value("arguments_streamed_in_more_than_one_chunk", false)) {
    int n = 0;
    for (const auto* d : chunks) {
      for (const auto& tc : d->tool_calls) {
        if (tc.index == 0 && !tc.arguments.empty()) ++n;
      }
    }
    EXPECT_GT(n, 1);
  }
}

TEST(ParserGolden, ToolCases) {
  const json data = load("qwen3_tool_parser_cases.json");
  ASSERT_FALSE(data.is_null()) << "golden data not found under " << test_data_dir();
  ASSERT_FALSE(data.is_discarded());
  ASSERT_EQ(data["cases"].size(), 40u);
  for (const auto& c : data["cases"]) {
    const std::string id = c["id"];
    const std::string mode = c["mode"];
    const std::string output = model_output_of(c);
    const json tools = c.contains("tools") ? c["tools"] : json(nullptr);
    ++g_cases;
    for (const std::string parser : {"qwen3_coder", "qwen3_xml"}) {
      // The tool parser alone (as vLLM's tests run it), and behind the reasoning parser with
      // thinking off (the prompt already closed the thought): both must give the expected result.
      for (const bool reasoning : {false, true}) {
        const OutputParserOptions o = options(reasoning, is_known_tool_parser(parser), tools, false);
        const ParseRun whole = run_whole(o, output);
        EXPECT_EQ(check_invariants(whole), "") << id;
        check_tool_expectations(c, whole.msg);
        const auto units = units_of(output);
        if (mode != "non_streaming") {
          Cuts each;
          for (size_t i = 0; i < units.size(); ++i) each.push_back(i);
          const ParseRun stream = run_units(o, units, each);
          check_stream_expectations(c, stream);
          check_tool_expectations(c, stream.msg);
        }
        if (c.contains("streaming_deltas")) {
          const ParseRun given = run_deltas(o, c["streaming_deltas"].get<std::vector<std::string>>());
          EXPECT_EQ(check_invariants(given), "") << id;
          EXPECT_EQ(diff_messages(given.msg, whole.msg), "") << id << " (given deltas)";
          if (c["expected"].contains("second_delta_has_tool_call_arguments_containing")) {
            ASSERT_GE(given.deltas.size(), 2u);
            std::string args;
            for (const auto& tc : given.deltas[1].tool_calls) args += tc.arguments;
            EXPECT_NE(
                args.find(
                    c["expected"]["second_delta_has_tool_call_arguments_containing"].get<std::string>()),
                std::string::npos);
          }
        }
        if (parser == "qwen3_coder") {
          g_split_runs += check_all_splits(o, units, whole.msg, id + (reasoning ? " +reasoning" : ""), 20,
                                           std::hash<std::string>{}(id));
          // The tool parser is text-based: the same output with the tags as plain text (split
          // anywhere, even inside a tag) must give the same message.
          if (!reasoning) {
            g_split_runs += check_all_splits(o, units_plain(output), whole.msg, id + " plain-text", 0, 1);
          }
        }
      }
    }
  }
}

TEST(ParserGolden, ToolInputsWithoutExpectations) {
  const json data = load("qwen3_tool_parser_cases.json");
  ASSERT_FALSE(data.is_null()) << "golden data not found under " << test_data_dir();
  std::map<std::string, ParsedMessage> got;
  for (const auto& c : data["inputs_without_explicit_expectations"]["items"]) {
    const std::string out = c["model_output"];
    const OutputParserOptions o = options(false, true);
    const ParseRun r = run_whole(o, out);
    EXPECT_EQ(check_invariants(r), "");
    got[c["id"]] = r.msg;
    g_split_runs += check_all_splits(o, units_of(out), r.msg, c["id"], 10, 7);
    ++g_cases;
  }
  // No tools: every value stays a string (vLLM: no schema -> str).
  ASSERT_EQ(got["xml_various_data_types"].tool_calls.size(), 1u);
  EXPECT_EQ(json::parse(got["xml_various_data_types"].tool_calls[0].arguments),
            json({{"string_field", "hello"},
                  {"int_field", "42"},
                  {"float_field", "3.14"},
                  {"bool_field", "true"},
                  {"null_field", "null"},
                  {"array_field", "[\"a\", \"b\", \"c\"]"},
                  {"object_field", "{\"nested\": \"value\"}"}}));
  ASSERT_EQ(got["xml_empty_arguments"].tool_calls.size(), 1u);
  EXPECT_EQ(got["xml_empty_arguments"].tool_calls[0].arguments, "{}");
  EXPECT_EQ(got["xml_surrounding_text"].content.value_or(""),
            "Let me check the weather for you.\n\n\n\nI will get that information.");
  ASSERT_EQ(got["xml_escaped_strings"].tool_calls.size(), 1u);
  EXPECT_EQ(got["xml_escaped_strings"].tool_calls[0].arguments,
            R"({"quoted": "He said \"hello\"", "path": "C:\\Users\\file.txt", "newline": "line1\nline2"})");
  ASSERT_EQ(got["xml_malformed_1"].tool_calls.size(), 1u);  // auto-closed at the end
  EXPECT_EQ(got["xml_malformed_1"].tool_calls[0].name, "func");
  EXPECT_EQ(got["xml_malformed_1"].tool_calls[0].arguments, "{}");
  EXPECT_TRUE(got["xml_malformed_2"].tool_calls.empty());  // empty name: not a call
}

void expect_reasoning(const ParsedMessage& m, const json& reasoning, const json& content,
                      const std::string& id) {
  SCOPED_TRACE(id + ": " + describe(m));
  if (reasoning.is_null()) {
    EXPECT_FALSE(m.reasoning.has_value());
  } else {
    EXPECT_EQ(m.reasoning.value_or("<null>"), reasoning.get<std::string>());
  }
  if (content.is_null()) {
    EXPECT_FALSE(m.content.has_value());
  } else {
    EXPECT_EQ(m.content.value_or("<null>"), content.get<std::string>());
  }
}

// With the tool parser on too, raw tool XML expected in content becomes a parsed call instead.
void expect_reasoning_with_tools(const ParsedMessage& m, const json& reasoning, const json& content,
                                 const std::string& id) {
  const bool xml = content.is_string() && content.get<std::string>().find("<tool_call>") != std::string::npos;
  if (!xml) return expect_reasoning(m, reasoning, content, id);
  SCOPED_TRACE(id + " +tools: " + describe(m));
  if (reasoning.is_null()) {
    EXPECT_FALSE(m.reasoning.has_value());
  } else {
    EXPECT_EQ(m.reasoning.value_or("<null>"), reasoning.get<std::string>());
  }
  const std::string c = content.get<std::string>();
  const std::string before = c.substr(0, c.find("<tool_call>"));
  EXPECT_EQ(m.content.value_or(""), before);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "bash");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"command": "cat /etc/hosts"})");
  EXPECT_EQ(m.finish_reason, "tool_calls");
}

TEST(ParserGolden, ReasoningCases) {
  const json data = load("qwen3_reasoning_parser_cases.json");
  ASSERT_FALSE(data.is_null()) << "golden data not found under " << test_data_dir();
  size_t n = 0;
  for (const auto& c : data["cases"]) {
    const std::string out = c["model_output"];
    for (const bool tools : {false, true}) {
      const OutputParserOptions o = options(true, tools);
      const ParseRun r = run_whole(o, out);
      EXPECT_EQ(check_invariants(r), "");
      if (tools)
        expect_reasoning_with_tools(r.msg, c["expected_reasoning"], c["expected_content"], c["id"]);
      else
        expect_reasoning(r.msg, c["expected_reasoning"], c["expected_content"], c["id"]);
      g_split_runs += check_all_splits(o, units_of(out), r.msg, c["id"], 20, n);
    }
    ++n;
  }
  for (const auto& c : data["multi_token_delta_cases"]) {
    const auto deltas = c["deltas"].get<std::vector<std::string>>();
    std::string out;
    for (const auto& d : deltas) out += d;
    for (const bool tools : {false, true}) {
      const OutputParserOptions o = options(true, tools);
      const ParseRun r = run_deltas(o, deltas);
      EXPECT_EQ(check_invariants(r), "");
      // The last case ends inside an unfinished call; content holds the raw XML without a parser.
      if (!tools)
        expect_reasoning(r.msg, c["expected_reasoning"], c["expected_content"], c["id"]);
      else {
        EXPECT_EQ(r.msg.reasoning.value_or(""), c["expected_reasoning"].get<std::string>());
      }
      EXPECT_EQ(diff_messages(run_whole(o, out).msg, r.msg), "");
      g_split_runs += check_all_splits(o, units_of(out), r.msg, c["id"], 20, n);
    }
    ++n;
  }
  for (const auto& c : data["thinking_disabled_cases"]["items"]) {
    const std::string out = c["model_output"];
    for (const bool tools : {false, true}) {
      const OutputParserOptions o = options(true, tools, nullptr, /*enable_thinking=*/false);
      const ParseRun r = run_whole(o, out);
      EXPECT_EQ(check_invariants(r), "");
      if (tools)
        expect_reasoning_with_tools(r.msg, c["expected_reasoning"], c["expected_content"], c["id"]);
      else
        expect_reasoning(r.msg, c["expected_reasoning"], c["expected_content"], c["id"]);
      g_split_runs += check_all_splits(o, units_of(out), r.msg, c["id"], 20, n);
    }
    ++n;
  }
  g_cases += n;
  EXPECT_EQ(n, 18u);
}

TEST(ParserGolden, ReasoningThenToolRecovery) {
  const json data = load("qwen3_tool_parser_cases.json");
  ASSERT_FALSE(data.is_null()) << "golden data not found under " << test_data_dir();
  for (const auto& c : data["reasoning_then_tool_recovery"]["items"]) {
    const std::string id = c["id"], out = c["model_output"];
    const json& e = c["expected"];
    ++g_cases;
    // Reasoning parser alone: the promoted call is content text, never reasoning.
    const ParseRun raw = run_whole(options(true, false), out);
    EXPECT_EQ(check_invariants(raw), "");
    if (e.contains("reasoning_not_contains")) {
      EXPECT_EQ(raw.msg.reasoning.value_or("").find(e["reasoning_not_contains"].get<std::string>()),
                std::string::npos)
          << id;
    }
    if (e.contains("content_contains") && !e.contains("content_order")) {
      for (const auto& s : as_list(e["content_contains"])) {
        EXPECT_NE(raw.msg.content.value_or("").find(s), std::string::npos) << id;
      }
    }
    if (e.contains(
            "content_order"))  // vLLM's non-streaming recovery appends the call after; we keep stream order
      for (const auto& s : as_list(e["content_order"])) {
        EXPECT_NE(raw.msg.content.value_or("").find(s), std::string::npos) << id;
      }
    if (e.contains("reasoning")) {
      EXPECT_EQ(raw.msg.reasoning.value_or(""), e["reasoning"].get<std::string>()) << id;
    }
    if (e.contains("content")) {
      EXPECT_EQ(raw.msg.content.value_or(""), e["content"].get<std::string>()) << id;
    }
    // With the tool parser: the call is parsed, content has no XML.
    const OutputParserOptions o = options(true, true);
    const ParseRun r = run_whole(o, out);
    EXPECT_EQ(check_invariants(r), "");
    SCOPED_TRACE(id + ": " + describe(r.msg));
    EXPECT_FALSE(has_tool_xml(r.msg.content.value_or("")));
    EXPECT_FALSE(has_tool_xml(r.msg.reasoning.value_or("")));
    if (out.find("<tool_call>") != std::string::npos) {
      ASSERT_EQ(r.msg.tool_calls.size(), 1u);
      EXPECT_EQ(r.msg.tool_calls[0].name, "Finish");
      EXPECT_EQ(r.msg.tool_calls[0].arguments, R"({"answer": "204"})");
    }
    if (e.contains("after_tool_parser")) {
      EXPECT_NE(
          r.msg.content.value_or("").find(e["after_tool_parser"]["content_contains"].get<std::string>()),
          std::string::npos);
    }
    if (e.contains("content_contains") && e.contains("content_order")) {
      EXPECT_NE(r.msg.content.value_or("").find(e["content_contains"].get<std::string>()), std::string::npos);
    }
    g_split_runs += check_all_splits(o, units_of(out), r.msg, id, 20, 3);
  }
}

TEST(ParserGolden, ZReportCounts) {
  std::printf("[parser golden] %zu cases, %zu chunked re-runs (every split point, unit by unit, random)\n",
              g_cases, g_split_runs);
  SUCCEED();
}

}  // namespace
}  // namespace ds::text::parser_testing
