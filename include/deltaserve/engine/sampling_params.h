// Per-request sampling and stopping parameters, already validated and resolved against the model's
// generation_config defaults by the server. The engine copies them into the request and never
// reads request JSON.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ds::engine {

struct SamplingParams {
  double temperature = 1.0;  // < 1e-5: greedy (vLLM's threshold)
  double top_p = 1.0;
  int64_t top_k = 0;         // 0 or -1: off
  double min_p = 0.0;
  double repetition_penalty = 1.0;  // prompt + output tokens
  double presence_penalty = 0.0;    // output tokens
  double frequency_penalty = 0.0;   // output tokens
  std::map<int32_t, float> logit_bias;
  std::vector<int32_t> allowed_token_ids;  // empty: all
  std::optional<uint64_t> seed;            // per-request RNG; none: drawn from the engine seed

  int64_t max_tokens = 16;  // already resolved (vLLM: max_model_len - prompt_len by default)
  int64_t min_tokens = 0;
  bool ignore_eos = false;
  std::vector<int32_t> eos_token_ids;   // from generation_config / tokenizer
  std::vector<int32_t> stop_token_ids;  // finish with stop_reason = the id
  std::vector<std::string> stop;        // stop strings, matched across token boundaries
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;

  int logprobs = -1;         // -1: none; k >= 0: sampled token + top-k (raw model logprobs)
  int prompt_logprobs = -1;  // -1: none; k >= 0: per prompt token + top-k

  bool greedy() const { return temperature < 1e-5; }
};

}  // namespace ds::engine
