// Launchers of the device sampler (sampling.cu): one block per logits row (fp32, up to 262,144
// wide). The semantics are kernels/cpu/sampling.cpp's, step for step: logits processors (allowed
// ids, logit bias, masked ids, repetition / frequency / presence penalties), then greedy argmax or
// temperature softmax -> min_p -> top_k -> top_p -> the inverse CDF over the kept distribution in
// id order at the row's pre-drawn uniform; logprobs of the raw row. Ties: the lower id wins.
// top_k / top_p cut with a threshold select (bisection over the order-preserving bits of the
// processed logit, then over ids among equal values) with deterministic block reductions: no sort
// and no float atomics, so a row's result never depends on the schedule.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ds::gpu {

using Stream = void*;  // as kernels/gpu/launch.h

constexpr int64_t kSampleMaxVocab = 262144;
constexpr int kMaxTopLogprobs = 64;  // larger requests are answered on the host

// One row's sampling parameters with its processor lists as offsets into the batch's pools
// (pool_ids, and pool_vals at the same offsets for bias values and penalty deltas).
struct SampleDesc {
  double temperature = 1.0, top_p = 1.0, min_p = 0.0, uniform = 0.0;
  int64_t top_k = 0;
  int64_t allowed_off = 0, n_allowed = 0;
  int64_t bias_off = 0, n_bias = 0;     // in list order (a repeated id adds twice)
  int64_t masked_off = 0, n_masked = 0;
  int64_t rep_off = 0, n_rep = 0;       // distinct ids of prompt + output (repetition penalty)
  int64_t pen_off = 0, n_pen = 0;       // distinct output ids, vals = frequency * count + presence
  float repetition_penalty = 1.0f;
  int32_t greedy = 0;
};

// The logprobs of one row: the target's logprob and rank (1 = most likely) and the top k.
struct LogprobOut {
  float logprob = 0.0f;
  int32_t pad = 0;
  int64_t rank = 0;
  int32_t top_ids[kMaxTopLogprobs];
  float top_logprobs[kMaxTopLogprobs];
};

// Bytes of per-row work: processed logits (fp32), selection keys (u32), probabilities (fp64).
constexpr int64_t kSampleWorkBytesPerId = 16;
inline size_t sample_row_work_bytes(int64_t V) { return static_cast<size_t>(V * kSampleWorkBytesPerId); }

// tokens[r] for each of `rows` rows of logits [rows][ld] (V wide); work: rows * sample_row_work_bytes(V).
void sample_rows(const float* logits, int64_t ld, int64_t rows, int64_t V, const SampleDesc* desc,
                 const int32_t* pool_ids, const float* pool_vals, void* work, int32_t* tokens, Stream stream);

// For each row with targets[r] >= 0: out[r] = logprob and rank of targets[r] and the top
// min(k[r], kMaxTopLogprobs, V) alternatives of the raw row (k[r] < 0: none).
void logprob_rows(const float* logits, int64_t ld, int64_t rows, int64_t V, const int32_t* targets, const int32_t* k,
                  LogprobOut* out, Stream stream);

}  // namespace ds::gpu
