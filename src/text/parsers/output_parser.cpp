// OutputParser: UTF-8 hygiene, control-token routing, reasoning split, then the tool parser over
// the content stream; deltas and the final message are built from the same events.
#include "deltaserve/text/parsers/output_parser.h"

#include <array>
#include <random>

namespace ds::text {
namespace {

constexpr std::array<ControlToken, 4> kControls = {ControlToken::kThinkOpen, ControlToken::kThinkClose,
                                                   ControlToken::kToolCallOpen, ControlToken::kToolCallClose};

void append_fffd(std::string& out) {
  out += "\xEF\xBF\xBD";
}

}  // namespace

std::string sanitize_utf8(std::string& hold, std::string_view in, bool final) {
  std::string s = std::move(hold);
  hold.clear();
  s.append(in);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t min = 0;
    if (b >= 0xC2 && b <= 0xDF)
      len = 2, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF)
      len = 3, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4)
      len = 4, min = 0x10000;
    if (len == 0) {
      append_fffd(out);
      ++i;
      continue;
    }
    size_t k = 1;
    uint32_t cp = b & (0xFF >> (len + 1));
    while (k < len && i + k < n && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      ++k;
    }
    if (k < len && i + k == n && !final) {  // incomplete at the end: wait for the rest
      hold = s.substr(i);
      break;
    }
    // With k == len, only a complete sequence's value can be checked; a prefix that is already
    // out of range (E0 80.., ED A0.., F4 90..) is rejected once complete.
    if (k < len || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      append_fffd(out);
      i += k < len ? k : len;
      continue;
    }
    out.append(s, i, len);
    i += len;
  }
  return out;
}

std::vector<OutputPiece> split_tagged_text(std::string_view text) {
  std::vector<OutputPiece> pieces;
  std::string cur;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '<') {
      bool hit = false;
      for (ControlToken t : kControls) {
        const std::string_view tag = control_token_text(t);
        if (text.substr(i, tag.size()) == tag) {
          if (!cur.empty()) pieces.push_back({std::move(cur), std::nullopt});
          cur.clear();
          pieces.push_back({std::string(tag), t});
          i += tag.size();
          hit = true;
          break;
        }
      }
      if (hit) continue;
    }
    cur += text[i++];
  }
  if (!cur.empty()) pieces.push_back({std::move(cur), std::nullopt});
  return pieces;
}

std::string make_tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = "chatcmpl-tool-";
  for (int w = 0; w < 2; ++w) {
    uint64_t x = rng();
    for (int k = 0; k < 16; ++k, x >>= 4) id += kHex[x & 0xF];
  }
  return id;
}

std::optional<bool> prompt_leaves_thought_open(std::span<const int32_t> prompt_ids,
                                               const ControlTokenIds& ids) {
  for (size_t i = prompt_ids.size(); i-- > 0;) {
    if (prompt_ids[i] == ids.think_close) return false;
    if (prompt_ids[i] == ids.think_open) return true;
  }
  return std::nullopt;
}

OutputParser::OutputParser(OutputParserOptions opts)
    : opts_(std::move(opts)),
      splitter_(opts_.reasoning_parser, opts_.enable_thinking, opts_.limits.max_lookahead_ws) {
  if (!opts_.make_tool_call_id) opts_.make_tool_call_id = make_tool_call_id;
  if (opts_.tool_parser)
    tools_.emplace(opts_.tools, opts_.limits, opts_.make_tool_call_id, opts_.parallel_tool_calls);
}

void OutputParser::take_tool_events(ParserDelta& d) {
  for (auto& ev : events_) {
    switch (ev.kind) {
      case ToolEvent::kContent:
        d.content += ev.text;
        content_ += ev.text;
        break;
      case ToolEvent::kHeader:
        d.tool_calls.push_back({ev.index, true, ev.id, ev.name, ""});
        msg_.tool_calls.push_back({ev.id, ev.name, ""});
        break;
      case ToolEvent::kArguments:
        if (d.tool_calls.empty() || d.tool_calls.back().index != ev.index)
          d.tool_calls.push_back({ev.index, false, "", "", ""});
        d.tool_calls.back().arguments += ev.text;
        if (ev.index >= 0 && static_cast<size_t>(ev.index) < msg_.tool_calls.size())
          msg_.tool_calls[static_cast<size_t>(ev.index)].arguments += ev.text;
        break;
    }
  }
  events_.clear();
}

void OutputParser::route(const ReasoningSplit& split, ParserDelta& d) {
  if (!split.reasoning.empty() && opts_.include_reasoning) {
    d.reasoning += split.reasoning;
    reasoning_ += split.reasoning;
  }
  if (split.content.empty()) return;
  if (tools_) {
    tools_->feed(split.content, events_);
    take_tool_events(d);
  } else {
    d.content += split.content;
    content_ += split.content;
  }
}

ParserDelta OutputParser::feed_text_into(std::string_view text, ParserDelta d) {
  if (finished_) return d;
  const std::string clean = sanitize_utf8(utf8_hold_, text, false);
  ReasoningSplit split;
  splitter_.feed_text(clean, split);
  route(split, d);
  return d;
}

ParserDelta OutputParser::feed_text(std::string_view text) {
  return feed_text_into(text, {});
}

ParserDelta OutputParser::feed_control(ControlToken t) {
  ParserDelta d;
  if (finished_) return d;
  ReasoningSplit split;
  if (!utf8_hold_.empty())
    splitter_.feed_text(sanitize_utf8(utf8_hold_, {}, true), split);  // cut char: U+FFFD
  splitter_.feed_control(t, split);
  route(split, d);
  return d;
}

static void merge_delta(ParserDelta& into, ParserDelta&& from) {
  into.reasoning += from.reasoning;
  into.content += from.content;
  for (auto& tc : from.tool_calls) {
    if (!tc.header && !into.tool_calls.empty() && into.tool_calls.back().index == tc.index) {
      into.tool_calls.back().arguments += tc.arguments;
    } else {
      into.tool_calls.push_back(std::move(tc));
    }
  }
}

ParserDelta OutputParser::feed(std::span<const int32_t> token_ids, std::string_view text) {
  ParserDelta d;
  size_t cur = 0;
  for (int32_t id : token_ids) {
    std::optional<ControlToken> t;
    if (id == opts_.ids.think_open)
      t = ControlToken::kThinkOpen;
    else if (id == opts_.ids.think_close)
      t = ControlToken::kThinkClose;
    else if (id == opts_.ids.tool_call_open)
      t = ControlToken::kToolCallOpen;
    else if (id == opts_.ids.tool_call_close)
      t = ControlToken::kToolCallClose;
    if (!t) continue;
    const std::string_view tag = control_token_text(*t);
    const size_t p = text.find(tag, cur);
    if (p != std::string_view::npos) {  // a detokenizer that skipped the tag gives a zero-width token
      merge_delta(d, feed_text(text.substr(cur, p - cur)));
      cur = p + tag.size();
    }
    merge_delta(d, feed_control(*t));
  }
  merge_delta(d, feed_text(text.substr(cur)));
  return d;
}

ParserDelta OutputParser::feed_tagged_text(std::string_view text) {
  std::string s = std::move(tag_hold_);
  tag_hold_.clear();
  s.append(text);
  size_t end = s.size();
  const size_t q = s.rfind('<');
  if (q != std::string::npos) {
    const std::string_view tail = std::string_view(s).substr(q);
    for (ControlToken t : kControls) {
      const std::string_view tag = control_token_text(t);
      if (tail.size() < tag.size() && tag.substr(0, tail.size()) == tail) end = q;
    }
  }
  tag_hold_ = s.substr(end);
  ParserDelta d;
  for (auto& p : split_tagged_text(std::string_view(s).substr(0, end)))
    merge_delta(d, p.control ? feed_control(*p.control) : feed_text(p.text));
  return d;
}

ParserDelta OutputParser::finish(std::string_view finish_reason) {
  ParserDelta d;
  if (finished_) return d;
  if (!tag_hold_.empty()) {
    const std::string rest = std::move(tag_hold_);
    tag_hold_.clear();
    merge_delta(d, feed_text(rest));
  }
  const std::string tail = sanitize_utf8(utf8_hold_, {}, true);
  ReasoningSplit split;
  splitter_.feed_text(tail, split);
  splitter_.finish(split);
  route(split, d);
  if (tools_) {
    tools_->finish(events_);
    take_tool_events(d);
    msg_.error = tools_->error();
  }
  finished_ = true;
  if (!reasoning_.empty()) msg_.reasoning = reasoning_;
  if (!content_.empty()) msg_.content = content_;
  msg_.finish_reason = std::string(finish_reason);
  // A call cut off by max_tokens (or by a size limit) keeps the engine's reason: its arguments
  // may be incomplete, so it is not reported as a clean "tool_calls" finish.
  const bool cut =
      tools_ && tools_->ended_inside_call() && (finish_reason == "length" || !msg_.error.empty());
  if (!msg_.tool_calls.empty() && !cut) msg_.finish_reason = "tool_calls";
  return d;
}

static void put_reasoning(nlohmann::json& j, std::string_view field, const nlohmann::json& v) {
  if (field == "reasoning" || field == "both") j["reasoning"] = v;
  if (field == "reasoning_content" || field == "both") j["reasoning_content"] = v;
}

nlohmann::json delta_to_json(const ParserDelta& d, std::string_view reasoning_field) {
  nlohmann::json j = nlohmann::json::object();
  if (!d.reasoning.empty()) put_reasoning(j, reasoning_field, d.reasoning);
  if (!d.content.empty()) j["content"] = d.content;
  if (!d.tool_calls.empty()) {
    nlohmann::json calls = nlohmann::json::array();
    for (const auto& tc : d.tool_calls) {
      nlohmann::json c = {{"index", tc.index}};
      if (tc.header) {
        c["id"] = tc.id;
        c["type"] = "function";
        c["function"] = {{"name", tc.name}, {"arguments", tc.arguments}};
      } else {
        c["function"] = {{"arguments", tc.arguments}};
      }
      calls.push_back(std::move(c));
    }
    j["tool_calls"] = std::move(calls);
  }
  return j;
}

nlohmann::json message_to_json(const ParsedMessage& m, bool reasoning_parser,
                               std::string_view reasoning_field) {
  nlohmann::json j = {{"role", "assistant"}};
  j["content"] = m.content ? nlohmann::json(*m.content) : nlohmann::json(nullptr);
  j["refusal"] = nullptr;
  j["annotations"] = nullptr;
  j["audio"] = nullptr;
  j["function_call"] = nullptr;
  nlohmann::json calls = nlohmann::json::array();
  for (const auto& tc : m.tool_calls)
    calls.push_back({{"id", tc.id},
                     {"type", "function"},
                     {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
  j["tool_calls"] = std::move(calls);
  if (reasoning_parser)
    put_reasoning(j, reasoning_field, m.reasoning ? nlohmann::json(*m.reasoning) : nlohmann::json(nullptr));
  return j;
}

}  // namespace ds::text
