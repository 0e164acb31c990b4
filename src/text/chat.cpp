// Chat assembly (text/chat.h): request -> conversation as vLLM's parse_chat_messages builds it,
// -> template variables as transformers' apply_chat_template passes them, -> rendered prompt.
#include "deltaserve/text/chat.h"

#include "deltaserve/text/jinja/jinja_value.h"

namespace ds::text {
namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kContinueTag = "CONTINUE_FINAL_MESSAGE_TAG ";  // transformers' marker

struct Media {
  int images = 0;
  int videos = 0;
};

Status bad(const std::string& m) { return invalid_argument(m); }

// One content part -> {"type":"text","text":...} / {"type":"image"} / {"type":"video"}, or a
// skipped part (text with null text), or an error for types this model cannot take.
Result<ojson> parse_part(const ojson& part, size_t msg, size_t idx) {
  const std::string where = "messages[" + std::to_string(msg) + "].content[" + std::to_string(idx) + "]";
  if (part.is_string()) return ojson{{"type", "text"}, {"text", part}};
  if (!part.is_object()) return bad(where + ": a content part must be a string or an object");
  std::string type;
  auto t = part.find("type");
  bool has_type = t != part.end() && !t->is_null();
  if (has_type) {
    if (!t->is_string()) return bad("Invalid 'type' field in multimodal part.");
    type = t->get<std::string>();
  } else {
    // vLLM accepts direct media fields without a type.
    for (const char* k : {"image_url", "video_url", "audio_url", "input_audio", "image_embeds", "audio_embeds",
                          "image_pil", "prompt_embeds", "tool_reference"})
      if (part.contains(k)) {
        type = k;
        break;
      }
    if (type.empty()) return bad("Missing 'type' field in multimodal part.");
  }
  auto text_of = [&](const char* key) -> Result<ojson> {
    auto it = part.find(key);
    if (it == part.end() || it->is_null()) return ojson();  // skipped, as vLLM skips empty text parts
    if (!it->is_string()) return bad(where + "." + key + " must be a string");
    return ojson{{"type", "text"}, {"text", *it}};
  };
  if (type == "text" || type == "input_text" || type == "output_text") return text_of("text");
  if (type == "refusal") return text_of("refusal");
  if (type == "thinking") return text_of("thinking");
  auto url_of = [&](const char* key) -> Status {
    auto it = part.find(key);
    if (it == part.end()) return bad(where + ": missing '" + key + "'");
    if (has_type && !(it->is_object() && it->contains("url") && (*it)["url"].is_string()))
      return bad(where + "." + key + ": expected an object with a string 'url'");
    return Status::ok();
  };
  if (type == "image_url" || type == "input_image") {
    if (type == "image_url") DS_RETURN_IF_ERROR(url_of("image_url"));
    return ojson{{"type", "image"}};
  }
  if (type == "video_url") {
    DS_RETURN_IF_ERROR(url_of("video_url"));
    return ojson{{"type", "video"}};
  }
  if (type == "audio_url" || type == "input_audio" || type == "audio_embeds")
    return unsupported("audio input is not supported by this model (content part type '" + type + "')");
  if (type == "image_embeds" || type == "prompt_embeds" || type == "image_pil" || type == "tool_reference")
    return unsupported("content part type '" + type + "' is not supported by deltaserve");
  return bad("Unsupported chat content part type: '" + type +
             "'. Supported types: image_url, input_image, input_text, output_text, refusal, text, thinking, "
             "video_url.");
}

// vLLM's _get_full_multimodal_text_prompt for the "string" content format.
Result<std::string> join_string_content(const std::vector<std::string>& texts, int images, int videos,
                                        const ChatTemplateOptions& o) {
  std::string text;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (i) text += "\n";
    text += texts[i];
  }
  std::vector<std::string> missing;
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (size_t p = text.find(needle); !needle.empty() && p != std::string::npos; p = text.find(needle, p + needle.size()))
      ++n;
    return n;
  };
  std::pair<const std::string*, int> kinds[] = {{&o.image_placeholder, images}, {&o.video_placeholder, videos}};
  for (auto& [ph, n] : kinds) {
    if (n == 0) continue;
    int left = n - count(*ph);
    if (left < 0)
      return bad("Found more '" + *ph + "' placeholders in input prompt than actual multimodal data items.");
    for (int i = 0; i < left; ++i) missing.push_back(*ph);
  }
  if (missing.empty()) return text;
  std::string out;
  for (size_t i = 0; i < missing.size(); ++i) {
    if (i) out += "\n";
    out += missing[i];
  }
  if (!text.empty()) out += "\n" + text;
  return out;
}

Result<ojson> parse_message(const ojson& m, size_t i, bool openai, const ChatTemplateOptions& o) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) return bad(where + " must be an object");
  auto role_it = m.find("role");
  if (role_it == m.end() || !role_it->is_string()) return bad(where + ".role is required and must be a string");
  const std::string role = role_it->get<std::string>();

  ojson parts = ojson::array();
  auto c = m.find("content");
  if (c == m.end() || c->is_null()) {
  } else if (c->is_string()) {
    parts.push_back({{"type", "text"}, {"text", *c}});
  } else if (c->is_array()) {
    for (size_t k = 0; k < c->size(); ++k) {
      DS_ASSIGN_OR_RETURN(ojson p, parse_part((*c)[k], i, k));
      if (!p.is_null()) parts.push_back(std::move(p));
    }
  } else {
    return bad(where + ".content must be a string, an array of content parts, or null");
  }

  ojson out = ojson::object();
  out["role"] = role;
  if (openai) {
    out["content"] = parts;
  } else {
    std::vector<std::string> texts;
    int images = 0, videos = 0;
    for (const auto& p : parts) {
      const std::string& type = p["type"].get_ref<const std::string&>();
      if (type == "text") texts.push_back(p["text"].get<std::string>());
      else if (type == "image") ++images;
      else ++videos;
    }
    DS_ASSIGN_OR_RETURN(std::string joined, join_string_content(texts, images, videos, o));
    out["content"] = joined;
  }

  if (role == "assistant") {
    auto tc = m.find("tool_calls");
    if (tc != m.end() && !tc->is_null()) {
      if (!tc->is_array()) return bad(where + ".tool_calls must be an array");
      out["tool_calls"] = *tc;
    }
    // vLLM reads `reasoning`; older clients send `reasoning_content` (dropped by vLLM, vllm#38488).
    // Both are accepted here and exposed under both names.
    ojson reasoning;
    for (const char* k : {"reasoning", "reasoning_content"}) {
      auto r = m.find(k);
      if (r != m.end() && !r->is_null()) {
        reasoning = *r;
        break;
      }
    }
    if (!reasoning.is_null()) {
      out["reasoning"] = reasoning;
      out["reasoning_content"] = reasoning;
    }
  } else if (role == "tool") {
    auto id = m.find("tool_call_id");
    if (id != m.end()) out["tool_call_id"] = *id;
    if (openai) {  // text-only tool results become one string, as vLLM normalises them
      bool all_text = true;
      std::string joined;
      for (size_t k = 0; k < parts.size(); ++k) {
        if (parts[k]["type"] != "text") all_text = false;
        else joined += (k ? "\n" : "") + parts[k]["text"].get<std::string>();
      }
      if (all_text) out["content"] = joined;
    }
  }
  auto name = m.find("name");
  if (name != m.end() && name->is_string()) out["name"] = *name;
  return out;
}

// vLLM's _postprocess_messages: tool-call arguments arrive as JSON strings and are decoded to
// objects (invalid JSON becomes {}); an empty tool_calls list is dropped.
Status decode_tool_calls(ojson& conv) {
  for (size_t i = 0; i < conv.size(); ++i) {
    ojson& m = conv[i];
    if (m["role"] != "assistant" || !m.contains("tool_calls")) continue;
    ojson& calls = m["tool_calls"];
    if (calls.empty()) {
      m.erase("tool_calls");
      continue;
    }
    for (size_t k = 0; k < calls.size(); ++k) {
      ojson& call = calls[k];
      const std::string where = "messages[" + std::to_string(i) + "].tool_calls[" + std::to_string(k) + "]";
      if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
        return bad(where + ".function is required and must be an object");
      ojson& fn = call["function"];
      auto a = fn.find("arguments");
      if (a != fn.end() && a->is_string()) {
        ojson parsed = ojson::parse(a->get<std::string>(), nullptr, /*allow_exceptions=*/false);
        *a = parsed.is_discarded() ? ojson::object() : parsed;
      } else if (a == fn.end() || !(a->is_object() || a->is_array())) {
        fn["arguments"] = ojson::object();
      }
    }
  }
  return Status::ok();
}

// transformers' _alias_reasoning_fields: the first non-null of reasoning_content / thinking /
// reasoning is exposed as `thinking` (first key) and `reasoning_content`.
void alias_reasoning(ojson& conv) {
  for (auto& m : conv) {
    ojson r;
    for (const char* k : {"reasoning_content", "thinking", "reasoning"}) {
      auto it = m.find(k);
      if (it != m.end() && !it->is_null()) {
        r = *it;
        break;
      }
    }
    if (r.is_null()) continue;
    ojson out = ojson::object();
    out["thinking"] = r;
    for (auto& [k, v] : m.items())
      if (k != "thinking") out[k] = v;
    if (m.contains("thinking")) out["thinking"] = m["thinking"];
    out["reasoning_content"] = r;
    m = std::move(out);
  }
}

// pydantic's model_dump of ChatCompletionToolsParam: declared fields (with null defaults) first,
// then extra fields in client order.
Result<ojson> normalize_tools(const ojson& tools) {
  if (!tools.is_array()) return bad("'tools' must be an array");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return bad(where + " must be an object");
    if (t.contains("type") && t["type"] != "function") return bad(where + ".type must be 'function'");
    if (!t.contains("function") || !t["function"].is_object()) return bad(where + ".function is required");
    const ojson& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string()) return bad(where + ".function.name is required");
    if (f.contains("description") && !f["description"].is_null() && !f["description"].is_string())
      return bad(where + ".function.description must be a string");
    if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object())
      return bad(where + ".function.parameters must be an object");
    ojson fn = ojson::object();
    fn["name"] = f["name"];
    fn["description"] = f.value("description", ojson());
    fn["parameters"] = f.value("parameters", ojson());
    for (auto& [k, v] : f.items())
      if (k != "name" && k != "description" && k != "parameters") fn[k] = v;
    ojson tool = ojson::object();
    tool["type"] = "function";
    tool["function"] = std::move(fn);
    for (auto& [k, v] : t.items())
      if (k != "type" && k != "function") tool[k] = v;
    out.push_back(std::move(tool));
  }
  return out;
}

bool get_bool(const ojson& req, const char* key, bool dflt, Status& st) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) {
    st = bad(std::string("'") + key + "' must be a boolean");
    return dflt;
  }
  return it->get<bool>();
}

}  // namespace

Result<ChatTemplate> ChatTemplate::create(ChatTemplateOptions opts) {
  if (opts.chat_template.empty())
    return invalid_argument(
        "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat "
        "template if the tokenizer does not define one.");
  DS_ASSIGN_OR_RETURN(JinjaTemplate t, JinjaTemplate::compile(opts.chat_template));
  ChatTemplate ct;
  ct.format_ = opts.content_format;
  if (ct.format_ == ChatContentFormat::kAuto)
    ct.format_ = t.iterates_message_content() ? ChatContentFormat::kOpenAI : ChatContentFormat::kString;
  ct.tmpl_ = std::make_shared<const JinjaTemplate>(std::move(t));
  ct.opts_ = std::make_shared<const ChatTemplateOptions>(std::move(opts));
  return ct;
}

Result<ojson> ChatTemplate::template_vars(const ojson& req) const {
  if (!req.is_object()) return bad("the request body must be a JSON object");
  auto msgs = req.find("messages");
  if (msgs == req.end() || !msgs->is_array()) return bad("'messages' is required and must be an array");
  Status st;
  const bool add_gen = get_bool(req, "add_generation_prompt", true, st);
  const bool cont = get_bool(req, "continue_final_message", false, st);
  DS_RETURN_IF_ERROR(st);
  if (add_gen && cont)
    return bad("Cannot set both `continue_final_message` and `add_generation_prompt` to True.");

  ojson kwargs = opts_->default_kwargs.is_object() ? opts_->default_kwargs : ojson::object();
  if (auto k = req.find("chat_template_kwargs"); k != req.end() && !k->is_null()) {
    if (!k->is_object()) return bad("'chat_template_kwargs' must be an object");
    for (auto& [key, v] : k->items()) kwargs[key] = v;
  }
  for (const char* forbidden : {"chat_template", "tokenize"})
    if (kwargs.contains(forbidden))
      return bad(std::string("Found unexpected chat template kwargs from request: {'") + forbidden + "'}");

  const bool openai = format_ == ChatContentFormat::kOpenAI;
  ojson conv = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    DS_ASSIGN_OR_RETURN(ojson m, parse_message((*msgs)[i], i, openai, *opts_));
    conv.push_back(std::move(m));
  }
  DS_RETURN_IF_ERROR(decode_tool_calls(conv));
  alias_reasoning(conv);

  ojson tools;
  if (auto t = req.find("tools"); t != req.end() && !t->is_null()) {
    DS_ASSIGN_OR_RETURN(tools, normalize_tools(*t));
  }

  ojson vars = ojson::object();
  for (auto& [k, v] : opts_->special_tokens.items()) vars[k] = v;
  for (auto& [k, v] : kwargs.items()) vars[k] = v;
  vars["messages"] = std::move(conv);
  vars["tools"] = std::move(tools);
  vars["documents"] = req.contains("documents") ? req["documents"] : ojson();
  vars["add_generation_prompt"] = kwargs.contains("add_generation_prompt") ? kwargs["add_generation_prompt"] : ojson(add_gen);
  return vars;
}

Result<std::string> ChatTemplate::render(const ojson& req) const {
  if (req.is_object() && req.contains("chat_template") && !req["chat_template"].is_null() &&
      !opts_->trust_request_chat_template)
    return bad(
        "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with "
        "untrusted chat template.");
  DS_ASSIGN_OR_RETURN(ojson vars, template_vars(req));
  const JinjaTemplate* tmpl = tmpl_.get();
  JinjaTemplate request_tmpl;
  if (req.contains("chat_template") && req["chat_template"].is_string()) {
    DS_ASSIGN_OR_RETURN(request_tmpl, JinjaTemplate::compile(req["chat_template"].get<std::string>()));
    tmpl = &request_tmpl;
  }
  Status st;
  const bool cont = get_bool(req, "continue_final_message", false, st);
  std::string final_text;
  if (cont) {  // transformers' continue_final_message: tag the last text, render, cut at the tag
    ojson& conv = vars["messages"];
    if (conv.empty()) return bad("continue_final_message is set but the conversation is empty!");
    ojson& last = conv.back();
    if (!last.contains("content") || last["content"].is_null())
      return bad("continue_final_message is set but the final message has no \"content\" to continue!");
    if (tmpl->source().find("content") == std::string::npos)
      return bad("continue_final_message is set to \"content\" but this is not an accepted field in the chat_template");
    ojson& content = last["content"];
    if (content.is_array()) {
      bool found = false;
      for (size_t k = content.size(); k-- > 0;) {
        if (content[k].is_object() && content[k].contains("text")) {
          final_text = content[k]["text"].get<std::string>();
          content[k]["text"] = final_text + kContinueTag;
          found = true;
          break;
        }
      }
      if (!found) return bad("continue_final_message is set but we could not find any text to continue in the final message!");
    } else if (content.is_string()) {
      final_text = content.get<std::string>();
      content = final_text + kContinueTag;
    } else {
      return bad("continue_final_message: the final message's content must be text");
    }
  }
  DS_ASSIGN_OR_RETURN(std::string out, tmpl->render(vars, opts_->limits));
  if (cont) {
    const std::string tag_stripped = "CONTINUE_FINAL_MESSAGE_TAG";
    const std::string final_stripped = jinja::py_strip(final_text, true, true, nullptr);
    size_t tag = out.rfind(tag_stripped);
    if (out.find(final_stripped) == std::string::npos || tag == std::string::npos)
      return bad(
          "continue_final_message is set but the final message does not appear in the chat after applying the chat "
          "template! This can happen if the chat template deletes portions of the final message. Please verify the "
          "chat template and final message in your chat to ensure they are compatible.");
    if (out.compare(tag, std::string(kContinueTag).size(), kContinueTag) == 0) out.resize(tag);
    else out = jinja::py_strip(out.substr(0, tag), false, true, nullptr);
  }
  return out;
}

Result<std::string> ChatTemplate::render_body(std::string_view json_body) const {
  ojson req = ojson::parse(json_body, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return bad("the request body is not valid JSON");
  return render(req);
}

Result<std::string> render_chat_prompt(const ojson& request, const ChatTemplateOptions& opts) {
  DS_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::create(opts));
  return t.render(request);
}

}  // namespace ds::text
