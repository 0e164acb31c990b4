#include "test_parser_harness.h"

#include <cstdlib>
#include <filesystem>
#include <memory>

namespace ds::text::parser_testing {

std::string test_data_dir() {
  if (const char* e = std::getenv("DS_SHARED_DATA")) return e;
  return std::string(DS_SOURCE_DIR) + "/tests/data";
}

static size_t utf8_len(unsigned char b) {
  if (b >= 0xF0) return 4;
  if (b >= 0xE0) return 3;
  if (b >= 0xC0) return 2;
  return 1;
}

std::vector<Unit> units_plain(std::string_view s) {
  std::vector<Unit> u;
  for (size_t i = 0; i < s.size();) {
    const size_t n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
    u.push_back({std::string(s.substr(i, n)), std::nullopt});
    i += n;
  }
  return u;
}

std::vector<Unit> units_of(std::string_view tagged) {
  std::vector<Unit> u;
  for (auto& p : split_tagged_text(tagged)) {
    if (p.control) {
      u.push_back({p.text, p.control});
    } else {
      auto t = units_plain(p.text);
      u.insert(u.end(), t.begin(), t.end());
    }
  }
  return u;
}

OutputParserOptions options(bool reasoning, bool tools, const nlohmann::json& tool_schemas,
                            bool enable_thinking) {
  OutputParserOptions o;
  o.reasoning_parser = reasoning;
  o.enable_thinking = enable_thinking;
  o.tool_parser = tools;
  o.tools = tool_schemas;
  auto counter = std::make_shared<int>(0);
  o.make_tool_call_id = [counter] { return "call-" + std::to_string((*counter)++); };
  return o;
}

static int32_t id_of(ControlToken t) {
  const ControlTokenIds ids;
  switch (t) {
    case ControlToken::kThinkOpen:
      return ids.think_open;
    case ControlToken::kThinkClose:
      return ids.think_close;
    case ControlToken::kToolCallOpen:
      return ids.tool_call_open;
    case ControlToken::kToolCallClose:
      return ids.tool_call_close;
  }
  return 0;
}

ParseRun run_units(const OutputParserOptions& o_in, const std::vector<Unit>& units, const Cuts& cuts,
                   std::string_view finish_reason) {
  OutputParserOptions o = o_in;
  auto counter = std::make_shared<int>(0);
  o.make_tool_call_id = [counter] { return "call-" + std::to_string((*counter)++); };
  OutputParser p(o);
  ParseRun r;
  for (size_t c = 0; c < cuts.size(); ++c) {
    const size_t b = cuts[c], e = c + 1 < cuts.size() ? cuts[c + 1] : units.size();
    std::vector<int32_t> ids;
    std::string text;
    for (size_t i = b; i < e; ++i) {
      ids.push_back(units[i].control ? id_of(*units[i].control) : 1000);
      text += units[i].text;
    }
    r.deltas.push_back(p.feed(ids, text));
  }
  r.deltas.push_back(p.finish(finish_reason));
  r.msg = p.message();
  return r;
}

ParseRun run_whole(const OutputParserOptions& o, std::string_view tagged, std::string_view finish) {
  return run_units(o, units_of(tagged), {0}, finish);
}

ParseRun run_deltas(const OutputParserOptions& o_in, const std::vector<std::string>& deltas) {
  OutputParserOptions o = o_in;
  auto counter = std::make_shared<int>(0);
  o.make_tool_call_id = [counter] { return "call-" + std::to_string((*counter)++); };
  OutputParser p(o);
  ParseRun r;
  for (const auto& d : deltas) r.deltas.push_back(p.feed_tagged_text(d));
  r.deltas.push_back(p.finish("stop"));
  r.msg = p.message();
  return r;
}

std::string check_invariants(const ParseRun& r) {
  std::string reasoning, content;
  std::vector<std::string> args;
  std::vector<int> headers;
  for (size_t k = 0; k < r.deltas.size(); ++k) {
    const auto& d = r.deltas[k];
    reasoning += d.reasoning;
    content += d.content;
    for (const auto& tc : d.tool_calls) {
      if (tc.index < 0) return "negative tool index";
      const size_t i = static_cast<size_t>(tc.index);
      if (tc.header) {
        if (i != args.size()) return "header for index " + std::to_string(i) + " out of order";
        if (i >= r.msg.tool_calls.size()) return "header for a call not in the message";
        if (tc.id != r.msg.tool_calls[i].id || tc.name != r.msg.tool_calls[i].name)
          return "header id/name differ";
        args.emplace_back();
      } else if (i >= args.size()) {
        return "arguments before header for index " + std::to_string(i);
      }
      args[i] += tc.arguments;
    }
  }
  if (reasoning != r.msg.reasoning.value_or("")) return "reasoning deltas do not concatenate to the message";
  if (content != r.msg.content.value_or("")) return "content deltas do not concatenate to the message";
  if (args.size() != r.msg.tool_calls.size()) return "tool-call count differs between deltas and message";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != r.msg.tool_calls[i].arguments) return "arguments of call " + std::to_string(i) + " differ";
    auto j = nlohmann::json::parse(args[i], nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return "arguments of call " + std::to_string(i) + " are not a JSON object: " + args[i];
    if (r.msg.tool_calls[i].name.empty()) return "empty tool name";
  }
  if (r.msg.reasoning && r.msg.reasoning->empty()) return "empty (non-null) reasoning";
  if (r.msg.content && r.msg.content->empty()) return "empty (non-null) content";
  return "";
}

std::string describe(const ParsedMessage& m) {
  nlohmann::json j = message_to_json(m, true);
  j["finish_reason"] = m.finish_reason;
  return j.dump();
}

std::string diff_messages(const ParsedMessage& a, const ParsedMessage& b) {
  bool same = a.reasoning == b.reasoning && a.content == b.content && a.finish_reason == b.finish_reason &&
              a.tool_calls.size() == b.tool_calls.size() && a.error == b.error;
  for (size_t i = 0; same && i < a.tool_calls.size(); ++i)
    same = a.tool_calls[i].id == b.tool_calls[i].id && a.tool_calls[i].name == b.tool_calls[i].name &&
           a.tool_calls[i].arguments == b.tool_calls[i].arguments;
  return same ? "" : describe(a) + "\n   vs\n" + describe(b);
}

bool has_tool_xml(const std::string& s) {
  for (const char* t :
       {"<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>"})
    if (s.find(t) != std::string::npos) return true;
  return false;
}

size_t check_all_splits(const OutputParserOptions& o, const std::vector<Unit>& units,
                        const ParsedMessage& ref, const std::string& label, int random_chunkings,
                        uint64_t seed) {
  size_t runs = 0;
  auto check = [&](const Cuts& cuts, const std::string& how) {
    const ParseRun r = run_units(o, units, cuts);
    ++runs;
    const std::string inv = check_invariants(r);
    EXPECT_EQ(inv, "") << label << " " << how;
    const std::string diff = diff_messages(r.msg, ref);
    EXPECT_EQ(diff, "") << label << " " << how;
    return inv.empty() && diff.empty();
  };
  for (size_t b = 1; b < units.size(); ++b)
    if (!check({0, b}, "split at unit " + std::to_string(b))) return runs;
  Cuts each;
  for (size_t i = 0; i < units.size(); ++i) each.push_back(i);
  if (!units.empty()) check(each, "unit by unit");
  std::mt19937_64 rng(seed);
  for (int k = 0; k < random_chunkings && units.size() > 1; ++k) {
    Cuts cuts{0};
    size_t pos = 0;
    while (true) {
      pos += 1 + rng() % 12;
      if (pos >= units.size()) break;
      cuts.push_back(pos);
    }
    if (!check(cuts, "random chunking " + std::to_string(k))) break;
  }
  return runs;
}

}  // namespace ds::text::parser_testing
