// `deltaserve tokenize MODEL`: text on stdin -> token ids (JSON array) with the model's
// tokenizer.json, the way vLLM encodes a prompt (added tokens recognised, no BOS). --decode does
// the reverse; --batch reads JSON lines (used by tests/py/test_tokenizer_diff.py).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/model/resolve.h"
#include "deltaserve/text/chat.h"
#include "deltaserve/text/tokenizer/detokenizer.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "cli_tokenizer.h"

namespace {

using json = nlohmann::json;
using ds::text::Tokenizer;

constexpr const char* kUsage =
    "usage: deltaserve tokenize [MODEL] [--tokenizer PATH] [--revision REV] [--decode]\n"
    "                           [--skip-special-tokens] [--split-special-tokens] [--batch]\n"
    "                           [--chat] [--chat-template PATH|TEXT]\n"
    "\n"
    "MODEL is a local directory or a Hugging Face repo id in the local HF cache, with its\n"
    "tokenizer.json (without one: the Qwen3.5 tokenizer tools/setup.sh builds, build/tokenizers/qwen35).\n"
    "--tokenizer PATH (a tokenizer.json or a directory) overrides it, as in vLLM.\n"
    "Reads stdin: text (prints a JSON array of ids), or with --decode a JSON array of ids\n"
    "(prints the text and a newline).\n"
    "--batch: one JSON object per input line, one per output line:\n"
    "  {\"text\": S} or {\"text_b64\": B64}          -> {\"ids\": [...]}\n"
    "  {\"ids\": [...], \"skip_special_tokens\": b}   -> {\"text\": S}\n"
    "  {\"stream\": [...], \"skip_special_tokens\": b} -> {\"pieces\": [...]} (incremental detokenizer)\n"
    "  {\"pretokenize\": S}                        -> {\"pieces\": [...]}\n"
    "--chat: stdin is a chat-completions request (JSON); it is rendered with the model's chat\n"
    "  template (or --chat-template PATH|TEXT) as vLLM does, then tokenized (no special tokens\n"
    "  added). With --batch, {\"chat\": REQUEST} lines do the same.\n";

std::string b64_decode(const std::string& in, bool* ok) {
  static const std::string kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  *ok = true;
  for (char c : in) {
    if (c == '=') break;
    const size_t p = kAlpha.find(c);
    if (p == std::string::npos) {
      *ok = false;
      return {};
    }
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<int32_t> read_ids(const json& j, std::string* err) {
  std::vector<int32_t> ids;
  if (!j.is_array()) {
    *err = "expected a JSON array of token ids";
    return ids;
  }
  for (const auto& v : j) {
    if (!v.is_number_integer()) {
      *err = "token ids must be integers";
      return {};
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

json batch_one(const Tokenizer& tok, const json& req, bool default_skip, const ds::text::ChatTemplate* chat) {
  if (!req.is_object()) return {{"error", "each line must be a JSON object"}};
  const bool skip = req.contains("skip_special_tokens") && req["skip_special_tokens"].is_boolean()
                        ? req["skip_special_tokens"].get<bool>()
                        : default_skip;
  ds::text::EncodeOptions opts;
  if (req.contains("split_special_tokens") && req["split_special_tokens"].is_boolean()) {
    opts.split_special_tokens = req["split_special_tokens"].get<bool>();
  }
  if (req.contains("text") && req["text"].is_string()) {
    return {{"ids", tok.encode(req["text"].get<std::string>(), opts)}};
  }
  if (req.contains("text_b64") && req["text_b64"].is_string()) {
    bool ok;
    const std::string bytes = b64_decode(req["text_b64"].get<std::string>(), &ok);
    if (!ok) return {{"error", "text_b64 is not base64"}};
    return {{"ids", tok.encode(bytes, opts)}};
  }
  if (req.contains("chat")) {
    if (!chat) return {{"error", "no chat template (pass --chat)"}};
    auto prompt = chat->render(nlohmann::ordered_json::parse(req["chat"].dump()));
    if (!prompt) return {{"error", prompt.status().message()}};
    return {{"prompt", *prompt}, {"ids", tok.encode(*prompt, opts)}};
  }
  if (req.contains("pretokenize") && req["pretokenize"].is_string()) {
    return {{"pieces", tok.pre_tokenize(req["pretokenize"].get<std::string>())}};
  }
  std::string err;
  if (req.contains("ids")) {
    const auto ids = read_ids(req["ids"], &err);
    if (!err.empty()) return {{"error", err}};
    return {{"text", tok.decode(ids, skip)}};
  }
  if (req.contains("stream")) {
    const auto ids = read_ids(req["stream"], &err);
    if (!err.empty()) return {{"error", err}};
    ds::text::IncrementalDetokenizer detok(tok, {.skip_special_tokens = skip});
    json pieces = json::array();
    for (int32_t id : ids) pieces.push_back(detok.step(id));
    pieces.push_back(detok.finish());
    return {{"pieces", pieces}};
  }
  return {{"error", "expected one of text, text_b64, ids, stream, pretokenize"}};
}

int run_tokenize(const std::vector<std::string>& args) {
  std::string model, tokenizer_path, revision = "main", chat_template_flag;
  bool decode = false, batch = false, skip = false, split_special = false, chat_mode = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "deltaserve tokenize: %s needs a value\n", a.c_str());
        return false;
      }
      *out = args[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--tokenizer") {
      if (!value(&tokenizer_path)) return 2;
    } else if (a == "--revision" || a == "--tokenizer-revision") {
      if (!value(&revision)) return 2;
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--batch") {
      batch = true;
    } else if (a == "--skip-special-tokens") {
      skip = true;
    } else if (a == "--split-special-tokens") {
      split_special = true;
    } else if (a == "--chat") {
      chat_mode = true;
    } else if (a == "--chat-template") {
      if (!value(&chat_template_flag)) return 2;
      chat_mode = true;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "deltaserve tokenize: unknown flag %s\n%s", a.c_str(), kUsage);
      return 2;
    } else if (model.empty()) {
      model = a;
    } else {
      std::fprintf(stderr, "deltaserve tokenize: unexpected argument %s\n", a.c_str());
      return 2;
    }
  }
  std::string model_dir;
  if (!model.empty()) {
    auto dir = ds::model::resolve_model_dir(model, revision);
    if (!dir) {
      std::fprintf(stderr, "deltaserve tokenize: %s\n", dir.status().message().c_str());
      return 1;
    }
    model_dir = *dir;
  }
  if (tokenizer_path.empty() && model_dir.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::optional<ds::text::ChatTemplate> chat;
  if (chat_mode) {
    // The template comes from the model directory (or the tokenizer's, as vLLM's --tokenizer).
    std::string dir = model_dir;
    if (dir.empty()) {
      std::error_code ec;
      dir = std::filesystem::is_directory(tokenizer_path, ec)
                ? tokenizer_path
                : std::filesystem::path(tokenizer_path).parent_path().string();
    }
    auto opts = ds::text::load_chat_template_options(dir, chat_template_flag);
    if (!opts) {
      std::fprintf(stderr, "deltaserve tokenize: %s\n", opts.status().message().c_str());
      return 1;
    }
    auto created = ds::text::ChatTemplate::create(std::move(*opts));
    if (!created) {
      std::fprintf(stderr, "deltaserve tokenize: %s\n", created.status().message().c_str());
      return 1;
    }
    chat = std::move(*created);
  }
  auto tok = ds::cli::load_cli_tokenizer(tokenizer_path, model_dir);
  if (!tok) {
    std::fprintf(stderr, "deltaserve tokenize: %s\n", tok.status().message().c_str());
    return 1;
  }
  if (batch) {
    std::string line;
    while (std::getline(std::cin, line)) {
      json req = json::parse(line, nullptr, false);
      json resp = req.is_discarded() ? json{{"error", "line is not JSON"}}
                                     : batch_one(*tok, req, skip, chat ? &*chat : nullptr);
      std::cout << dump(resp) << '\n';
      std::cout.flush();
    }
    return 0;
  }
  std::stringstream ss;
  ss << std::cin.rdbuf();
  if (decode) {
    json j = json::parse(ss.str(), nullptr, false);
    std::string err;
    const auto ids = j.is_discarded() ? std::vector<int32_t>{} : read_ids(j, &err);
    if (j.is_discarded() || !err.empty()) {
      std::fprintf(stderr, "deltaserve tokenize --decode: %s\n",
                   j.is_discarded() ? "stdin is not JSON" : err.c_str());
      return 1;
    }
    std::cout << tok->decode(ids, skip) << '\n';  // --batch gives the exact text, in JSON
    return 0;
  }
  ds::text::EncodeOptions opts;
  opts.split_special_tokens = split_special;
  std::string text = ss.str();
  if (chat) {
    auto req = nlohmann::ordered_json::parse(text, nullptr, false);
    if (req.is_discarded()) {
      std::fputs("deltaserve tokenize --chat: stdin is not JSON\n", stderr);
      return 1;
    }
    auto prompt = chat->render(req);
    if (!prompt) {
      std::fprintf(stderr, "deltaserve tokenize --chat: %s\n", prompt.status().message().c_str());
      return 1;
    }
    text = *prompt;
  }
  std::cout << dump(tok->encode(text, opts)) << '\n';
  return 0;
}

}  // namespace

DS_COMMAND(tokenize, "tokenize", "text -> token ids (and --decode) with a model's tokenizer", run_tokenize);
