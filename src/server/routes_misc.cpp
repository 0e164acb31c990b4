// Small routes and shared helpers: /v1/models, /tokenize, /detokenize, /invocations, JSON replies.
#include <random>

#include "app.h"
#include "chat_render.h"
#include "deltaserve/server/openai_schema.h"

namespace ds::server {

using nlohmann::json;

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.to_json()); }

std::optional<ApiError> parse_body(const httplib::Request& req, json* out) {
  const std::string ct = req.get_header_value("Content-Type");
  if (!ct.empty() && ct.find("application/json") == std::string::npos && ct.find("+json") == std::string::npos)
    return ApiError{415, "Unsupported Media Type: Only 'application/json' is allowed", "", std::nullopt};
  *out = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded())
    return bad_request("JSON decode error: the request body is not valid JSON.");
  if (!out->is_object()) return bad_request("1 validation error: the request body must be a JSON object.");
  return std::nullopt;
}

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(kHex[rng() & 15]);
  return s;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void handle_models(App& app, const httplib::Request&, httplib::Response& res) {
  json data = json::array();
  const int64_t now = unix_time();
  for (const auto& name : app.cfg.served_model_names) {
    data.push_back({{"id", name},
                    {"object", "model"},
                    {"created", now},
                    {"owned_by", "vllm"},
                    {"root", app.cfg.model_root},
                    {"parent", nullptr},
                    {"max_model_len", app.cfg.max_model_len},
                    {"permission", json::array({{{"id", "modelperm-" + random_hex(16)},
                                                 {"object", "model_permission"},
                                                 {"created", now},
                                                 {"allow_create_engine", false},
                                                 {"allow_sampling", true},
                                                 {"allow_logprobs", true},
                                                 {"allow_search_indices", false},
                                                 {"allow_view", true},
                                                 {"allow_fine_tuning", false},
                                                 {"organization", "*"},
                                                 {"group", nullptr},
                                                 {"is_blocking", false}}})}});
  }
  send_json(res, 200, {{"object", "list"}, {"data", data}});
}

namespace {
// Optional boolean field: absent/null -> dflt; another type -> 400.
std::optional<ApiError> opt_bool(const json& body, const char* key, bool dflt, bool* out) {
  *out = dflt;
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  if (!body[key].is_boolean()) return bad_request(std::string("`") + key + "` must be a boolean", key);
  *out = body[key].get<bool>();
  return std::nullopt;
}
}  // namespace

void handle_tokenize(App& app, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto e = parse_body(req, &body)) return send_error(res, *e);
  bool add_gen = true, cont = false, want_strs = false, add_special_flag = true;
  for (auto [k, d, dst] : {std::tuple{"add_generation_prompt", true, &add_gen},
                           std::tuple{"continue_final_message", false, &cont},
                           std::tuple{"return_token_strs", false, &want_strs},
                           std::tuple{"add_special_tokens", true, &add_special_flag}})
    if (auto e = opt_bool(body, k, d, dst)) return send_error(res, *e);
  std::string model;
  if (auto e = resolve_model_name(body, app.cfg, &model)) return send_error(res, *e);
  std::string text;
  bool add_special = true;
  if (body.contains("messages")) {
    if (!body["messages"].is_array()) return send_error(res, bad_request("`messages` must be a list", "messages"));
    for (const auto& m : body["messages"])
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        return send_error(res, bad_request("each message needs a string `role`", "messages"));
    ChatRenderInput in;
    in.tmpl = app.chat_template.get();
    in.raw_body = &req.body;
    in.messages = &body["messages"];
    in.add_generation_prompt = add_gen;
    in.continue_final_message = cont;
    in.chat_template_kwargs = app.cfg.default_chat_template_kwargs;
    if (body.contains("chat_template_kwargs") && body["chat_template_kwargs"].is_object())
      for (const auto& [k, v] : body["chat_template_kwargs"].items()) in.chat_template_kwargs[k] = v;
    if (in.add_generation_prompt && in.continue_final_message)
      return send_error(res, bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True."));
    if (auto e = render_chat(in, app.cfg, &text)) return send_error(res, *e);
    add_special = false;
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    text = body["prompt"].get<std::string>();
  } else {
    return send_error(res, bad_request("Either `prompt` (a string) or `messages` is required."));
  }
  if (body.contains("add_special_tokens") && body["add_special_tokens"].is_boolean()) add_special = add_special_flag;
  auto ids = app.codec->encode(text, add_special);
  if (!ids) return send_error(res, from_status(ids.status()));
  json token_strs = nullptr;
  if (want_strs) {
    token_strs = json::array();
    for (int32_t id : *ids) token_strs.push_back(app.codec->decode({id}, false));
  }
  send_json(res, 200, {{"count", ids->size()}, {"max_model_len", app.cfg.max_model_len}, {"tokens", *ids},
                       {"token_strs", token_strs}});
}

void handle_detokenize(App& app, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (auto e = parse_body(req, &body)) return send_error(res, *e);
  std::string model;
  if (auto e = resolve_model_name(body, app.cfg, &model)) return send_error(res, *e);
  if (!body.contains("tokens") || !body["tokens"].is_array())
    return send_error(res, bad_request("1 validation error: `tokens`: Field required", "tokens"));
  std::vector<int32_t> ids;
  for (const auto& t : body["tokens"]) {
    if (!t.is_number_integer()) return send_error(res, bad_request("`tokens` must be a list of integers", "tokens"));
    const int64_t v = t.get<int64_t>();
    if (v < 0 || (app.cfg.vocab_size > 0 && v >= app.cfg.vocab_size))
      return send_error(res, bad_request("Token id " + std::to_string(v) + " is out of vocabulary", "tokens"));
    ids.push_back(static_cast<int32_t>(v));
  }
  send_json(res, 200, {{"prompt", app.codec->decode(ids, false)}});
}

void handle_invocations(App& app, const httplib::Request& req, httplib::Response& res) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_object() && body.contains("messages")) return handle_chat(app, req, res);
  if (body.is_object() && body.contains("prompt")) return handle_completions(app, req, res);
  if (body.is_discarded()) return send_error(res, bad_request("JSON decode error: the request body is not valid JSON."));
  send_error(res, bad_request("Cannot find suitable handler for request. Expected one of: chat completion "
                              "(`messages`) or completion (`prompt`)."));
}

}  // namespace ds::server
