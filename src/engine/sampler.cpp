#include "deltaserve/engine/sampler.h"

#include "deltaserve/backend/host_sampling.h"

namespace ds::engine {

namespace {
uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(&x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void prepare_sampling_row(const SamplingParams& p, const std::vector<int32_t>& prompt,
                          const std::vector<int32_t>& output, Rng* rng, RowSampler* out) {
  backend::SamplingRow& r = out->row;
  r = {};
  r.temperature = p.temperature;
  r.top_p = p.top_p;
  r.top_k = p.top_k;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.allowed_ids = p.allowed_token_ids.data();
  r.n_allowed = static_cast<int64_t>(p.allowed_token_ids.size());
  out->bias_ids.clear();
  out->bias_values.clear();
  for (const auto& [t, bias] : p.logit_bias) {
    out->bias_ids.push_back(t);
    out->bias_values.push_back(bias);
  }
  r.bias_ids = out->bias_ids.data();
  r.bias_values = out->bias_values.data();
  r.n_bias = static_cast<int64_t>(out->bias_ids.size());
  // min_tokens: stop ids, then EOS (unless ignored), masked until enough tokens were generated.
  out->masked_ids.clear();
  if (static_cast<int64_t>(output.size()) < p.min_tokens) {
    out->masked_ids.insert(out->masked_ids.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
    if (!p.ignore_eos) out->masked_ids.insert(out->masked_ids.end(), p.eos_token_ids.begin(), p.eos_token_ids.end());
  }
  r.masked_ids = out->masked_ids.data();
  r.n_masked = static_cast<int64_t>(out->masked_ids.size());
  r.prompt_ids = prompt.data();
  r.n_prompt = static_cast<int64_t>(prompt.size());
  r.output_ids = output.data();
  r.n_output = static_cast<int64_t>(output.size());
  r.uniform = p.greedy() ? 0.0 : rng->uniform();
  r.logprobs = p.logprobs;
}

void apply_logits_processors(std::span<float> logits, const SamplingParams& p,
                             const std::vector<int32_t>& prompt, const std::vector<int32_t>& output) {
  RowSampler rs;
  Rng unused(0);
  SamplingParams greedy = p;
  greedy.temperature = 0.0;  // no draw needed to process
  prepare_sampling_row(greedy, prompt, output, &unused, &rs);
  backend::apply_logits_processors(logits.data(), static_cast<int64_t>(logits.size()), rs.row);
}

std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingParams& p) {
  RowSampler rs;
  Rng unused(0);
  prepare_sampling_row(p, {}, {}, &unused, &rs);
  std::vector<double> probs(logits.size());
  backend::sampling_distribution(logits.data(), static_cast<int64_t>(logits.size()), rs.row, probs.data());
  return probs;
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, Rng* rng) {
  RowSampler rs;
  prepare_sampling_row(p, {}, {}, rng, &rs);
  return backend::sample_processed(logits.data(), static_cast<int64_t>(logits.size()), rs.row);
}

PositionLogprobs compute_logprobs(std::span<const float> raw, int32_t chosen, int k) {
  if (raw.empty()) return {};
  return backend::host_logprobs(raw.data(), static_cast<int64_t>(raw.size()), chosen, k);
}

}  // namespace ds::engine
