// Parsing and validation of /v1/chat/completions and /v1/completions bodies into one GenRequest,
// with vLLM's rules: unknown fields ignored, vLLM's extra sampling fields, generation_config
// defaults for fields the request leaves out, and vLLM's error texts (including "maximum context
// length"). Response JSON builders for both endpoints live in responses.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deltaserve/engine/sampling_params.h"
#include "deltaserve/server/errors.h"
#include "deltaserve/server/server_config.h"

namespace ds::server {

struct GenRequest {
  bool chat = true;
  std::string model_name;  // the served name to echo
  nlohmann::json body;     // the parsed body (messages, tools, ... for rendering)
  // /v1/completions: one entry per prompt (a list of prompts makes several choices groups).
  std::vector<std::string> prompt_texts;
  std::vector<std::vector<int32_t>> prompt_ids;  // when given as token ids
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage_stats = false;
  std::optional<int64_t> max_tokens;  // max_completion_tokens wins over max_tokens
  engine::SamplingParams params;      // max_tokens / eos resolved by finalize_for_prompt
  bool chat_logprobs = false;
  int top_logprobs = 0;
  std::optional<int> completion_logprobs;
  std::optional<int> prompt_logprobs;
  bool echo = false;
  bool include_reasoning = true;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool add_special_tokens = false;
  nlohmann::json chat_template_kwargs = nlohmann::json::object();  // merged over the defaults
  bool return_token_ids = false;
  bool return_tokens_as_token_ids = false;
  std::optional<std::string> request_id;  // body "request_id"
  std::optional<int64_t> truncate_prompt_tokens;  // keep the last k prompt tokens (-1: max_model_len)
};

// Validates the body and resolves `model`. Errors carry vLLM's status and message.
std::optional<ApiError> parse_gen_request(const nlohmann::json& body, bool chat, const ServerConfig& cfg,
                                          GenRequest* out);

// Given the prompt length: default max_tokens (chat: max_model_len - prompt, capped by
// generation_config max_new_tokens; completions: 16), the context-length check, EOS ids.
std::optional<ApiError> finalize_for_prompt(GenRequest* req, int64_t prompt_len, const ServerConfig& cfg,
                                            engine::SamplingParams* out);

// Resolves the `model` field: empty/null -> first served name; unknown -> 404.
std::optional<ApiError> resolve_model_name(const nlohmann::json& body, const ServerConfig& cfg, std::string* out);

}  // namespace ds::server
