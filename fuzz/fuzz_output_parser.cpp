// Output parser fuzz target (--reasoning-parser qwen3 + --tool-call-parser qwen3_coder/qwen3_xml):
// the model output is parsed whole and again in chunks cut where the input says; both must give
// the same message, and the streamed deltas must concatenate to it (DESIGN: streamed ==
// non-streamed at every split). The header bytes pick the options and one of a few tool schemas.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "deltaserve/text/parsers/output_parser.h"
#include "fuzz/fuzz_common.h"

namespace {

const nlohmann::json& schemas(int which) {
  static const nlohmann::json kAll[] = {
      nullptr,
      nlohmann::json::parse(
          R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
        "properties":{"city":{"type":"string"},"days":{"type":"integer"},"temp":{"type":"number"},
        "metric":{"type":"boolean"},"opts":{"type":"object"},"tags":{"type":"array"},
        "note":{"type":["string","null"]},"any":{"anyOf":[{"type":"null"},{"type":"integer"}]}}}}},
        {"type":"function","function":{"name":"run","parameters":{"type":"object",
        "properties":{"code":{"type":"string"},"timeout":{"type":"number"}}}}}])"),
      nlohmann::json::parse(R"([{"type":"function","function":{"name":"f","parameters":{}}}])"),
  };
  return kAll[which % 3];
}

struct Run {
  ds::text::ParsedMessage msg;
  std::string reasoning, content;
  std::map<int, std::string> args, names;
};

ds::text::OutputParserOptions options(uint8_t flags) {
  ds::text::OutputParserOptions o;
  o.reasoning_parser = flags & 1;
  o.enable_thinking = flags & 2;
  o.tool_parser = flags & 4;
  o.parallel_tool_calls = !(flags & 8);
  o.include_reasoning = !(flags & 16);
  o.tools = schemas(flags >> 5);
  o.limits.max_value_bytes = 4096;
  auto n = std::make_shared<int>(0);
  o.make_tool_call_id = [n] { return "call-" + std::to_string((*n)++); };
  return o;
}

void collect(const ds::text::ParserDelta& d, Run* r) {
  r->reasoning += d.reasoning;
  r->content += d.content;
  for (const auto& t : d.tool_calls) {
    if (t.header) r->names[t.index] = t.name;
    r->args[t.index] += t.arguments;
  }
}

Run run(uint8_t flags, std::string_view text, const std::vector<size_t>& cuts) {
  ds::text::OutputParser p(options(flags));
  Run r;
  size_t at = 0;
  for (size_t c : cuts) {
    collect(p.feed_tagged_text(text.substr(at, c - at)), &r);
    at = c;
  }
  collect(p.feed_tagged_text(text.substr(at)), &r);
  collect(p.finish("stop"), &r);
  r.msg = p.message();
  return r;
}

std::string show(const ds::text::ParsedMessage& m) {
  std::string s = "reasoning=" + m.reasoning.value_or("<null>") + " content=" + m.content.value_or("<null>");
  for (const auto& c : m.tool_calls) s += " call " + c.name + " " + c.arguments;
  return s + " finish=" + m.finish_reason + " error=" + m.error;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  ds::fuzz::Bytes in(data, size);
  const uint8_t flags = in.u8();
  const uint8_t cut_seed = in.u8();
  const std::string_view text = in.rest();

  const Run whole = run(flags, text, {});
  // The parser takes UTF-8 text as the detokenizer delivers it: whole characters per feed.
  std::vector<size_t> cuts;
  uint32_t x = cut_seed * 2654435761u + 1;
  for (size_t i = 1; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    x = x * 1103515245u + 12345u;
    if (cut_seed == 0 || (x >> 16) % 4 == 0) cuts.push_back(i);  // 0: every character
  }
  const Run chunked = run(flags, text, cuts);

  const std::string a = show(whole.msg), b = show(chunked.msg);
  DS_FUZZ_CHECK(a == b, "whole:   %s\nchunked: %s", a.c_str(), b.c_str());
  for (const Run* r : {&whole, &chunked}) {
    const auto& m = r->msg;
    DS_FUZZ_CHECK(r->content == m.content.value_or(""), "streamed content '%s' != final '%s'",
                  r->content.c_str(), m.content.value_or("").c_str());
    if (m.reasoning) DS_FUZZ_CHECK(r->reasoning == *m.reasoning, "streamed reasoning != final");
    DS_FUZZ_CHECK(r->args.size() == m.tool_calls.size(), "%zu streamed calls, %zu final", r->args.size(),
                  m.tool_calls.size());
    for (size_t i = 0; i < m.tool_calls.size(); ++i) {
      const auto it = r->args.find(static_cast<int>(i));
      DS_FUZZ_CHECK(it != r->args.end() && it->second == m.tool_calls[i].arguments,
                    "call %zu streamed args '%s' != final '%s'", i,
                    it == r->args.end() ? "<none>" : it->second.c_str(), m.tool_calls[i].arguments.c_str());
      // json.dumps writes NaN/Infinity for float("nan") / float("inf"), and so do we.
      const std::string& args = m.tool_calls[i].arguments;
      if (args.find("NaN") == std::string::npos && args.find("Infinity") == std::string::npos)
        DS_FUZZ_CHECK(nlohmann::json::accept(args), "arguments not JSON: %s", args.c_str());
    }
  }
  return 0;
}
