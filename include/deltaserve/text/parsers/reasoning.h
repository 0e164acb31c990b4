// `--reasoning-parser qwen3` (vLLM's third generation): splits generated output into reasoning and
// content at the `</think>` *token*. Qwen3.5 prompts end in `<think>\n`, so output starts inside the
// thought; a `<think>` in the output is dropped; a thought cut off by max_tokens is all reasoning; a
// `<tool_call>` token followed (after whitespace) by `<function=` also ends the thought, so a call
// the model starts inside `<think>` is parsed instead of lost. Works on control tokens, never on
// text that merely spells a tag. Used through output_parser.h.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ds::text {

// The added tokens the output parsers react to (Qwen3.5/3.6 ids in ControlTokenIds).
enum class ControlToken { kThinkOpen, kThinkClose, kToolCallOpen, kToolCallClose };
std::string_view control_token_text(ControlToken t);

// Text produced by one feed: reasoning first, then content (reasoning never resumes once it ended).
struct ReasoningSplit {
  std::string reasoning;
  std::string content;  // control tokens outside the thought appear as their text (`<tool_call>`)
};

class ReasoningSplitter {
 public:
  // enabled=false: no reasoning parser, everything (tags included) is content.
  // start_in_reasoning: thinking enabled and the prompt left the model inside `<think>`.
  ReasoningSplitter(bool enabled, bool start_in_reasoning, size_t max_lookahead_ws = 1024);

  void feed_text(std::string_view text, ReasoningSplit& out);
  void feed_control(ControlToken t, ReasoningSplit& out);
  void finish(ReasoningSplit& out);
  bool in_reasoning() const { return state_ != State::kContent; }

 private:
  enum class State { kReasoning, kTentativeToolCall, kContent };
  void resolve_tentative(ReasoningSplit& out, bool at_end);

  bool enabled_;
  size_t max_ws_;
  State state_;
  std::string hold_;  // `<tool_call>` + text seen since, while undecided
};

}  // namespace ds::text
