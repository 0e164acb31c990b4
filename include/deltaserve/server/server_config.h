// Everything the HTTP layer needs to know about how it was started: resolved from the command line
// (cli_args.h) and the model (served names, max_model_len, generation_config defaults).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ds::server {

struct ServerConfig {
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string uds_path;  // --uds: serve on this Unix socket (relayed to an internal loopback port)
  std::vector<std::string> served_model_names;  // first one is echoed and labels metrics
  std::string model_root;                       // MODEL as given (the "root" in /v1/models)
  std::vector<std::string> api_keys;
  std::vector<std::string> allowed_origins{"*"}, allowed_methods{"*"}, allowed_headers{"*"};
  bool allow_credentials = false;
  std::string root_path;
  bool enable_request_id_headers = false;
  bool enable_force_include_usage = false;
  bool enable_prompt_tokens_details = false;
  bool enable_server_load_tracking = false;
  bool disable_log_stats = false;
  bool disable_fastapi_docs = false;  // no /openapi.json, /docs, /redoc
  bool enable_log_requests = false;
  bool return_tokens_as_token_ids = false;
  int64_t max_model_len = 4096;
  int max_logprobs = 20;
  size_t max_request_body_bytes = 100u << 20;
  std::string response_role = "assistant";
  std::string reasoning_parser;  // "" or "qwen3", ...
  std::string tool_call_parser;  // "" or "qwen3_coder", ...
  bool enable_auto_tool_choice = false;
  bool exclude_tools_when_tool_choice_none = false;
  std::string reasoning_field = "both";  // reasoning | reasoning_content | both
  std::string chat_template;             // from --chat-template (text), "" = the model's
  bool trust_request_chat_template = false;
  nlohmann::json default_chat_template_kwargs = nlohmann::json::object();
  std::map<std::string, std::string> limit_mm_per_prompt_json;  // raw, for messages
  std::map<std::string, int64_t> limit_mm_per_prompt;           // modality -> max count
  // Request defaults (vLLM --generation-config auto + --override-generation-config): keys
  // temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens.
  nlohmann::json generation_defaults = nlohmann::json::object();
  std::vector<int32_t> eos_token_ids;
  int64_t vocab_size = 0;  // for logit_bias / allowed_token_ids / detokenize validation
  double log_stats_interval_s = 10.0;
  int http_threads = 0;  // 0: derived from max_num_seqs
  int keep_alive_s = 5;
};

}  // namespace ds::server
