// A request's sampling as the backend's sample op needs it: SamplingParams + token history + the
// next draw of the request's own RNG become one plain SamplingRow (so the same seed gives the same
// tokens whatever else is in the batch). The math itself is the backend's reference sampler
// (kernels/cpu/sampling.cpp, vLLM V1's order); the host functions below run it on one row for
// tests and tools. Logprobs are of the raw model distribution (vLLM's default).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/engine/request.h"
#include "deltaserve/engine/sampling_params.h"

namespace ds::engine {

// xoshiro256** seeded by splitmix64: small, fast, identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

// One sampled row: the plain SamplingRow plus the arrays it points into (the token histories stay
// the caller's and must outlive the step).
struct RowSampler {
  std::vector<int32_t> bias_ids, masked_ids;
  std::vector<float> bias_values;
  backend::SamplingRow row;
};
// Fills `out` for the next token of a request: its params, its history, the min_tokens mask and,
// unless greedy, the next draw of its RNG.
void prepare_sampling_row(const SamplingParams& p, const std::vector<int32_t>& prompt,
                          const std::vector<int32_t>& output, Rng* rng, RowSampler* out);

// Applies allowed_token_ids, logit_bias, the min_tokens mask (EOS + stop ids -> -inf while fewer
// than min_tokens were generated) and the penalties, in place.
void apply_logits_processors(std::span<float> logits, const SamplingParams& p,
                             const std::vector<int32_t>& prompt, const std::vector<int32_t>& output);

// The distribution actually sampled from (after temperature, min_p, top_k, top_p), renormalised.
// For greedy params it is one-hot on the argmax. Exposed for tests.
std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingParams& p);

// Processed logits in, token out. Greedy ties go to the lowest id.
int32_t sample_token(std::span<const float> logits, const SamplingParams& p, Rng* rng);

// log_softmax of raw logits: the chosen token's logprob and rank plus the top-k (k may be 0).
PositionLogprobs compute_logprobs(std::span<const float> raw_logits, int32_t chosen, int k);

}  // namespace ds::engine
