// The contract between the scheduler and the model runtime (DESIGN.md §3 "Step plan"): one forward
// call runs several sequences, each with its own number of new tokens (a prefill chunk, one decode
// token, or speculative drafts — all the same thing), positions, KV block table and GDN state slot.
// Results must not depend on how sequences are batched or chunked.
#pragma once

#include <cstdint>
#include <vector>

#include "deltaserve/core/status.h"

namespace ds::model {

// Sizes of the two cache pools the runtime allocates at start-up. The scheduler sees these
// capacities and hands out ids; it never touches bytes.
struct CacheConfig {
  int block_size = 16;      // tokens per KV block (attention layers only)
  int num_kv_blocks = 0;    // paged KV blocks per attention layer
  int num_state_slots = 0;  // GDN state slots (conv state + fp32 SSM state), one per running sequence
};

struct SeqStep {
  int64_t seq_id = 0;
  std::vector<int32_t> token_ids;    // the new tokens this step
  int64_t start_pos = 0;             // tokens of this sequence already in the cache
  std::vector<int32_t> block_table;  // KV block ids covering positions [0, start_pos + token_ids.size())
  int32_t state_slot = -1;           // GDN state slot; zeroed by the runtime when start_pos == 0
  bool all_logits = false;           // logits for every new token (prompt logprobs, ppl), else the last
  // Optional M-RoPE positions [n_new_tokens][3] (t, h, w) for multimodal prompts (qwen35-arch.md §5);
  // empty: text, every row = start_pos + i.
  std::vector<int64_t> mrope_positions;
  int64_t num_prompt_tokens = 0;     // informational (the scripted test model reads it); runtimes ignore it
};

struct StepPlan {
  std::vector<SeqStep> seqs;
};

struct StepOutput {
  int64_t vocab_size = 0;
  std::vector<float> logits;         // row-major [rows, vocab_size]
  std::vector<int64_t> row_offset;   // per seq: index of its first logits row; rows follow in order
};

// Implemented by each runtime (CPU now; CUDA/HIP later). forward() is called from one thread.
class Model {
 public:
  virtual ~Model() = default;
  virtual const CacheConfig& cache_config() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual Result<StepOutput> forward(const StepPlan& plan) = 0;
};

}  // namespace ds::model
