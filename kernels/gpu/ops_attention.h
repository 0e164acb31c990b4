// Paged attention on the device (kernels/gpu/attention.cu): the KV-cache append, the varlen causal
// prefill kernel, and the split-K decode kernel with its combine. Launchers take raw device
// pointers; they never allocate or synchronise (the caller checks the launch).
#pragma once

#include <cstddef>
#include <cstdint>

#include "deltaserve/core/dtype.h"
#include "kernels/gpu/launch.h"

namespace ds::gpu {

constexpr int kAttnMaxHeadDim = 256;
constexpr int kAttnMaxGroup = 8;  // query heads one decode CTA computes against each K/V row it loads
// Decode splits: enough CTAs to fill a large GPU, never fewer keys per split than this.
constexpr int kAttnDecodeTargetCtas = 1024;
constexpr int kAttnDecodeMinKeysPerSplit = 256;

// One step's paged attention. q, out: [T][heads*head_dim] rows of the activation dtype, q_ld /
// out_ld elements apart; caches: [num_blocks][block_size][kv_heads][head_dim] of the same dtype.
// Sequence s owns token rows cu_seqlens[s]..cu_seqlens[s+1] at positions start_pos[s]..; position
// p lives in block block_tables[s*blocks_per_seq + p/block_size], row p%block_size.
struct PagedAttention {
  const void* q = nullptr;
  int64_t q_ld = 0;
  void* out = nullptr;
  int64_t out_ld = 0;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const int32_t* cu_seqlens = nullptr;
  const int64_t* start_pos = nullptr;
  const int32_t* block_tables = nullptr;
  int blocks_per_seq = 0, block_size = 0, num_seqs = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
};

// Writes token row t's k and v rows ([kv_heads*head_dim], k_ld / v_ld apart) into the caches at
// its sequence's position (token_seq[t]: the row's sequence).
void attention_kv_append(const PagedAttention& p, const void* k, int64_t k_ld, const void* v, int64_t v_ld,
                         void* k_cache, void* v_cache, const int32_t* token_seq, int64_t num_tokens, DType dtype,
                         Stream stream);

// Every new token of every sequence (any mix of prefill and decode); max_new_tokens sizes the grid.
void attention_prefill(const PagedAttention& p, int64_t max_new_tokens, DType dtype, Stream stream);

// Query heads one decode CTA handles: the largest divisor of heads/kv_heads up to kAttnMaxGroup.
int attention_decode_group(int heads, int kv_heads);
// Context splits for a decode step (deterministic in its arguments): 1 unless the step has too
// few (sequence, head group) pairs to fill the GPU; the partials must fit in scratch_bytes.
int attention_decode_splits(int num_seqs, int heads, int kv_heads, int head_dim, int64_t max_context,
                            size_t scratch_bytes);
size_t attention_decode_partials_bytes(int num_seqs, int heads, int head_dim, int splits);

// Every sequence has exactly one new token. splits > 1 writes fp32 partials (max, sum, output per
// split) to `partials` and merges them in a second kernel.
void attention_decode(const PagedAttention& p, int splits, float* partials, DType dtype, Stream stream);

}  // namespace ds::gpu
