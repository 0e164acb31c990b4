#include "deltaserve/server/openai_schema.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "deltaserve/text/parsers/tool_choice.h"

namespace ds::server {

using nlohmann::json;

namespace {

std::string fmt_num(double v) {
  std::ostringstream os;
  os << v;
  std::string s = os.str();
  if (s.find_first_of(".e") == std::string::npos && std::floor(v) == v) s += ".0";
  return s;
}

std::optional<ApiError> type_error(const std::string& field, const char* expected) {
  return bad_request("1 validation error: `" + field + "`: Input should be " + expected, field);
}

// Each getter: absent or null -> leaves *out and returns nullopt; wrong type -> error.
std::optional<ApiError> get_bool(const json& j, const char* k, bool* out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_boolean()) return type_error(k, "a valid boolean");
  *out = j[k].get<bool>();
  return std::nullopt;
}
template <typename T>
std::optional<ApiError> get_int(const json& j, const char* k, std::optional<T>* out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  const json& v = j[k];
  if (v.is_number_integer()) {
    *out = v.get<T>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
             std::abs(v.get<double>()) < 9e18) {
    *out = static_cast<T>(v.get<double>());
  } else {
    return type_error(k, "a valid integer");
  }
  return std::nullopt;
}
std::optional<ApiError> get_double(const json& j, const char* k, std::optional<double>* out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_number()) return type_error(k, "a valid number");
  *out = j[k].get<double>();
  return std::nullopt;
}

#define DS_TRY(expr)                        \
  do {                                      \
    if (auto e_ = (expr)) return e_;        \
  } while (0)

std::optional<ApiError> parse_token_list(const json& j, const char* k, int64_t vocab, std::vector<int32_t>* out) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  if (!j[k].is_array()) return type_error(k, "a valid list of integers");
  for (const auto& v : j[k]) {
    if (!v.is_number_integer()) return type_error(k, "a valid list of integers");
    const int64_t t = v.get<int64_t>();
    if (vocab > 0 && (t < 0 || t >= vocab))
      return bad_request("token_id(s) [" + std::to_string(t) + "] in " + k + " contain out-of-vocab token ids.", k);
    out->push_back(static_cast<int32_t>(t));
  }
  return std::nullopt;
}

std::optional<ApiError> check_logprobs_max(int requested, int max_logprobs, const char* what) {
  if (max_logprobs >= 0 && requested > max_logprobs)
    return bad_request(std::string("Requested ") + what + " logprobs of " + std::to_string(requested) +
                       ", which is greater than max allowed: " + std::to_string(max_logprobs));
  return std::nullopt;
}

std::optional<ApiError> parse_tools(const json& body, const ServerConfig& cfg) {
  const bool has_tools = body.contains("tools") && body["tools"].is_array() && !body["tools"].empty();
  if (body.contains("tools") && !body["tools"].is_null() && !body["tools"].is_array())
    return type_error("tools", "a valid list");
  json choice = body.value("tool_choice", json());
  if (!choice.is_null() && !(choice.is_string() && choice == "none") && !body.contains("tools"))
    return bad_request("When using `tool_choice`, `tools` must be set.", "tool_choice");
  if (!has_tools) return std::nullopt;
  if (choice.is_null()) choice = "auto";
  if (choice.is_string()) {
    const std::string c = choice.get<std::string>();
    if (c != "auto" && c != "none" && c != "required")
      return bad_request("Invalid value for `tool_choice`: " + c, "tool_choice");
    if (c == "auto" && !(cfg.enable_auto_tool_choice && !cfg.tool_call_parser.empty()))
      return bad_request("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
                         "tool_choice");
  } else if (choice.is_object()) {
    const std::string name = choice.contains("function") && choice["function"].is_object()
                                 ? json_str(choice["function"], "name")
                                 : "";
    bool found = false;
    for (const auto& t : body["tools"])
      if (t.is_object() && t.contains("function") && t["function"].is_object() &&
          json_str(t["function"], "name") == name)
        found = true;
    if (!found)
      return bad_request("The tool specified in `tool_choice` does not match any of the specified `tools`",
                         "tool_choice");
  } else {
    return type_error("tool_choice", "'none', 'auto', 'required' or a named tool choice");
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> resolve_model_name(const json& body, const ServerConfig& cfg, std::string* out) {
  const std::string first = cfg.served_model_names.empty() ? cfg.model_root : cfg.served_model_names[0];
  if (!body.contains("model") || body["model"].is_null() ||
      (body["model"].is_string() && body["model"].get<std::string>().empty())) {
    *out = first;
    return std::nullopt;
  }
  if (!body["model"].is_string()) return type_error("model", "a valid string");
  const std::string m = body["model"].get<std::string>();
  for (const auto& n : cfg.served_model_names)
    if (n == m) {
      *out = first;  // vLLM echoes the first served name
      return std::nullopt;
    }
  return not_found_error("The model `" + m + "` does not exist.", "model");
}

std::optional<ApiError> parse_gen_request(const json& body, bool chat, const ServerConfig& cfg, GenRequest* r) {
  *r = GenRequest{};
  if (!body.is_object()) return bad_request("Request body must be a JSON object.");
  r->chat = chat;
  r->body = body;
  DS_TRY(resolve_model_name(body, cfg, &r->model_name));
  engine::SamplingParams& p = r->params;

  if (chat) {
    if (!body.contains("messages")) return bad_request("1 validation error: `messages`: Field required", "messages");
    if (!body["messages"].is_array()) return type_error("messages", "a valid list");
    for (const auto& m : body["messages"])
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        return bad_request("1 validation error: each message needs a string `role`", "messages");
  } else {
    if (!body.contains("prompt") || body["prompt"].is_null())
      return bad_request("1 validation error: `prompt`: Field required", "prompt");
    const json& pr = body["prompt"];
    auto is_ids = [](const json& a) {
      return a.is_array() && !a.empty() && std::all_of(a.begin(), a.end(), [](const json& x) { return x.is_number_integer(); });
    };
    if (pr.is_string()) {
      r->prompt_texts.push_back(pr.get<std::string>());
    } else if (is_ids(pr)) {
      r->prompt_ids.push_back(pr.get<std::vector<int32_t>>());
    } else if (pr.is_array() && !pr.empty() && std::all_of(pr.begin(), pr.end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : pr) r->prompt_texts.push_back(x.get<std::string>());
    } else if (pr.is_array() && !pr.empty() && std::all_of(pr.begin(), pr.end(), is_ids)) {
      for (const auto& x : pr) r->prompt_ids.push_back(x.get<std::vector<int32_t>>());
    } else {
      return bad_request("prompt must be a string, array of strings, array of tokens, or array of token arrays",
                         "prompt");
    }
    for (const auto& ids : r->prompt_ids)
      for (int32_t t : ids)
        if (cfg.vocab_size > 0 && (t < 0 || t >= cfg.vocab_size))
          return bad_request("Token id " + std::to_string(t) + " is out of vocabulary", "prompt");
    if (body.contains("suffix") && !body["suffix"].is_null())
      return bad_request("suffix is not currently supported", "suffix");
  }

  std::optional<int64_t> n;
  DS_TRY(get_int(body, "n", &n));
  if (n) {
    if (*n < 1) return bad_request("n must be at least 1, got " + std::to_string(*n) + ".", "n");
    if (*n > 128) return bad_request("n must be at most 128, got " + std::to_string(*n) + ".", "n");
    r->n = static_cast<int>(*n);
  }
  DS_TRY(get_bool(body, "stream", &r->stream));
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    if (!r->stream) return bad_request("Stream options can only be defined when `stream=True`.", "stream_options");
    const json& so = body["stream_options"];
    if (!so.is_object()) return type_error("stream_options", "a valid dictionary");
    r->include_usage = true;  // vLLM: include_usage defaults to True once stream_options is given
    DS_TRY(get_bool(so, "include_usage", &r->include_usage));
    DS_TRY(get_bool(so, "continuous_usage_stats", &r->continuous_usage_stats));
  }
  if (cfg.enable_force_include_usage && r->stream) r->include_usage = true;

  // Sampling, falling back to generation_config defaults, then vLLM's built-in defaults.
  const json& gd = cfg.generation_defaults;
  std::optional<double> temperature, top_p, min_p, rep, presence, frequency;
  std::optional<int64_t> top_k;
  DS_TRY(get_double(body, "temperature", &temperature));
  DS_TRY(get_double(body, "top_p", &top_p));
  DS_TRY(get_int(body, "top_k", &top_k));
  DS_TRY(get_double(body, "min_p", &min_p));
  DS_TRY(get_double(body, "repetition_penalty", &rep));
  DS_TRY(get_double(body, "presence_penalty", &presence));
  DS_TRY(get_double(body, "frequency_penalty", &frequency));
  auto dflt = [&](const char* k, double fallback) {
    return gd.contains(k) && gd[k].is_number() ? gd[k].get<double>() : fallback;
  };
  p.temperature = temperature.value_or(dflt("temperature", 1.0));
  p.top_p = top_p.value_or(dflt("top_p", 1.0));
  p.top_k = top_k.value_or(static_cast<int64_t>(dflt("top_k", 0)));
  p.min_p = min_p.value_or(dflt("min_p", 0.0));
  p.repetition_penalty = rep.value_or(dflt("repetition_penalty", 1.0));
  p.presence_penalty = presence.value_or(0.0);
  p.frequency_penalty = frequency.value_or(0.0);
  if (p.temperature < 0) return bad_request("temperature must be non-negative, got " + fmt_num(p.temperature) + ".", "temperature");
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad_request("top_p must be in (0, 1], got " + fmt_num(p.top_p) + ".", "top_p");
  if (p.top_k < -1) return bad_request("top_k must be 0 (disable), or at least 1, got " + std::to_string(p.top_k) + ".", "top_k");
  if (p.top_k == -1) p.top_k = 0;
  if (p.min_p < 0 || p.min_p > 1) return bad_request("min_p must be in [0, 1], got " + fmt_num(p.min_p) + ".", "min_p");
  if (p.presence_penalty < -2 || p.presence_penalty > 2)
    return bad_request("presence_penalty must be in [-2, 2], got " + fmt_num(p.presence_penalty) + ".", "presence_penalty");
  if (p.frequency_penalty < -2 || p.frequency_penalty > 2)
    return bad_request("frequency_penalty must be in [-2, 2], got " + fmt_num(p.frequency_penalty) + ".", "frequency_penalty");
  if (p.repetition_penalty <= 0)
    return bad_request("repetition_penalty must be greater than zero, got " + fmt_num(p.repetition_penalty) + ".",
                       "repetition_penalty");

  std::optional<int64_t> seed, max_tokens, max_completion_tokens, min_tokens;
  DS_TRY(get_int(body, "seed", &seed));
  if (seed) p.seed = static_cast<uint64_t>(*seed);
  DS_TRY(get_int(body, "max_tokens", &max_tokens));
  if (chat) DS_TRY(get_int(body, "max_completion_tokens", &max_completion_tokens));
  r->max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  if (r->max_tokens && *r->max_tokens < 1)
    return bad_request("max_tokens must be at least 1, got " + std::to_string(*r->max_tokens) + ".", "max_tokens");
  DS_TRY(get_int(body, "min_tokens", &min_tokens));
  if (min_tokens) {
    if (*min_tokens < 0)
      return bad_request("min_tokens must be greater than or equal to 0, got " + std::to_string(*min_tokens) + ".", "min_tokens");
    if (r->max_tokens && *min_tokens > *r->max_tokens)
      return bad_request("min_tokens must be less than or equal to max_tokens=" + std::to_string(*r->max_tokens) +
                         ", got " + std::to_string(*min_tokens) + ".", "min_tokens");
    p.min_tokens = *min_tokens;
  }
  DS_TRY(get_bool(body, "ignore_eos", &p.ignore_eos));
  DS_TRY(get_bool(body, "include_stop_str_in_output", &p.include_stop_str_in_output));
  DS_TRY(get_bool(body, "skip_special_tokens", &p.skip_special_tokens));
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && std::all_of(s.begin(), s.end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : s) p.stop.push_back(x.get<std::string>());
    } else {
      return type_error("stop", "a valid string or list of strings");
    }
    p.stop.erase(std::remove(p.stop.begin(), p.stop.end(), std::string()), p.stop.end());
  }
  DS_TRY(parse_token_list(body, "stop_token_ids", 0, &p.stop_token_ids));
  DS_TRY(parse_token_list(body, "allowed_token_ids", cfg.vocab_size, &p.allowed_token_ids));
  if (body.contains("logit_bias") && !body["logit_bias"].is_null()) {
    if (!body["logit_bias"].is_object()) return type_error("logit_bias", "a valid dictionary");
    for (const auto& [k, v] : body["logit_bias"].items()) {
      char* end = nullptr;
      const long long id = std::strtoll(k.c_str(), &end, 10);
      if (k.empty() || *end || !v.is_number()) return type_error("logit_bias", "a dictionary of token id -> number");
      if (cfg.vocab_size > 0 && (id < 0 || id >= cfg.vocab_size))
        return bad_request("token_id(s) [" + k + "] in logit_bias contain out-of-vocab token ids.", "logit_bias");
      p.logit_bias[static_cast<int32_t>(id)] = static_cast<float>(std::clamp(v.get<double>(), -100.0, 100.0));
    }
  }

  // Logprobs.
  if (chat) {
    DS_TRY(get_bool(body, "logprobs", &r->chat_logprobs));
    std::optional<int64_t> top;
    DS_TRY(get_int(body, "top_logprobs", &top));
    if (top) {
      if (*top < 0 && *top != -1) return bad_request("`top_logprobs` must be a positive value.", "top_logprobs");
      if (*top != 0 && !r->chat_logprobs)
        return bad_request("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs");
      r->top_logprobs = static_cast<int>(std::min<int64_t>(*top == -1 ? (cfg.vocab_size > 0 ? cfg.vocab_size : 20) : *top, INT32_MAX));
    }
    if (r->chat_logprobs) {
      DS_TRY(check_logprobs_max(r->top_logprobs, cfg.max_logprobs, "sample"));
      p.logprobs = r->top_logprobs;
    }
  } else {
    std::optional<int64_t> lp;
    DS_TRY(get_int(body, "logprobs", &lp));
    if (lp) {
      if (*lp < 0) return bad_request("`logprobs` must be a positive value.", "logprobs");
      DS_TRY(check_logprobs_max(static_cast<int>(std::min<int64_t>(*lp, INT32_MAX)), cfg.max_logprobs, "sample"));
      r->completion_logprobs = static_cast<int>(*lp);
      p.logprobs = static_cast<int>(*lp);
    }
  }
  std::optional<int64_t> plp;
  DS_TRY(get_int(body, "prompt_logprobs", &plp));
  if (plp) {
    if (r->stream) return bad_request("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs");
    if (*plp < 0 && *plp != -1) return bad_request("`prompt_logprobs` must be a positive value.", "prompt_logprobs");
    // vLLM checks the resolved count: -1 means the whole vocabulary, refused under --max-logprobs.
    const int64_t want = *plp == -1 ? cfg.vocab_size : *plp;
    DS_TRY(check_logprobs_max(static_cast<int>(std::min<int64_t>(want, INT32_MAX)), cfg.max_logprobs, "prompt"));
    r->prompt_logprobs = static_cast<int>(*plp);
    p.prompt_logprobs = static_cast<int>(want);
  }
  DS_TRY(get_bool(body, "echo", &r->echo));
  // vLLM: echo with logprobs returns the prompt's logprobs too.
  if (!chat && r->echo && r->completion_logprobs && p.prompt_logprobs < 0) p.prompt_logprobs = *r->completion_logprobs;
  if (!chat && r->echo && r->stream && r->completion_logprobs)
    return bad_request("`echo` with `logprobs` is not supported when streaming.", "echo");
  DS_TRY(get_bool(body, "return_token_ids", &r->return_token_ids));
  r->return_tokens_as_token_ids = cfg.return_tokens_as_token_ids;
  DS_TRY(get_bool(body, "return_tokens_as_token_ids", &r->return_tokens_as_token_ids));
  if (body.contains("request_id") && body["request_id"].is_string()) r->request_id = body["request_id"].get<std::string>();

  DS_TRY(get_int(body, "truncate_prompt_tokens", &r->truncate_prompt_tokens));
  if (r->truncate_prompt_tokens) {
    int64_t& t = *r->truncate_prompt_tokens;
    if (t == -1) t = cfg.max_model_len;
    if (t < 1) return bad_request("truncate_prompt_tokens must be -1 or at least 1", "truncate_prompt_tokens");
    if (t > cfg.max_model_len)
      return bad_request("truncate_prompt_tokens value (" + std::to_string(t) + ") is greater than max_model_len (" +
                             std::to_string(cfg.max_model_len) + "). Please request a smaller truncation size.",
                         "truncate_prompt_tokens");
  }
  bool beam = false;
  DS_TRY(get_bool(body, "use_beam_search", &beam));
  if (beam) return bad_request("Beam search is not supported by deltaserve.", "use_beam_search");
  for (const char* k : {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs"})
    if (body.contains(k) && !body[k].is_null())
      return bad_request(std::string("`") + k + "` (structured outputs) is not supported by deltaserve yet.", k);
  if (body.contains("response_format") && body["response_format"].is_object()) {
    const std::string t = json_str(body["response_format"], "type", "text");
    if (t != "text")
      return bad_request("response_format type `" + t + "` (structured outputs) is not supported by deltaserve yet.",
                         "response_format");
  }

  if (chat) {
    r->add_special_tokens = false;
    DS_TRY(get_bool(body, "add_generation_prompt", &r->add_generation_prompt));
    DS_TRY(get_bool(body, "continue_final_message", &r->continue_final_message));
    if (r->add_generation_prompt && r->continue_final_message)
      return bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
    DS_TRY(get_bool(body, "add_special_tokens", &r->add_special_tokens));
    DS_TRY(get_bool(body, "include_reasoning", &r->include_reasoning));
    r->chat_template_kwargs = cfg.default_chat_template_kwargs.is_object() ? cfg.default_chat_template_kwargs
                                                                           : json::object();
    if (body.contains("chat_template_kwargs") && !body["chat_template_kwargs"].is_null()) {
      if (!body["chat_template_kwargs"].is_object()) return type_error("chat_template_kwargs", "a valid dictionary");
      for (const auto& [k, v] : body["chat_template_kwargs"].items()) r->chat_template_kwargs[k] = v;
    }
    if (body.contains("chat_template") && !body["chat_template"].is_null() && !cfg.trust_request_chat_template)
      return bad_request(
          "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request "
          "with untrusted chat template.");
    DS_TRY(parse_tools(body, cfg));
    if (Status st = text::validate_tool_choice(body, cfg.enable_auto_tool_choice, cfg.tool_call_parser); !st)
      return bad_request(st.message(), "tool_choice");
  } else {
    r->add_special_tokens = true;
    DS_TRY(get_bool(body, "add_special_tokens", &r->add_special_tokens));
  }
  return std::nullopt;
}

std::optional<ApiError> finalize_for_prompt(GenRequest* r, int64_t prompt_len, const ServerConfig& cfg,
                                            engine::SamplingParams* out) {
  *out = r->params;
  const int64_t N = cfg.max_model_len;
  if (prompt_len == 0 && !r->chat) return bad_request("Prompt cannot be empty", "prompt");
  if (r->max_tokens) {
    if (prompt_len + *r->max_tokens > N)
      return bad_request("This model's maximum context length is " + std::to_string(N) +
                             " tokens. However, you requested " + std::to_string(*r->max_tokens) +
                             " output tokens and your prompt contains " + std::to_string(prompt_len) +
                             " input tokens, for a total of " + std::to_string(prompt_len + *r->max_tokens) +
                             " tokens. Please reduce the length of the input prompt or the number of requested "
                             "output tokens.",
                         "input_tokens");
    out->max_tokens = *r->max_tokens;
  } else {
    if (prompt_len >= N)
      return bad_request("This model's maximum context length is " + std::to_string(N) +
                             " tokens. However, your request has " + std::to_string(prompt_len) +
                             " input tokens. Please reduce the length of the input messages.",
                         "input_tokens");
    int64_t dflt = r->chat ? N - prompt_len : std::min<int64_t>(16, N - prompt_len);
    const json& gd = cfg.generation_defaults;
    if (r->chat && gd.contains("max_new_tokens") && gd["max_new_tokens"].is_number_integer())
      dflt = std::min<int64_t>(dflt, gd["max_new_tokens"].get<int64_t>());
    out->max_tokens = std::max<int64_t>(1, dflt);
  }
  if (out->min_tokens > out->max_tokens) out->min_tokens = out->max_tokens;
  out->eos_token_ids = cfg.eos_token_ids;
  return std::nullopt;
}

}  // namespace ds::server
