// Chat assembly: an OpenAI chat-completions request -> the exact prompt text `vllm serve` would
// feed the tokenizer. Mirrors vLLM's parse_chat_messages (content parts, tool-call argument
// decoding, reasoning fields, content-format detection) and transformers' apply_chat_template
// (special-token variables, reasoning aliases, continue_final_message), then renders the model's
// Jinja chat template with text/jinja.h. Owns finding the template (--chat-template, the model's
// chat_template.jinja or tokenizer_config.json) and the special tokens it sees.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "deltaserve/core/status.h"
#include "deltaserve/text/jinja/jinja.h"

namespace ds::text {

// vLLM's --chat-template-content-format.
enum class ChatContentFormat { kAuto, kString, kOpenAI };

struct ChatTemplateOptions {
  std::string chat_template;                                            // template text
  nlohmann::ordered_json default_kwargs = nlohmann::ordered_json::object();  // --default-chat-template-kwargs
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();  // bos_token, eos_token, ...
  ChatContentFormat content_format = ChatContentFormat::kAuto;
  bool trust_request_chat_template = false;  // --trust-request-chat-template
  // What the "string" content format puts in place of media (Qwen3-VL's get_placeholder_str).
  std::string image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>";
  std::string video_placeholder = "<|vision_start|><|video_pad|><|vision_end|>";
  JinjaLimits limits;
};

// Reads the template and special tokens for a model directory, as vLLM resolves them:
// `chat_template_flag` (--chat-template: a file path, or inline template text when it is not a
// readable file and contains one of "{}\n") wins; else the model dir's chat_template.jinja, else
// tokenizer_config.json's "chat_template" (a string, or named templates: "default"), else
// chat_template.json. Special tokens come from tokenizer_config.json.
Result<ChatTemplateOptions> load_chat_template_options(const std::string& model_dir,
                                                       const std::string& chat_template_flag = "");

// Parses --default-chat-template-kwargs (a JSON object).
Result<nlohmann::ordered_json> parse_chat_template_kwargs(const std::string& json_text);

// A compiled chat template; create once per server, render per request (thread-safe).
class ChatTemplate {
 public:
  static Result<ChatTemplate> create(ChatTemplateOptions opts);

  // `request` is the chat-completions body, parsed with nlohmann::ordered_json so that dict order
  // (tool schemas, arguments) is the client's, as in Python. Returns the prompt, or a Status with
  // vLLM's 400-style message (bad messages, template raise_exception, limits).
  Result<std::string> render(const nlohmann::ordered_json& request) const;

  // Same, from the raw request body (parsed here with ordered_json). Prefer this over passing a
  // nlohmann::json, whose sorted keys would reorder tool schemas in the prompt.
  Result<std::string> render_body(std::string_view json_body) const;

  // The template variables `render` would pass (for debugging and tests).
  Result<nlohmann::ordered_json> template_vars(const nlohmann::ordered_json& request) const;

  ChatContentFormat resolved_content_format() const { return format_; }
  const ChatTemplateOptions& options() const { return *opts_; }

 private:
  std::shared_ptr<const ChatTemplateOptions> opts_;
  std::shared_ptr<const JinjaTemplate> tmpl_;
  ChatContentFormat format_ = ChatContentFormat::kString;
};

// One-shot convenience: compile `opts.chat_template` and render `request`.
Result<std::string> render_chat_prompt(const nlohmann::ordered_json& request, const ChatTemplateOptions& opts);

}  // namespace ds::text
