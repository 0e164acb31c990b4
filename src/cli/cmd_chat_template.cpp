// `deltaserve chat-template MODEL`: reads an OpenAI chat-completions request body (JSON) on stdin
// and prints the exact prompt text vLLM would build for it. --jsonl renders one request per input
// line and prints one JSON object per line ({"prompt": ...} or {"error": ...}), so tests spawn one
// process for many conversations. --raw passes the input object to the template as its variables.
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/model/resolve.h"
#include "deltaserve/text/chat.h"

namespace {

using ojson = nlohmann::ordered_json;

void usage() {
  std::fprintf(stderr,
               "usage: deltaserve chat-template MODEL [flags] < request.json\n"
               "  MODEL                           model dir or HF repo id in the local cache ('-' for none)\n"
               "  --chat-template PATH|TEXT       template file or inline template (default: the model's)\n"
               "  --default-chat-template-kwargs JSON   kwargs merged under the request's chat_template_kwargs\n"
               "  --chat-template-content-format auto|string|openai\n"
               "  --trust-request-chat-template   allow a request's own 'chat_template'\n"
               "  --revision REV                  HF cache revision (default main)\n"
               "  --jsonl                         one request per line in, one JSON result per line out\n"
               "  --raw                           input is {\"template\": T, \"variables\": {...}} (engine only)\n");
}

std::string error_code_name(ds::ErrorCode c) {
  switch (c) {
    case ds::ErrorCode::kInvalidArgument: return "invalid_argument";
    case ds::ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ds::ErrorCode::kUnsupported: return "unsupported";
    case ds::ErrorCode::kNotFound: return "not_found";
    default: return "error";
  }
}

struct Renderer {
  const ds::text::ChatTemplate* chat = nullptr;  // null in --raw mode without a template
  bool raw = false;
  ds::Result<std::string> operator()(const ojson& in) const {
    if (!raw) {
      if (!chat) return ds::invalid_argument("no chat template (pass MODEL or --chat-template)");
      return chat->render(in);
    }
    // --raw: {"template": optional text (default: the loaded template), "variables": {...}}
    if (!in.is_object() || !in.contains("variables")) return ds::invalid_argument("--raw input needs 'variables'");
    std::string source;
    if (in.contains("template") && in["template"].is_string()) source = in["template"].get<std::string>();
    else if (chat) source = chat->options().chat_template;
    else return ds::invalid_argument("--raw input needs 'template' (or pass --chat-template)");
    auto t = ds::text::JinjaTemplate::compile(source);
    if (!t) return t.status();
    return t->render(in["variables"]);
  }
};

int run(const std::vector<std::string>& args) {
  std::string model, template_flag, kwargs_json, format = "auto", revision = "main";
  bool jsonl = false, raw = false, trust = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& dst) -> bool {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "chat-template: %s needs a value\n", a.c_str());
        return false;
      }
      dst = args[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (a == "--chat-template") {
      if (!value(template_flag)) return 2;
    } else if (a == "--default-chat-template-kwargs") {
      if (!value(kwargs_json)) return 2;
    } else if (a == "--chat-template-content-format") {
      if (!value(format)) return 2;
    } else if (a == "--revision") {
      if (!value(revision)) return 2;
    } else if (a == "--jsonl") {
      jsonl = true;
    } else if (a == "--raw") {
      raw = true;
    } else if (a == "--trust-request-chat-template") {
      trust = true;
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      std::fprintf(stderr, "chat-template: unknown flag %s\n", a.c_str());
      usage();
      return 2;
    } else if (model.empty()) {
      model = a;
    } else {
      usage();
      return 2;
    }
  }
  if (model.empty()) {
    usage();
    return 2;
  }
  std::string dir;
  if (model != "-") {
    auto resolved = ds::model::resolve_model_dir(model, revision);
    if (!resolved) {
      std::fprintf(stderr, "chat-template: %s\n", resolved.status().message().c_str());
      return 1;
    }
    dir = *resolved;
  }
  ds::text::ChatTemplateOptions opts;
  bool have_template = !dir.empty() || !template_flag.empty();
  if (have_template) {
    auto loaded = ds::text::load_chat_template_options(dir.empty() ? "/nonexistent" : dir, template_flag);
    if (!loaded) {
      std::fprintf(stderr, "chat-template: %s\n", loaded.status().message().c_str());
      return 1;
    }
    opts = std::move(*loaded);
  }
  if (!kwargs_json.empty()) {
    auto kw = ds::text::parse_chat_template_kwargs(kwargs_json);
    if (!kw) {
      std::fprintf(stderr, "chat-template: %s\n", kw.status().message().c_str());
      return 2;
    }
    opts.default_kwargs = std::move(*kw);
  }
  if (format == "string") opts.content_format = ds::text::ChatContentFormat::kString;
  else if (format == "openai") opts.content_format = ds::text::ChatContentFormat::kOpenAI;
  else if (format != "auto") {
    std::fprintf(stderr, "chat-template: --chat-template-content-format must be auto, string or openai\n");
    return 2;
  }
  opts.trust_request_chat_template = trust;
  std::optional<ds::text::ChatTemplate> chat;
  if (have_template) {
    auto created = ds::text::ChatTemplate::create(opts);
    if (!created) {
      std::fprintf(stderr, "chat-template: %s\n", created.status().message().c_str());
      return 1;
    }
    chat = std::move(*created);
  } else if (!raw) {
    std::fprintf(stderr, "chat-template: no template: pass a MODEL dir or --chat-template\n");
    return 2;
  }
  Renderer render{chat ? &*chat : nullptr, raw};

  if (!jsonl) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    ojson req = ojson::parse(ss.str(), nullptr, false);
    if (req.is_discarded()) {
      std::fprintf(stderr, "chat-template: stdin is not valid JSON\n");
      return 1;
    }
    auto out = render(req);
    if (!out) {
      std::fprintf(stderr, "chat-template: %s\n", out.status().message().c_str());
      return 1;
    }
    std::fwrite(out->data(), 1, out->size(), stdout);
    return 0;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    ojson result = ojson::object();
    ojson req = ojson::parse(line, nullptr, false);
    if (req.is_discarded()) {
      result["error"] = "input line is not valid JSON";
      result["code"] = "invalid_argument";
    } else {
      auto out = render(req);
      if (out) {
        result["prompt"] = *out;
      } else {
        result["error"] = out.status().message();
        result["code"] = error_code_name(out.status().code());
      }
    }
    std::string text = result.dump(-1, ' ', false, ojson::error_handler_t::replace);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

DS_COMMAND(chat_template, "chat-template", "print the prompt a chat-completions request renders to", run);
