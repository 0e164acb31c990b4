// Chat request -> prompt text (private to src/server). Renders the OpenAI messages with the model's
// chat template; enforces --limit-mm-per-prompt. Also used by /tokenize's chat form.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "deltaserve/server/errors.h"
#include "deltaserve/server/server_config.h"

namespace ds {
namespace text {
class ChatTemplate;
}  // namespace text
namespace server {

struct ChatRenderInput {
  const text::ChatTemplate* tmpl = nullptr;  // the model's template; null: built-in ChatML
  const std::string* raw_body = nullptr;      // the request body (parsed in order for the template)
  const nlohmann::json* messages = nullptr;
  const nlohmann::json* tools = nullptr;  // may be null
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  nlohmann::json chat_template_kwargs = nlohmann::json::object();
};

// Returns the prompt, or an ApiError (bad message shape, too many images, unsupported content).
std::optional<ApiError> render_chat(const ChatRenderInput& in, const ServerConfig& cfg, std::string* prompt);

// False when the prompt already ended the thought (its last `</think>` follows its last `<think>`).
bool prompt_starts_in_reasoning(const std::string& prompt);

}  // namespace server
}  // namespace ds
