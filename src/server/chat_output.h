// Per-choice output processing for chat (private to src/server): splits generated text into
// reasoning and content for --reasoning-parser, and (when wired) tool calls. Streaming and
// non-streaming both go through it, so the streamed deltas always add up to the final message.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ds::server {

struct ChatDelta {
  std::string reasoning;
  std::string content;
  nlohmann::json tool_calls = nlohmann::json::array();  // OpenAI delta tool_calls entries
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

struct ChatOutputOptions {
  bool reasoning_parser = false;
  bool start_in_reasoning = false;  // prompt ends inside <think>
  bool include_reasoning = true;
};

// Interim text-level qwen3 reasoning split (`<think>` dropped, text before `</think>` is reasoning).
// To be replaced by text::OutputParser (token-level, with tool calls) once it is in the tree.
class ChatOutput {
 public:
  explicit ChatOutput(ChatOutputOptions opts);
  ChatDelta feed(const std::string& text);
  ChatDelta finish();

  std::optional<std::string> reasoning() const;  // null when empty or not requested
  std::optional<std::string> content() const;    // null when empty
  const nlohmann::json& tool_calls() const { return tool_calls_; }

 private:
  void route(std::string text, ChatDelta* d);
  ChatOutputOptions opts_;
  bool in_reasoning_;
  std::string hold_;  // a possible partial tag
  std::string reasoning_, content_;
  nlohmann::json tool_calls_ = nlohmann::json::array();
};

}  // namespace ds::server
