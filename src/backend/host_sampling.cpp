#include "deltaserve/backend/host_sampling.h"

#include <vector>

#include "deltaserve/kernels/cpu.h"

namespace ds::backend {

void apply_logits_processors(float* logits, int64_t V, const SamplingRow& row) {
  kernels::apply_logits_processors(logits, V, row);
}
void sampling_distribution(const float* logits, int64_t V, const SamplingRow& row, double* probs) {
  kernels::sampling_distribution(logits, V, row, probs);
}
int32_t sample_processed(const float* logits, int64_t V, const SamplingRow& row) {
  return kernels::sample_token(logits, V, row);
}

PositionLogprobs host_logprobs(const float* logits, int64_t V, int32_t target, int k) {
  PositionLogprobs out;
  kernels::LogprobEntry chosen;
  std::vector<kernels::LogprobEntry> top(static_cast<size_t>(std::max(k, 0)));
  const int n = kernels::compute_logprobs(logits, V, target, k, &chosen, top.data());
  out.chosen = {chosen.token_id, chosen.logprob, chosen.rank};
  for (int i = 0; i < n; ++i) out.top.push_back({top[static_cast<size_t>(i)].token_id, top[static_cast<size_t>(i)].logprob, top[static_cast<size_t>(i)].rank});
  return out;
}

void sample_host_row(const float* logits, int64_t V, const SamplingRow& row, SampleResult* out) {
  std::vector<float> processed(logits, logits + V);
  kernels::apply_logits_processors(processed.data(), V, row);
  out->token = kernels::sample_token(processed.data(), V, row);
  if (row.logprobs >= 0) out->logprobs = host_logprobs(logits, V, out->token, row.logprobs);
  else out->logprobs.reset();
}

}  // namespace ds::backend
