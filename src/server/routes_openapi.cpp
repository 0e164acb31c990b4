// GET /openapi.json, /docs, /redoc: the OpenAPI 3.1 description of every route this server
// registers, as vLLM's FastAPI app serves it (same paths, same request field names), plus the two
// HTML viewers FastAPI ships. Request schemas state the types and ranges that openai_schema.cpp
// and routes_*.cpp enforce, so a client generated from this document sends what the server takes;
// unknown fields stay allowed (vLLM's extra="allow"). tests/py/test_openapi.py keeps the document,
// the route table and the server's required fields in step.
#include "app.h"

namespace ds::server {

using nlohmann::json;

namespace {

json ref(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }
json type(const char* t) { return {{"type", t}}; }
json with(json schema, const char* key, json value) {
  schema[key] = std::move(value);
  return schema;
}
// FastAPI writes Optional[T] as anyOf [T, null].
json opt(json schema) { return {{"anyOf", json::array({std::move(schema), type("null")})}}; }
json array_of(json items) { return {{"type", "array"}, {"items", std::move(items)}}; }
json int_range(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  json s = type("integer");
  if (lo) s["minimum"] = *lo;
  if (hi) s["maximum"] = *hi;
  return s;
}
json num_range(std::optional<double> lo, std::optional<double> hi) {
  json s = type("number");
  if (lo) s["minimum"] = *lo;
  if (hi) s["maximum"] = *hi;
  return s;
}
json any_object() { return {{"type", "object"}, {"additionalProperties", true}}; }
json string_or_list() { return {{"anyOf", json::array({type("string"), array_of(type("string"))})}}; }

// Fields /v1/chat/completions and /v1/completions share (vLLM's SamplingParams extras included).
void add_sampling_fields(json& p) {
  p["model"] = opt(type("string"));
  p["frequency_penalty"] = opt(num_range(-2, 2));
  p["presence_penalty"] = opt(num_range(-2, 2));
  p["repetition_penalty"] = opt(with(type("number"), "exclusiveMinimum", 0));
  p["logit_bias"] = opt({{"type", "object"},
                         {"propertyNames", {{"pattern", "^[0-9]+$"}}},
                         {"additionalProperties", type("number")},
                         {"description", "Token id (as a string) -> bias added to its logit, clamped to [-100, 100]."}});
  p["max_tokens"] = opt(int_range(1, std::nullopt));
  p["min_tokens"] = opt(int_range(0, std::nullopt));
  p["n"] = opt(int_range(1, 128));
  p["seed"] = opt(type("integer"));
  p["stop"] = opt(string_or_list());
  p["stop_token_ids"] = opt(array_of(int_range(0, std::nullopt)));
  p["stream"] = opt(type("boolean"));
  p["stream_options"] = opt(ref("StreamOptions"));
  p["temperature"] = opt(num_range(0, std::nullopt));
  p["top_p"] = opt(with(with(type("number"), "exclusiveMinimum", 0), "maximum", 1));
  p["top_k"] = opt(with(int_range(-1, std::nullopt), "description", "0 or -1 disables top-k."));
  p["min_p"] = opt(num_range(0, 1));
  p["ignore_eos"] = opt(type("boolean"));
  p["include_stop_str_in_output"] = opt(type("boolean"));
  p["skip_special_tokens"] = opt(type("boolean"));
  p["spaces_between_special_tokens"] = opt(type("boolean"));
  p["allowed_token_ids"] = opt(array_of(int_range(0, std::nullopt)));
  p["bad_words"] = opt(array_of(type("string")));
  p["truncate_prompt_tokens"] = opt(with(int_range(-1, std::nullopt), "description",
                                         "Keep the last k prompt tokens; -1 keeps max_model_len."));
  p["prompt_logprobs"] = opt(with(int_range(-1, std::nullopt), "description", "Not allowed with stream=true."));
  p["echo"] = opt(type("boolean"));
  p["add_special_tokens"] = opt(type("boolean"));
  p["use_beam_search"] = opt(with(type("boolean"), "description", "Only false is supported."));
  p["length_penalty"] = opt(type("number"));
  p["response_format"] = opt(ref("ResponseFormat"));
  p["user"] = opt(type("string"));
  p["priority"] = opt(type("integer"));
  p["request_id"] = opt(type("string"));
  p["return_token_ids"] = opt(type("boolean"));
  p["return_tokens_as_token_ids"] = opt(type("boolean"));
  p["cache_salt"] = opt(type("string"));
  p["kv_transfer_params"] = opt(any_object());
  p["vllm_xargs"] = opt(any_object());
}

json chat_request_schema() {
  json p = json::object();
  p["messages"] = with(array_of(ref("ChatCompletionMessageParam")), "description",
                       "The conversation so far; rendered with the model's chat template.");
  add_sampling_fields(p);
  p["max_completion_tokens"] = opt(with(int_range(1, std::nullopt), "description", "Wins over max_tokens."));
  p["logprobs"] = opt(type("boolean"));
  p["top_logprobs"] = opt(with(int_range(-1, std::nullopt), "description", "Needs logprobs=true; -1 = the vocabulary."));
  p["tools"] = opt(array_of(ref("ChatCompletionToolsParam")));
  p["tool_choice"] = opt({{"anyOf", json::array({{{"type", "string"}, {"enum", {"none", "auto", "required"}}},
                                                 ref("ChatCompletionNamedToolChoiceParam")})},
                          {"description", "Any value other than \"none\" needs `tools`."}});
  p["parallel_tool_calls"] = opt(type("boolean"));
  p["reasoning_effort"] = opt({{"type", "string"}, {"enum", {"low", "medium", "high"}}});
  p["include_reasoning"] = opt(type("boolean"));
  p["add_generation_prompt"] = opt(with(type("boolean"), "description", "Not together with continue_final_message."));
  p["continue_final_message"] = opt(type("boolean"));
  p["documents"] = opt(array_of(any_object()));
  p["chat_template"] = opt(with(type("string"), "description", "Needs --trust-request-chat-template."));
  p["chat_template_kwargs"] = opt(with(any_object(), "description", "e.g. {\"enable_thinking\": false}"));
  p["mm_processor_kwargs"] = opt(any_object());
  p["structured_outputs"] = opt(with(any_object(), "description", "Not supported yet: a request that sets it is refused."));
  p["logits_processors"] = opt(array_of(json::object()));
  return {{"title", "ChatCompletionRequest"},
          {"type", "object"},
          {"properties", p},
          {"required", {"messages"}},
          {"example", {{"messages", {{{"role", "user"}, {"content", "Hello!"}}}}, {"max_tokens", 8}}}};
}

json completion_request_schema() {
  json p = json::object();
  p["prompt"] = {{"anyOf", json::array({type("string"), with(array_of(type("string")), "minItems", 1),
                                        with(array_of(int_range(0, std::nullopt)), "minItems", 1),
                                        with(array_of(with(array_of(int_range(0, std::nullopt)), "minItems", 1)),
                                             "minItems", 1)})},
                 {"description", "Text, a list of texts, token ids, or a list of token-id lists."}};
  add_sampling_fields(p);
  p["logprobs"] = opt(with(int_range(0, std::nullopt), "description", "Number of top logprobs per token."));
  p["suffix"] = opt(with(type("string"), "description", "Not supported: a request that sets it is refused."));
  return {{"title", "CompletionRequest"},
          {"type", "object"},
          {"properties", p},
          {"required", {"prompt"}},
          {"example", {{"prompt", "Hello"}, {"max_tokens", 8}}}};
}

json message_schema() {
  json part = {{"type", "object"},
               {"properties",
                {{"type", {{"type", "string"}, {"enum", {"text", "image_url"}}}},
                 {"text", type("string")},
                 {"image_url", {{"type", "object"}, {"properties", {{"url", type("string")}}}}}}},
               {"required", {"type"}}};
  json tool_call = {{"type", "object"},
                    {"properties",
                     {{"id", type("string")},
                      {"type", {{"type", "string"}, {"enum", {"function"}}}},
                      {"function",
                       {{"type", "object"},
                        {"properties", {{"name", type("string")}, {"arguments", type("string")}}},
                        {"required", {"name", "arguments"}}}}}},
                    {"required", {"function"}}};
  return {{"title", "ChatCompletionMessageParam"},
          {"type", "object"},
          {"properties",
           {{"role", {{"type", "string"}, {"description", "system, user, assistant, tool (or any role the template knows)"}}},
            {"content", opt({{"anyOf", json::array({type("string"), array_of(part)})}})},
            {"name", opt(type("string"))},
            {"tool_calls", opt(array_of(tool_call))},
            {"tool_call_id", opt(type("string"))},
            {"reasoning", opt(type("string"))},
            {"reasoning_content", opt(type("string"))}}},
          {"required", {"role"}}};
}

void tools_schemas(json& s) {
  s["FunctionDefinition"] = {{"type", "object"},
                             {"properties",
                              {{"name", type("string")},
                               {"description", opt(type("string"))},
                               {"parameters", opt(any_object())},
                               {"strict", opt(type("boolean"))}}},
                             {"required", {"name"}}};
  s["ChatCompletionToolsParam"] = {{"type", "object"},
                                   {"properties",
                                    {{"type", {{"type", "string"}, {"enum", {"function"}}}},
                                     {"function", ref("FunctionDefinition")}}},
                                   {"required", {"function"}}};
  s["ChatCompletionNamedToolChoiceParam"] = {
      {"type", "object"},
      {"properties",
       {{"type", {{"type", "string"}, {"enum", {"function"}}}},
        {"function", {{"type", "object"}, {"properties", {{"name", type("string")}}}, {"required", {"name"}}}}}},
      {"required", {"function"}}};
}

json tokenize_completion_schema() {
  return {{"title", "TokenizeCompletionRequest"},
          {"type", "object"},
          {"properties",
           {{"model", opt(type("string"))},
            {"prompt", type("string")},
            {"add_special_tokens", opt(type("boolean"))},
            {"return_token_strs", opt(type("boolean"))}}},
          {"required", {"prompt"}},
          {"example", {{"prompt", "Hello world"}}}};
}

json tokenize_chat_schema() {
  return {{"title", "TokenizeChatRequest"},
          {"type", "object"},
          {"properties",
           {{"model", opt(type("string"))},
            {"messages", array_of(ref("ChatCompletionMessageParam"))},
            {"add_generation_prompt", opt(type("boolean"))},
            {"continue_final_message", opt(type("boolean"))},
            {"add_special_tokens", opt(type("boolean"))},
            {"return_token_strs", opt(type("boolean"))},
            {"chat_template_kwargs", opt(any_object())},
            {"tools", opt(array_of(ref("ChatCompletionToolsParam")))}}},
          {"required", {"messages"}},
          {"example", {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}}}};
}

void response_schemas(json& s) {
  s["ErrorInfo"] = {{"type", "object"},
                    {"properties",
                     {{"message", type("string")},
                      {"type", type("string")},
                      {"param", opt(type("string"))},
                      {"code", type("integer")}}},
                    {"required", {"message", "type", "code"}}};
  s["ErrorResponse"] = {{"type", "object"}, {"properties", {{"error", ref("ErrorInfo")}}}, {"required", {"error"}}};
  s["Usage"] = {{"type", "object"},
                {"properties",
                 {{"prompt_tokens", type("integer")},
                  {"completion_tokens", opt(type("integer"))},
                  {"total_tokens", type("integer")}}},
                {"required", {"prompt_tokens", "total_tokens"}}};
  s["ChatCompletionResponse"] = {
      {"type", "object"},
      {"properties",
       {{"id", type("string")},
        {"object", {{"type", "string"}, {"enum", {"chat.completion"}}}},
        {"created", type("integer")},
        {"model", type("string")},
        {"choices",
         array_of({{"type", "object"},
                   {"properties",
                    {{"index", type("integer")},
                     {"message",
                      {{"type", "object"},
                       {"properties", {{"role", type("string")}, {"content", opt(type("string"))}}},
                       {"required", {"role"}}}},
                     {"finish_reason", opt(type("string"))}}},
                   {"required", {"index", "message"}}})},
        {"usage", ref("Usage")}}},
      {"required", {"id", "object", "created", "model", "choices", "usage"}}};
  s["CompletionResponse"] = {
      {"type", "object"},
      {"properties",
       {{"id", type("string")},
        {"object", {{"type", "string"}, {"enum", {"text_completion"}}}},
        {"created", type("integer")},
        {"model", type("string")},
        {"choices", array_of({{"type", "object"},
                              {"properties",
                               {{"index", type("integer")},
                                {"text", type("string")},
                                {"finish_reason", opt(type("string"))}}},
                              {"required", {"index", "text"}}})},
        {"usage", ref("Usage")}}},
      {"required", {"id", "object", "created", "model", "choices", "usage"}}};
  s["TokenizeResponse"] = {{"type", "object"},
                           {"properties",
                            {{"count", type("integer")},
                             {"max_model_len", type("integer")},
                             {"tokens", array_of(type("integer"))},
                             {"token_strs", opt(array_of(type("string")))}}},
                           {"required", {"count", "max_model_len", "tokens"}}};
  s["DetokenizeResponse"] = {{"type", "object"}, {"properties", {{"prompt", type("string")}}}, {"required", {"prompt"}}};
  s["ModelCard"] = {{"type", "object"},
                    {"properties",
                     {{"id", type("string")},
                      {"object", type("string")},
                      {"created", type("integer")},
                      {"owned_by", type("string")},
                      {"root", opt(type("string"))},
                      {"parent", opt(type("string"))},
                      {"max_model_len", opt(type("integer"))}}},
                    {"required", {"id", "object", "created", "owned_by"}}};
  s["ModelList"] = {{"type", "object"},
                    {"properties", {{"object", type("string")}, {"data", array_of(ref("ModelCard"))}}},
                    {"required", {"object", "data"}}};
  s["VersionResponse"] = {{"type", "object"}, {"properties", {{"version", type("string")}}}, {"required", {"version"}}};
  s["LoadResponse"] = {{"type", "object"}, {"properties", {{"server_load", type("integer")}}}, {"required", {"server_load"}}};
}

json json_content(json schema) { return {{"application/json", {{"schema", std::move(schema)}}}}; }
json error_response(const char* what) { return {{"description", what}, {"content", json_content(ref("ErrorResponse"))}}; }

// An operation in FastAPI's shape: operationId <name>_<path>_<method>, responses by status.
json operation(const std::string& id, const std::string& summary, json responses, json body = nullptr) {
  json op = {{"summary", summary}, {"operationId", id}, {"responses", std::move(responses)}};
  if (!body.is_null()) op["requestBody"] = {{"required", true}, {"content", json_content(std::move(body))}};
  return op;
}

// The POST routes that read a JSON body answer these besides 200.
json with_body_errors(json responses, bool engine) {
  responses["400"] = error_response("Invalid request (vLLM's validation texts).");
  responses["404"] = error_response("The `model` is not served.");
  responses["413"] = error_response("Request body too large.");
  responses["415"] = error_response("Content-Type is not application/json.");
  if (engine) responses["503"] = error_response("The server is shutting down or the engine is not running.");
  return responses;
}

json ok(const char* what, json content) { return {{"description", what}, {"content", std::move(content)}}; }

}  // namespace

json openapi_document(const ServerConfig& cfg) {
  json schemas = json::object();
  schemas["ChatCompletionMessageParam"] = message_schema();
  tools_schemas(schemas);
  schemas["StreamOptions"] = {{"type", "object"},
                              {"properties",
                               {{"include_usage", opt(type("boolean"))},
                                {"continuous_usage_stats", opt(type("boolean"))}}},
                              {"description", "Only with stream=true."}};
  schemas["ResponseFormat"] = {{"type", "object"},
                               {"properties", {{"type", {{"type", "string"}, {"enum", {"text"}}}}}},
                               {"required", {"type"}},
                               {"description", "Only {\"type\": \"text\"} is supported yet."}};
  schemas["ChatCompletionRequest"] = chat_request_schema();
  schemas["CompletionRequest"] = completion_request_schema();
  schemas["TokenizeCompletionRequest"] = tokenize_completion_schema();
  schemas["TokenizeChatRequest"] = tokenize_chat_schema();
  schemas["DetokenizeRequest"] = {{"title", "DetokenizeRequest"},
                                  {"type", "object"},
                                  {"properties",
                                   {{"model", opt(type("string"))}, {"tokens", array_of(int_range(0, cfg.vocab_size > 0 ? std::optional<int64_t>(cfg.vocab_size - 1) : std::nullopt))}}},
                                  {"required", {"tokens"}},
                                  {"example", {{"tokens", {9707, 1879}}}}};
  response_schemas(schemas);

  // OpenAPI 3.1 has an event-stream `schema` describe each event (3.2 calls it itemSchema).
  const json sse = {{"text/event-stream",
                     {{"schema",
                       {{"type", "object"},
                        {"properties", {{"data", {{"type", "string"}, {"description", "A chunk as JSON, or [DONE]."}}}}},
                        {"required", {"data"}}}}}}};
  json chat_ok = ok("A chat.completion object, or SSE chunks when stream=true.",
                    json_content(ref("ChatCompletionResponse")));
  chat_ok["content"].update(sse);
  json cmpl_ok = ok("A text_completion object, or SSE chunks when stream=true.", json_content(ref("CompletionResponse")));
  cmpl_ok["content"].update(sse);
  const json health = {{"200", {{"description", "The engine is alive (empty body)."}}},
                       {"503", {{"description", "The engine is dead (empty body)."}}}};

  json paths = json::object();
  paths["/v1/chat/completions"]["post"] =
      operation("create_chat_completion_v1_chat_completions_post", "Create Chat Completion",
                with_body_errors({{"200", chat_ok}}, true), ref("ChatCompletionRequest"));
  paths["/v1/completions"]["post"] = operation("create_completion_v1_completions_post", "Create Completion",
                                               with_body_errors({{"200", cmpl_ok}}, true), ref("CompletionRequest"));
  paths["/v1/models"]["get"] =
      operation("show_available_models_v1_models_get", "Show Available Models",
                {{"200", ok("The served model names.", json_content(ref("ModelList")))}});
  paths["/tokenize"]["post"] = operation(
      "tokenize_tokenize_post", "Tokenize",
      with_body_errors({{"200", ok("Token ids of the prompt or rendered chat.", json_content(ref("TokenizeResponse")))}},
                       false),
      {{"anyOf", json::array({ref("TokenizeCompletionRequest"), ref("TokenizeChatRequest")})}});
  paths["/detokenize"]["post"] = operation(
      "detokenize_detokenize_post", "Detokenize",
      with_body_errors({{"200", ok("The decoded text.", json_content(ref("DetokenizeResponse")))}}, false),
      ref("DetokenizeRequest"));
  json invocations_ok = ok("As /v1/chat/completions or /v1/completions.",
                           json_content({{"anyOf", json::array({ref("ChatCompletionResponse"), ref("CompletionResponse")})}}));
  invocations_ok["content"].update(sse);
  paths["/invocations"]["post"] = operation(
      "invocations_invocations_post", "Invocations",
      with_body_errors({{"200", invocations_ok}}, true),
      {{"anyOf", json::array({ref("ChatCompletionRequest"), ref("CompletionRequest")})},
       {"description", "A body with `messages` is a chat completion; one with `prompt` a completion."}});
  paths["/health"]["get"] = operation("health_health_get", "Health", health);
  paths["/ping"]["get"] = operation("ping_ping_get", "Ping", health);
  paths["/ping"]["post"] = operation("ping_ping_post", "Ping", health);
  paths["/version"]["get"] =
      operation("show_version_version_get", "Show Version", {{"200", ok("The vLLM version this server mirrors.", json_content(ref("VersionResponse")))}});
  paths["/load"]["get"] = operation("get_server_load_metrics_load_get", "Get Server Load Metrics",
                                    {{"200", ok("Requests in flight.", json_content(ref("LoadResponse")))}});
  paths["/metrics"]["get"] = operation(
      "metrics_metrics_get", "Metrics",
      {{"200", ok("Prometheus text format.", {{"text/plain", {{"schema", type("string")}}}})}});
  if (!cfg.disable_fastapi_docs) {
    paths["/openapi.json"]["get"] = operation("openapi_openapi_json_get", "OpenAPI",
                                              {{"200", ok("This document.", json_content(type("object")))}});
    paths["/docs"]["get"] = operation("swagger_ui_html_docs_get", "Swagger UI",
                                      {{"200", ok("HTML page.", {{"text/html", {{"schema", type("string")}}}})}});
    paths["/redoc"]["get"] = operation("redoc_html_redoc_get", "ReDoc",
                                       {{"200", ok("HTML page.", {{"text/html", {{"schema", type("string")}}}})}});
  }
  if (!cfg.api_keys.empty())
    for (auto& [path, item] : paths.items())
      if (path.rfind("/v1", 0) == 0)
        for (auto& [method, op] : item.items())
          op["responses"]["401"] = {{"description", "Missing or wrong `Authorization: Bearer` key."},
                                    {"content", json_content({{"type", "object"}, {"properties", {{"error", type("string")}}}})}};

  json doc = {{"openapi", "3.1.0"},
              {"info", {{"title", "deltaserve"}, {"version", "0.17.1"},
                        {"description", "OpenAI-compatible server, a drop-in for `vllm serve`."}}},
              {"paths", paths},
              {"components", {{"schemas", schemas}}}};
  if (!cfg.root_path.empty() && cfg.root_path != "/") doc["servers"] = {{{"url", cfg.root_path}}};
  return doc;
}

namespace {

std::string root_prefix(const ServerConfig& cfg) {
  std::string r = cfg.root_path;
  while (!r.empty() && r.back() == '/') r.pop_back();
  return r;
}

}  // namespace

void handle_openapi(App& app, const httplib::Request&, httplib::Response& res) {
  send_json(res, 200, openapi_document(app.cfg));
}

// FastAPI's get_swagger_ui_html / get_redoc_html: the viewers load from a CDN in the browser.
void handle_docs(App& app, const httplib::Request&, httplib::Response& res) {
  const std::string url = root_prefix(app.cfg) + "/openapi.json";
  res.set_content(
      "<!DOCTYPE html>\n<html>\n<head>\n"
      "<link type=\"text/css\" rel=\"stylesheet\" href=\"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css\">\n"
      "<title>deltaserve - Swagger UI</title>\n</head>\n<body>\n<div id=\"swagger-ui\"></div>\n"
      "<script src=\"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js\"></script>\n<script>\n"
      "const ui = SwaggerUIBundle({url: '" + url + "', dom_id: '#swagger-ui', layout: 'BaseLayout', deepLinking: true,\n"
      "  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]})\n"
      "</script>\n</body>\n</html>\n",
      "text/html; charset=utf-8");
}

void handle_redoc(App& app, const httplib::Request&, httplib::Response& res) {
  const std::string url = root_prefix(app.cfg) + "/openapi.json";
  res.set_content("<!DOCTYPE html>\n<html>\n<head>\n<title>deltaserve - ReDoc</title>\n<meta charset=\"utf-8\"/>\n"
                  "</head>\n<body>\n<redoc spec-url=\"" + url + "\"></redoc>\n"
                  "<script src=\"https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js\"></script>\n"
                  "</body>\n</html>\n",
                  "text/html; charset=utf-8");
}

}  // namespace ds::server
