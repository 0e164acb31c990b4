// Per-choice output processing for chat (private to src/server): runs text::OutputParser (the
// token-level qwen3 reasoning + qwen3_coder/qwen3_xml tool-call state machine) over the engine's
// events. Streaming and non-streaming both go through it, so the streamed deltas always add up
// to the final message.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deltaserve/text/parsers/output_parser.h"

namespace ds::server {

struct ChatDelta {
  std::string reasoning;
  std::string content;
  nlohmann::json tool_calls = nlohmann::json::array();  // OpenAI delta tool_calls entries
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

struct ChatOutputOptions {
  bool reasoning_parser = false;
  bool start_in_reasoning = false;  // thinking on and the prompt left the model inside `<think>`
  bool include_reasoning = true;
  bool tool_parser = false;         // text::tool_parsing_enabled for this request
  bool parallel_tool_calls = true;
  bool by_token_ids = true;         // false: recognise the tags in text (when stop strings delay text)
  nlohmann::json tools;
  text::ControlTokenIds ids;
};

class ChatOutput {
 public:
  explicit ChatOutput(const ChatOutputOptions& opts);
  ChatDelta feed(const std::vector<int32_t>& ids, const std::string& text);
  ChatDelta finish(const std::string& engine_finish_reason);

  std::optional<std::string> reasoning() const;  // null when empty or not requested
  std::optional<std::string> content() const;    // null when empty
  nlohmann::json tool_calls() const;             // full calls, OpenAI message shape
  std::string finish_reason() const { return parser_.message().finish_reason; }  // after finish()

 private:
  ChatDelta convert(const text::ParserDelta& d) const;
  bool by_ids_;
  bool reasoning_on_;
  text::OutputParser parser_;
};

}  // namespace ds::server
