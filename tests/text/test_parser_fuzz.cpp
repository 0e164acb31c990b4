// Fuzzing the output parser with random and adversarial outputs: it must never crash or hang,
// always produce valid JSON arguments and valid UTF-8, give the same message for any chunking,
// and stay linear on inputs built to trigger rescans or unbounded buffering.
#include <gtest/gtest.h>

#include <chrono>

#include "test_parser_harness.h"

namespace ds::text::parser_testing {
namespace {

using json = nlohmann::json;

const json kTools =
    json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
  "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "object"},
  "d": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "e": {"type": "boolean"}, "g": {"type": "weird"}}}}}])");

const char* kFragments[] = {"<tool_call>",
                            "</tool_call>",
                            "<function=",
                            "<function=f>",
                            "<function=g>",
                            "<function={{x}}>",
                            "</function>",
                            "<parameter=",
                            "<parameter=a>",
                            "<parameter=b>",
                            "<parameter=c>",
                            "<parameter=d>",
                            "<parameter=e>",
                            "<parameter=g>",
                            "<parameter=zz>",
                            "</parameter>",
                            "<think>",
                            "</think>",
                            "\n",
                            "\n\n",
                            " ",
                            "x",
                            "hello",
                            "{",
                            "}",
                            "[1, 2]",
                            "{'k': 'v'}",
                            "\"",
                            "'",
                            "\\",
                            "null",
                            "None",
                            "42",
                            "3.5",
                            "true",
                            "<",
                            ">",
                            "=",
                            "<tool",
                            "</para",
                            "\xc3\xa9",
                            "\xff",
                            "\xe2\x82",
                            "\x01",
                            "\t"};

std::string random_output(std::mt19937_64& rng) {
  std::string s;
  const int n = 1 + static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) s += kFragments[rng() % (sizeof(kFragments) / sizeof(kFragments[0]))];
  return s;
}

bool valid_utf8(const std::string& s) {
  std::string hold;
  return sanitize_utf8(hold, s, true) == s;
}

TEST(ParserFuzz, RandomFragmentSoup) {
  std::mt19937_64 rng(12345);
  size_t runs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 0; it < 1500; ++it) {
    const std::string out = random_output(rng);
    const bool reasoning = rng() % 2, thinking = rng() % 2, tools = rng() % 4 != 0;
    OutputParserOptions o = options(reasoning, tools, rng() % 3 ? kTools : json(nullptr), thinking);
    o.parallel_tool_calls = rng() % 4 != 0;
    const auto units = units_of(out);
    const ParseRun whole = run_units(o, units, {0});
    ASSERT_EQ(check_invariants(whole), "") << json(out).dump(-1, ' ', false, json::error_handler_t::replace);
    ASSERT_TRUE(valid_utf8(whole.msg.content.value_or("")));
    ASSERT_TRUE(valid_utf8(whole.msg.reasoning.value_or("")));
    EXPECT_NO_THROW((void)message_to_json(whole.msg, true).dump());
    for (const auto& tc : whole.msg.tool_calls) ASSERT_TRUE(valid_utf8(tc.arguments));
    // tool XML is never streamed as content when it formed a call
    runs += check_all_splits(o, units, whole.msg, "fuzz#" + std::to_string(it), 3, rng());
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "input: " << json(out).dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[parser fuzz] 1500 random outputs, %zu chunked runs, %.2f s\n", runs, s);
}

// Well-formed calls with random values: whatever the value, the arguments round-trip.
TEST(ParserFuzz, RandomStringValuesRoundTrip) {
  std::mt19937_64 rng(99);
  const char* alphabet[] = {"a",          " ",  "\n",       "<",           "/",
                            "\"",         "\\", "\xc3\xa9", "</parameter", "<parameter=b",
                            "</function", "\t", "{",        "}",           "</tool_call"};
  for (int it = 0; it < 500; ++it) {
    std::string v;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) v += alphabet[rng() % (sizeof(alphabet) / sizeof(alphabet[0]))];
    // The model's format puts the value between newlines. A value cannot contain a complete tag
    // that ends it (`</parameter>` + `</function>`), so the alphabet has no '>' to complete one.
    const std::string out =
        "<tool_call>\n<function=f>\n<parameter=a>\n" + v + "\n</parameter>\n</function>\n</tool_call>";
    const OutputParserOptions o = options(false, true, kTools);
    const ParseRun r = run_whole(o, out);
    ASSERT_EQ(r.msg.tool_calls.size(), 1u) << json(out).dump();
    EXPECT_EQ(json::parse(r.msg.tool_calls[0].arguments)["a"], v) << json(out).dump();
    check_all_splits(o, units_of(out), r.msg, "value#" + std::to_string(it), 2, rng());
    if (::testing::Test::HasFailure()) return;
  }
}

double seconds_to_feed(const OutputParserOptions& o, const std::string& prefix, const std::string& body,
                       const std::string& suffix, size_t chunk, ParsedMessage* msg = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  OutputParser p(o);
  p.feed_tagged_text(prefix);
  for (size_t i = 0; i < body.size(); i += chunk) p.feed_text(std::string_view(body).substr(i, chunk));
  p.feed_tagged_text(suffix);
  p.finish("stop");
  if (msg) *msg = p.message();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Inputs that would be quadratic for a parser that rescans or buffers. They are fed in small
// chunks; a rescanning parser would take minutes here (and hit the test timeout).
TEST(ParserFuzz, AdversarialInputsStayLinear) {
  const OutputParserOptions o = options(true, true, kTools);
  const size_t mb = 1 << 20;
  struct Case {
    const char* name;
    std::string prefix, body, suffix;
  };
  const std::vector<Case> cases = {
      {"content '<' x1M", "</think>", std::string(mb, '<'), ""},
      {"content '<tool' repeated", "</think>",
       [] {
         std::string s;
         while (s.size() < (1 << 20)) s += "<tool <function <para ";
         return s;
       }(),
       ""},
      {"reasoning 1MB", "", std::string(mb, 'r'), "</think>ok"},
      {"string value 2MB", "</think><tool_call>\n<function=f>\n<parameter=a>\n", std::string(2 * mb, 'v'),
       "\n</parameter>\n</function>\n</tool_call>"},
      {"value of newlines", "</think><tool_call>\n<function=f>\n<parameter=a>\n", std::string(mb, '\n'),
       "</parameter>"},
      {"value of fake closes", "</think><tool_call>\n<function=f>\n<parameter=a>\n",
       [] {
         std::string s;
         while (s.size() < (1 << 20)) s += "</parameter> x </function> y </tool_call> z\n<parameter=a>\n";
         return s;
       }(),
       "\n</parameter>\n</function>"},
      {"spaces after a close tag", "</think><tool_call>\n<function=f>\n<parameter=a>\nv</parameter>",
       std::string(mb, ' '), "x</parameter></function>"},
      {"spaces after <tool_call>", "</think><tool_call>", std::string(mb, ' '), "<function=f></function>"},
      {"object value 1MB", "</think><tool_call>\n<function=f>\n<parameter=c>\n[",
       [] {
         std::string s;
         while (s.size() < (1 << 20)) s += "1, ";
         return s;
       }(),
       "2]\n</parameter>\n</function>"},
  };
  for (const auto& c : cases) {
    ParsedMessage m;
    const double s = seconds_to_feed(o, c.prefix, c.body, c.suffix, 7, &m);
    std::printf("[parser adversarial] %-26s %.3f s\n", c.name, s);
    EXPECT_NO_THROW((void)message_to_json(m, true).dump()) << c.name;
    for (const auto& tc : m.tool_calls) EXPECT_TRUE(json::accept(tc.arguments)) << c.name;
  }
}

TEST(ParserFuzz, OversizedValueIsCutWithAnError) {
  OutputParserOptions o = options(false, true, kTools);
  o.limits.max_value_bytes = 1 << 20;
  ParsedMessage m;
  const std::string body(4u << 20, 'v');
  seconds_to_feed(o, "<tool_call>\n<function=f>\n<parameter=a>\n", body,
                  "\n</parameter>\n</function>\n</tool_call>trailing", 4096, &m);
  EXPECT_NE(m.error.find("exceeds"), std::string::npos);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  const json args = json::parse(m.tool_calls[0].arguments);
  EXPECT_EQ(args["a"].get<std::string>().size(), 1u << 20);
  EXPECT_EQ(m.finish_reason, "stop");  // cut inside a call: not reported as a clean tool call
  // non-string values are capped the same way
  ParsedMessage m2;
  seconds_to_feed(o, "<tool_call>\n<function=f>\n<parameter=c>\n", std::string(3u << 20, '['), "", 65536,
                  &m2);
  EXPECT_FALSE(m2.error.empty());
  ASSERT_EQ(m2.tool_calls.size(), 1u);
  EXPECT_TRUE(json::accept(m2.tool_calls[0].arguments));
}

TEST(ParserFuzz, DeepNestingInValues) {
  const OutputParserOptions o = options(false, true, kTools);
  std::string body;
  for (int i = 0; i < 20000; ++i) body += "\n<parameter=zz>";
  ParsedMessage m;
  seconds_to_feed(o, "<tool_call>\n<function=f>\n<parameter=a>\n", body, "\n</parameter>\n</function>", 13,
                  &m);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_TRUE(json::accept(m.tool_calls[0].arguments));
  ParsedMessage m2;  // deeply nested container value: depth-limited parse, kept as a string
  seconds_to_feed(o, "<tool_call>\n<function=f>\n<parameter=c>\n", std::string(100000, '['), "\n</parameter>",
                  4096, &m2);
  ASSERT_EQ(m2.tool_calls.size(), 1u);
  EXPECT_TRUE(json::parse(m2.tool_calls[0].arguments)["c"].is_string());
}

}  // namespace
}  // namespace ds::text::parser_testing
