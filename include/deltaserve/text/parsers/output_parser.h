// The per-request output parser the server runs over generated tokens: `--reasoning-parser qwen3`
// plus `--tool-call-parser qwen3_coder|qwen3_xml` as ONE incremental state machine. Feed it each
// engine step (token ids + decoded text); it returns the delta to stream (reasoning, content,
// tool-call header / argument fragments) and, after finish(), the complete assistant message.
// Guarantees: the streamed pieces concatenate to the final message for any chunking; tool XML never
// reaches `content`; text after tool calls is content; memory is bounded (ToolParserLimits).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "deltaserve/text/parsers/reasoning.h"
#include "deltaserve/text/parsers/tool_parser.h"

namespace ds::text {

// Token ids of the control tokens (Qwen3.5/3.6 vocabulary by default; qwen35-arch.md §6).
struct ControlTokenIds {
  int32_t think_open = 248068;
  int32_t think_close = 248069;
  int32_t tool_call_open = 248058;
  int32_t tool_call_close = 248059;
};

struct OutputParserOptions {
  bool reasoning_parser = false;  // --reasoning-parser qwen3
  bool enable_thinking = true;    // merged chat_template_kwargs.enable_thinking
  bool include_reasoning = true;  // request include_reasoning
  bool tool_parser = false;  // a qwen3 tool parser is set AND tool_choice lets it run (tool_parsing_enabled)
  bool parallel_tool_calls = true;
  nlohmann::json tools;  // the request's `tools` (schemas type the values); may be null
  ControlTokenIds ids;
  ToolParserLimits limits;
  std::function<std::string()> make_tool_call_id;  // default: "chatcmpl-tool-" + 32 random hex
};

struct ToolCallDelta {
  int index = 0;
  bool header = false;  // first delta of the call: carries id, type "function" and name
  std::string id, name;
  std::string arguments;  // fragment ("" in a header with nothing else yet)
};

// What one feed() produced. Empty deltas are not sent (vLLM skips them too).
struct ParserDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

struct ParsedToolCall {
  std::string id, name, arguments;  // arguments: the JSON object text, as vLLM's json.dumps writes it
};

struct ParsedMessage {
  std::optional<std::string> reasoning;  // null when empty, or include_reasoning=false
  std::optional<std::string> content;    // null when empty
  std::vector<ParsedToolCall> tool_calls;
  std::string finish_reason;  // engine's reason, or "tool_calls" when calls were parsed
  std::string error;          // non-empty if a limit cut the output (the message is still valid)
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions opts);

  // One engine step: the new token ids and the text they decoded to. Control tokens among the ids
  // are located in the text (in order) and handled as tokens; all other text is ordinary. (If
  // ordinary tokens of the same step spell a tag too, the first occurrence is taken; feed one token
  // at a time when steps carry several tokens and that matters.)
  ParserDelta feed(std::span<const int32_t> token_ids, std::string_view text);
  ParserDelta feed_text(std::string_view text);  // ordinary tokens only
  ParserDelta feed_control(ControlToken t);
  // Without token ids (CLI, tests): the four tag strings in the text count as control tokens, as
  // the tokenizer would have produced them. A tag split across calls is held until complete.
  ParserDelta feed_tagged_text(std::string_view text);
  // End of generation with the engine's finish reason ("stop", "length", ...). Flushes everything.
  ParserDelta finish(std::string_view finish_reason);

  const ParsedMessage& message() const { return msg_; }
  bool finished() const { return finished_; }

 private:
  void route(const ReasoningSplit& split, ParserDelta& d);
  void take_tool_events(ParserDelta& d);
  ParserDelta feed_text_into(std::string_view text, ParserDelta d);

  OutputParserOptions opts_;
  ReasoningSplitter splitter_;
  std::optional<ToolCallParser> tools_;
  std::vector<ToolEvent> events_;
  std::string utf8_hold_;  // an incomplete UTF-8 sequence at the end of the last text
  std::string tag_hold_;   // feed_tagged_text: a possible partial tag at the end
  std::string reasoning_, content_;
  ParsedMessage msg_;
  bool finished_ = false;
};

// Replaces invalid UTF-8 with U+FFFD; an incomplete sequence at the end is kept in `hold` (and
// replaced when `final`).
std::string sanitize_utf8(std::string& hold, std::string_view in, bool final);

// Splits raw model output into text and control-token pieces by the tag strings (what tokenizing
// it would give for the four control tokens).
struct OutputPiece {
  std::string text;
  std::optional<ControlToken> control;
};
std::vector<OutputPiece> split_tagged_text(std::string_view text);

std::string make_tool_call_id();  // "chatcmpl-tool-" + 32 random hex, as vLLM

// vLLM's prompt check, for OutputParserOptions::enable_thinking: scanning the prompt ids backwards,
// a `</think>` met before any `<think>` means the thought is already closed (Qwen3.5 with
// enable_thinking=false ends in `<think>\n\n</think>\n\n`); a `<think>` means generation starts
// inside it. nullopt when the prompt has neither (then use the request's enable_thinking).
std::optional<bool> prompt_leaves_thought_open(std::span<const int32_t> prompt_ids,
                                               const ControlTokenIds& ids = {});

// OpenAI JSON shapes. reasoning_field: "reasoning", "reasoning_content" or "both".
nlohmann::json delta_to_json(const ParserDelta& d, std::string_view reasoning_field = "reasoning");
nlohmann::json message_to_json(const ParsedMessage& m, bool reasoning_parser,
                               std::string_view reasoning_field = "reasoning");

}  // namespace ds::text
