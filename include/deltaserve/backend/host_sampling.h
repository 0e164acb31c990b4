// The reference sampler on host memory (kernels/cpu/sampling.cpp) in backend types: what the CPU
// backends' sample / target_logprobs ops run per row, and what a model that produces host logits
// (the scripted test model) uses to finish a step the same way.
#pragma once

#include "deltaserve/backend/backend.h"

namespace ds::backend {

// Copies the row, applies the row's logits processors, samples, and adds the raw row's logprobs
// when row.logprobs >= 0.
void sample_host_row(const float* logits, int64_t V, const SamplingRow& row, SampleResult* out);
// The reference sampler's steps on one host row (kernels/cpu/sampling.cpp), for tests and tools.
void apply_logits_processors(float* logits, int64_t V, const SamplingRow& row);
void sampling_distribution(const float* logits, int64_t V, const SamplingRow& row, double* probs);
int32_t sample_processed(const float* logits, int64_t V, const SamplingRow& row);
// The raw row's logprob and rank of `target`, plus the top k.
PositionLogprobs host_logprobs(const float* logits, int64_t V, int32_t target, int k);

}  // namespace ds::backend
