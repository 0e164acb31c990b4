// The qwen3 reasoning splitter: a three-state machine over control tokens and text.
#include "deltaserve/text/parsers/reasoning.h"

#include <algorithm>

namespace ds::text {
namespace {
constexpr std::string_view kFunctionOpen = "<function=";
bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
}  // namespace

std::string_view control_token_text(ControlToken t) {
  switch (t) {
    case ControlToken::kThinkOpen:
      return "<think>";
    case ControlToken::kThinkClose:
      return "</think>";
    case ControlToken::kToolCallOpen:
      return "<tool_call>";
    case ControlToken::kToolCallClose:
      return "</tool_call>";
  }
  return "";
}

ReasoningSplitter::ReasoningSplitter(bool enabled, bool start_in_reasoning, size_t max_lookahead_ws)
    : enabled_(enabled),
      max_ws_(max_lookahead_ws),
      state_(enabled && start_in_reasoning ? State::kReasoning : State::kContent) {}

// Decide a tentative `<tool_call>`: confirmed when, after whitespace, `<function=` follows.
void ReasoningSplitter::resolve_tentative(ReasoningSplit& out, bool at_end) {
  const size_t tag = control_token_text(ControlToken::kToolCallOpen).size();
  size_t p = tag;
  while (p < hold_.size() && is_ws(hold_[p]) && p - tag < max_ws_) ++p;
  const bool ws_capped = p - tag >= max_ws_;
  const std::string_view rest = std::string_view(hold_).substr(p);
  const size_t n = std::min(rest.size(), kFunctionOpen.size());
  const bool prefix_ok = !ws_capped && rest.substr(0, n) == kFunctionOpen.substr(0, n);
  if (prefix_ok && n == kFunctionOpen.size()) {
    out.content += hold_;  // the thought ended implicitly; the call goes to the tool parser
    hold_.clear();
    state_ = State::kContent;
    return;
  }
  if (prefix_ok && !at_end) return;  // still undecided
  out.reasoning += hold_;            // just text inside the thought
  hold_.clear();
  state_ = State::kReasoning;
}

void ReasoningSplitter::feed_text(std::string_view text, ReasoningSplit& out) {
  if (text.empty()) return;
  switch (state_) {
    case State::kReasoning:
      out.reasoning.append(text);
      break;
    case State::kContent:
      out.content.append(text);
      break;
    case State::kTentativeToolCall:
      hold_.append(text);
      resolve_tentative(out, false);
      break;
  }
}

void ReasoningSplitter::feed_control(ControlToken t, ReasoningSplit& out) {
  if (!enabled_) {
    out.content.append(control_token_text(t));
    return;
  }
  if (state_ == State::kTentativeToolCall) resolve_tentative(out, true);
  if (state_ == State::kContent) {
    // Think tags after the thought are dropped; tool-call tags are the tool parser's business.
    if (t == ControlToken::kToolCallOpen || t == ControlToken::kToolCallClose)
      out.content.append(control_token_text(t));
    return;
  }
  switch (t) {
    case ControlToken::kThinkOpen:
      break;  // `<think>` at the start (older templates): dropped
    case ControlToken::kThinkClose:
      state_ = State::kContent;
      break;
    case ControlToken::kToolCallOpen:
      hold_ = control_token_text(t);
      state_ = State::kTentativeToolCall;
      break;
    case ControlToken::kToolCallClose:
      out.reasoning.append(control_token_text(t));
      break;
  }
}

void ReasoningSplitter::finish(ReasoningSplit& out) {
  if (state_ == State::kTentativeToolCall) resolve_tentative(out, true);
}

}  // namespace ds::text
