// `deltaserve parse [MODEL]`: raw model output on stdin -> the OpenAI assistant message, through
// the same OutputParser the server runs per request (reasoning + tool-call parsing). With
// --stream-chunk-tokens K it also prints every streamed delta, K tokens per engine step.
//
// With MODEL (or --tokenizer) the text is tokenized with the model's tokenizer.json and decoded back
// incrementally, exactly as generated tokens reach the server. Without one (MODEL absent or "-"),
// the four tags <think> </think> <tool_call> </tool_call> count as control tokens (what the
// tokenizer would make of them) and every other UTF-8 character counts as one token.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/parse.h"
#include "deltaserve/model/resolve.h"
#include "deltaserve/text/tokenizer/detokenizer.h"
#include "deltaserve/text/parsers/output_parser.h"
#include "deltaserve/text/tokenizer/tokenizer.h"
#include "deltaserve/text/parsers/tool_choice.h"
#include "cli_tokenizer.h"

namespace {

using json = nlohmann::json;
namespace dt = ds::text;

constexpr const char* kUsage =
    "usage: deltaserve parse [MODEL | -] [--tokenizer PATH] [--reasoning-parser qwen3]\n"
    "                        [--tool-call-parser qwen3_coder|qwen3_xml] [--tools FILE] [--request FILE]\n"
    "                        [--stream-chunk-tokens K] [--enable-thinking true|false]\n"
    "                        [--include-reasoning true|false] [--parallel-tool-calls true|false]\n"
    "                        [--finish-reason stop|length] [--reasoning-field "
    "reasoning|reasoning_content|both]\n"
    "\n"
    "Reads raw model output (the generated text, tags included) on stdin and prints the OpenAI\n"
    "choice {\"index\":0,\"message\":{...},\"finish_reason\":...} as one JSON line. With\n"
    "--stream-chunk-tokens K it first prints each streamed chunk {\"index\":0,\"delta\":{...}} as a\n"
    "JSON line, feeding K tokens per step.\n"
    "MODEL: a local directory or HF repo id in the local cache with tokenizer.json; without it\n"
    "(absent or \"-\") the tags are control tokens and each other character is a token.\n"
    "--tools FILE: a JSON tools array (schemas type the values). --request FILE: a chat request;\n"
    "its tools, tool_choice, parallel_tool_calls, include_reasoning and\n"
    "chat_template_kwargs.enable_thinking apply as in the server (auto tool choice assumed on).\n";

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<bool> parse_bool(const std::string& s) {
  if (s == "true" || s == "True" || s == "1") return true;
  if (s == "false" || s == "False" || s == "0") return false;
  return std::nullopt;
}

ds::Result<json> read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return ds::not_found("cannot open " + path);
  json j = json::parse(f, nullptr, false);
  if (j.is_discarded()) return ds::invalid_argument(path + " is not valid JSON");
  return j;
}

// One "token" of input: ids (one id, or none for text mode) plus its text.
struct Token {
  std::vector<int32_t> ids;
  std::string text;
};

int run(const std::vector<std::string>& args) {
  std::string model, tokenizer_path, reasoning_parser, tool_parser, tools_file, request_file;
  std::string finish_reason = "stop", reasoning_field = "reasoning";
  std::optional<bool> enable_thinking, include_reasoning, parallel;
  long chunk = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    auto boolean = [&](std::optional<bool>& out) {
      std::string v;
      if (!value(v)) return false;
      out = parse_bool(v);
      return out.has_value();
    };
    bool ok = true;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--tokenizer") {
      ok = value(tokenizer_path);
    } else if (a == "--reasoning-parser") {
      ok = value(reasoning_parser);
    } else if (a == "--tool-call-parser") {
      ok = value(tool_parser);
    } else if (a == "--tools") {
      ok = value(tools_file);
    } else if (a == "--request") {
      ok = value(request_file);
    } else if (a == "--finish-reason") {
      ok = value(finish_reason);
    } else if (a == "--reasoning-field") {
      ok = value(reasoning_field) && (reasoning_field == "reasoning" ||
                                      reasoning_field == "reasoning_content" || reasoning_field == "both");
    } else if (a == "--stream-chunk-tokens") {
      std::string v;
      ok = value(v);
      if (ok && !ds::cli::set_flag("parse", ds::parse_int64(v, a, 1), &chunk)) return 2;
    } else if (a == "--enable-thinking") {
      ok = boolean(enable_thinking);
    } else if (a == "--include-reasoning") {
      ok = boolean(include_reasoning);
    } else if (a == "--parallel-tool-calls") {
      ok = boolean(parallel);
    } else if (!a.empty() && a[0] != '-' && model.empty()) {
      model = a;
    } else if (a == "-" && model.empty()) {
      model.assign(1, '-');
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "deltaserve parse: bad or incomplete argument '%s'\n\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!reasoning_parser.empty() && reasoning_parser != "qwen3") {
    std::fprintf(stderr, "deltaserve parse: unknown reasoning parser '%s' (supported: qwen3)\n",
                 reasoning_parser.c_str());
    return 2;
  }
  if (!tool_parser.empty() && !dt::is_known_tool_parser(tool_parser)) {
    std::fprintf(stderr, "deltaserve parse: invalid tool call parser '%s' (qwen3_coder, qwen3_xml)\n",
                 tool_parser.c_str());
    return 2;
  }

  dt::OutputParserOptions o;
  o.reasoning_parser = !reasoning_parser.empty();
  o.tool_parser = !tool_parser.empty();
  if (!request_file.empty()) {
    auto req = read_json_file(request_file);
    if (!req.is_ok())
      return std::fprintf(stderr, "deltaserve parse: %s\n", req.status().message().c_str()), 1;
    const json& r = *req;
    const ds::Status st =
        dt::validate_tool_choice(r, true, tool_parser.empty() ? "qwen3_coder" : tool_parser);
    if (!st.is_ok())
      std::fprintf(stderr, "deltaserve parse: the server would reject this request: %s\n",
                   st.message().c_str());
    o.tool_parser = o.tool_parser && dt::tool_parsing_enabled(r, true, tool_parser);
    if (r.contains("tools")) o.tools = r["tools"];
    if (r.contains("parallel_tool_calls") && r["parallel_tool_calls"].is_boolean())
      o.parallel_tool_calls = r["parallel_tool_calls"];
    if (r.contains("include_reasoning") && r["include_reasoning"].is_boolean())
      o.include_reasoning = r["include_reasoning"];
    if (r.contains("chat_template_kwargs") && r["chat_template_kwargs"].is_object()) {
      const json& k = r["chat_template_kwargs"];
      if (k.contains("enable_thinking") && k["enable_thinking"].is_boolean())
        o.enable_thinking = k["enable_thinking"];
    }
  }
  if (!tools_file.empty()) {
    auto tools = read_json_file(tools_file);
    if (!tools.is_ok())
      return std::fprintf(stderr, "deltaserve parse: %s\n", tools.status().message().c_str()), 1;
    o.tools = tools->is_object() && tools->contains("tools") ? (*tools)["tools"] : *tools;
  }
  if (enable_thinking) o.enable_thinking = *enable_thinking;
  if (include_reasoning) o.include_reasoning = *include_reasoning;
  if (parallel) o.parallel_tool_calls = *parallel;

  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());

  // Tokens, as the engine would deliver them.
  std::vector<Token> tokens;
  std::optional<dt::Tokenizer> tok;
  if (!tokenizer_path.empty() || (!model.empty() && model != "-")) {
    std::string model_dir;
    if (tokenizer_path.empty()) {
      auto dir = ds::model::resolve_model_dir(model);
      if (!dir.is_ok())
        return std::fprintf(stderr, "deltaserve parse: %s\n", dir.status().message().c_str()), 1;
      model_dir = *dir;
    }
    auto loaded = ds::cli::load_cli_tokenizer(tokenizer_path, model_dir);
    if (!loaded.is_ok())
      return std::fprintf(stderr, "deltaserve parse: %s\n", loaded.status().message().c_str()), 1;
    tok = *loaded;
    auto id_of = [&](const char* s, int32_t fallback) { return tok->token_to_id(s).value_or(fallback); };
    o.ids.think_open = id_of("<think>", -1);
    o.ids.think_close = id_of("</think>", -1);
    o.ids.tool_call_open = id_of("<tool_call>", -1);
    o.ids.tool_call_close = id_of("</tool_call>", -1);
    for (int32_t id : tok->encode(input)) tokens.push_back({{id}, {}});
  } else {
    const dt::ControlTokenIds ids;
    for (const auto& p : dt::split_tagged_text(input)) {
      if (p.control) {
        const int32_t id = *p.control == dt::ControlToken::kThinkOpen      ? ids.think_open
                           : *p.control == dt::ControlToken::kThinkClose   ? ids.think_close
                           : *p.control == dt::ControlToken::kToolCallOpen ? ids.tool_call_open
                                                                           : ids.tool_call_close;
        tokens.push_back({{id}, p.text});
        continue;
      }
      for (size_t i = 0; i < p.text.size();) {  // one UTF-8 character per token
        const auto b = static_cast<unsigned char>(p.text[i]);
        size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        n = std::min(n, p.text.size() - i);
        tokens.push_back({{-1}, p.text.substr(i, n)});
        i += n;
      }
    }
  }

  dt::OutputParser parser(o);
  std::optional<dt::IncrementalDetokenizer> detok;
  if (tok) detok.emplace(*tok);
  const size_t step = chunk > 0 ? static_cast<size_t>(chunk) : std::max<size_t>(tokens.size(), 1);
  auto print_delta = [&](const dt::ParserDelta& d) {
    if (chunk > 0 && !d.empty())
      std::printf(
          "%s\n",
          dump({{"index", 0}, {"delta", dt::delta_to_json(d, reasoning_field)}, {"finish_reason", nullptr}})
              .c_str());
  };
  for (size_t b = 0; b < tokens.size(); b += step) {
    std::vector<int32_t> ids;
    std::string text;
    for (size_t i = b; i < std::min(tokens.size(), b + step); ++i) {
      ids.insert(ids.end(), tokens[i].ids.begin(), tokens[i].ids.end());
      text += detok ? detok->step(tokens[i].ids) : tokens[i].text;
    }
    print_delta(parser.feed(ids, text));
  }
  if (detok) print_delta(parser.feed_text(detok->finish()));
  const dt::ParserDelta last = parser.finish(finish_reason);
  if (chunk > 0) {
    std::printf("%s\n",
                dump({{"index", 0},
                      {"delta", last.empty() ? json::object() : dt::delta_to_json(last, reasoning_field)},
                      {"finish_reason", parser.message().finish_reason}})
                    .c_str());
  }
  const auto& m = parser.message();
  json choice = {{"index", 0},
                 {"message", dt::message_to_json(m, o.reasoning_parser, reasoning_field)},
                 {"finish_reason", m.finish_reason}};
  if (!m.error.empty()) choice["error"] = m.error;
  std::printf("%s\n", dump(choice).c_str());
  return 0;
}

}  // namespace

DS_COMMAND(parse, "parse", "parse raw model output into an OpenAI message (reasoning + tool calls)", run);
