// Where the chat template and its special tokens come from (text/chat.h), as vLLM resolves them.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "deltaserve/text/chat.h"

namespace ds::text {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

bool read_file(const fs::path& p, std::string& out) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return false;
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

// tokenizer_config "chat_template": a string, or [{"name": ..., "template": ...}] named templates.
Result<std::string> pick_template(const ojson& ct, const fs::path& from) {
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array()) {
    for (const auto& e : ct)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
    return invalid_argument(from.string() + ": named chat templates without a 'default' one are not supported");
  }
  return invalid_argument(from.string() + ": 'chat_template' must be a string or a list of named templates");
}

std::string token_text(const ojson& t) {
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
  return {};
}

}  // namespace

Result<nlohmann::ordered_json> parse_chat_template_kwargs(const std::string& json_text) {
  ojson j = ojson::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return invalid_argument("--default-chat-template-kwargs must be a JSON object, got: " + json_text);
  return j;
}

Result<ChatTemplateOptions> load_chat_template_options(const std::string& model_dir,
                                                       const std::string& chat_template_flag) {
  ChatTemplateOptions o;
  const fs::path dir(model_dir);
  std::string text;

  ojson tok_cfg = ojson::object();
  if (read_file(dir / "tokenizer_config.json", text)) {
    tok_cfg = ojson::parse(text, nullptr, false);
    if (tok_cfg.is_discarded() || !tok_cfg.is_object())
      return corrupt((dir / "tokenizer_config.json").string() + " is not a JSON object");
  }

  // transformers' special_tokens_map: the named special tokens that are set, as strings, plus the
  // model-specific ones (image_token, vision_bos_token, ...).
  for (const char* k : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (!tok_cfg.contains(k)) continue;
    std::string t = token_text(tok_cfg[k]);
    if (!t.empty()) o.special_tokens[k] = t;
  }
  if (tok_cfg.contains("model_specific_special_tokens") && tok_cfg["model_specific_special_tokens"].is_object())
    for (auto& [k, v] : tok_cfg["model_specific_special_tokens"].items()) {
      std::string t = token_text(v);
      if (!t.empty()) o.special_tokens[k] = t;
    }

  if (!chat_template_flag.empty()) {
    if (read_file(chat_template_flag, text)) {
      o.chat_template = text;
    } else if (chat_template_flag.find_first_of("{}\n") != std::string::npos) {
      o.chat_template = chat_template_flag;  // inline template text
    } else {
      return invalid_argument("The supplied chat template (" + chat_template_flag +
                              ") looks like a file path, but it failed to be opened.");
    }
    return o;
  }
  if (read_file(dir / "chat_template.jinja", text)) {
    o.chat_template = text;
    return o;
  }
  if (tok_cfg.contains("chat_template") && !tok_cfg["chat_template"].is_null()) {
    DS_ASSIGN_OR_RETURN(o.chat_template, pick_template(tok_cfg["chat_template"], dir / "tokenizer_config.json"));
    return o;
  }
  if (read_file(dir / "chat_template.json", text)) {
    ojson j = ojson::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("chat_template"))
      return corrupt((dir / "chat_template.json").string() + " has no 'chat_template'");
    DS_ASSIGN_OR_RETURN(o.chat_template, pick_template(j["chat_template"], dir / "chat_template.json"));
    return o;
  }
  return not_found("no chat template found in " + model_dir +
                   " (looked for chat_template.jinja, tokenizer_config.json 'chat_template', chat_template.json); "
                   "pass --chat-template");
}

}  // namespace ds::text
