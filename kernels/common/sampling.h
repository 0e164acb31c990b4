// One row's sampling parameters as plain data, shared by every backend's sample op (host and device):
// the engine fills one per sequence that samples this step, with the request's RNG draw already
// taken, so a backend needs no RNG state and a token depends only on its own row.
#pragma once

#include <cstdint>

namespace ds::kernels {

struct SamplingRow {
  double temperature = 1.0;  // < 1e-5: greedy (vLLM's threshold)
  double top_p = 1.0;
  int64_t top_k = 0;  // <= 0: off
  double min_p = 0.0;
  double repetition_penalty = 1.0;  // over prompt + output ids
  double presence_penalty = 0.0;    // over output ids
  double frequency_penalty = 0.0;   // over output ids
  const int32_t* allowed_ids = nullptr;  // n_allowed == 0: every id allowed
  int64_t n_allowed = 0;
  const int32_t* bias_ids = nullptr;  // logit_bias, applied after the allowed-ids mask
  const float* bias_values = nullptr;
  int64_t n_bias = 0;
  const int32_t* masked_ids = nullptr;  // forced to -inf (min_tokens: EOS and stop ids)
  int64_t n_masked = 0;
  const int32_t* prompt_ids = nullptr;  // penalty history
  int64_t n_prompt = 0;
  const int32_t* output_ids = nullptr;
  int64_t n_output = 0;
  double uniform = 0.0;  // the request's draw in [0, 1) for this token (ignored when greedy)
  int logprobs = -1;     // -1: none; k >= 0: the chosen token's logprob and rank + the top k

  bool greedy() const { return temperature < 1e-5; }
};

}  // namespace ds::kernels
