#include "chat_render.h"

#include "deltaserve/text/chat.h"

namespace ds::server {

using nlohmann::json;

namespace {

// Text of a message's content: a string, or the concatenated text parts of a list.
std::optional<ApiError> content_text(const json& content, int64_t* images, std::string* out) {
  if (content.is_null()) return std::nullopt;
  if (content.is_string()) {
    *out += content.get<std::string>();
    return std::nullopt;
  }
  if (!content.is_array()) return bad_request("message content must be a string or a list of parts", "messages");
  for (const auto& part : content) {
    if (!part.is_object()) return bad_request("message content parts must be objects", "messages");
    const std::string type = json_str(part, "type", "text");
    if (type == "text") {
      if (part.contains("text") && part["text"].is_string()) *out += part["text"].get<std::string>();
    } else if (type == "image_url" || type == "image" || type == "image_pil" || type == "image_embeds") {
      ++*images;
    } else {
      return bad_request("Unsupported content part type: " + type, "messages");
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> render_chat(const ChatRenderInput& in, const ServerConfig& cfg, std::string* prompt) {
  const json& msgs = *in.messages;
  int64_t images = 0;
  std::vector<std::string> texts;
  for (const auto& m : msgs) {
    std::string text;
    if (m.contains("content"))
      if (auto e = content_text(m["content"], &images, &text)) return e;
    texts.push_back(std::move(text));
  }
  auto lim = cfg.limit_mm_per_prompt.find("image");
  const int64_t max_images = lim == cfg.limit_mm_per_prompt.end() ? 999 : lim->second;
  if (images > max_images)
    return bad_request("At most " + std::to_string(max_images) + " image(s) may be provided in one prompt.");
  if (images > 0) return bad_request("Image inputs are not supported by this deltaserve build yet.");

  if (in.tmpl && in.raw_body) {
    nlohmann::ordered_json req = nlohmann::ordered_json::parse(*in.raw_body, nullptr, false);
    if (req.is_discarded()) return bad_request("JSON decode error: the request body is not valid JSON.");
    auto r = in.tmpl->render(req);
    if (!r) return bad_request(r.status().message());
    *prompt = std::move(*r);
    return std::nullopt;
  }
  // Fallback when the model ships no chat template: Qwen ChatML, as the Qwen3.5/3.6 templates
  // render plain text turns.
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string role = json_str(msgs[i], "role");
    const bool last = i + 1 == msgs.size();
    if (role == "tool") {
      out += "<|im_start|>user\n<tool_response>\n" + texts[i] + "\n</tool_response><|im_end|>\n";
      continue;
    }
    out += "<|im_start|>" + role + "\n" + texts[i];
    if (last && in.continue_final_message) break;
    out += "<|im_end|>\n";
  }
  if (in.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    const auto& k = in.chat_template_kwargs;
    const bool thinking = !(k.contains("enable_thinking") && k["enable_thinking"].is_boolean() &&
                            !k["enable_thinking"].get<bool>());
    out += thinking ? "<think>\n" : "<think>\n\n</think>\n\n";
  }
  *prompt = std::move(out);
  return std::nullopt;
}

bool prompt_starts_in_reasoning(const std::string& prompt) {
  // vLLM: scanning back, a `</think>` met before any `<think>` means the thought already ended.
  const size_t open = prompt.rfind("<think>");
  const size_t close = prompt.rfind("</think>");
  return !(close != std::string::npos && (open == std::string::npos || close > open));
}

}  // namespace ds::server
