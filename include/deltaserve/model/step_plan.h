// The contract between the scheduler and the model runtime (DESIGN.md §3 "Step plan"): one forward
// call runs several sequences, each with its own number of new tokens (a prefill chunk, one decode
// token, or speculative drafts — all the same thing), positions, KV block table and GDN state slot.
// Results must not depend on how sequences are batched or chunked.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "deltaserve/backend/backend.h"
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
  bool all_logits = false;           // a logits row for every new token, else only for the last one
  bool return_logits = false;        // copy this sequence's logits rows to the host (tests, debugging)
  // Logprob of a known next token per new token (prompt logprobs, perplexity): logprob_targets[i]
  // is the token after new token i, or -1; with the top `target_top_k` alternatives. Needs all_logits.
  std::vector<int32_t> logprob_targets;
  int target_top_k = 0;
  // Sample the next token from the last row on the device (pointers must outlive forward()).
  std::optional<backend::SamplingRow> sampling;
  // Optional M-RoPE positions [n_new_tokens][3] (t, h, w) for multimodal prompts (qwen35-arch.md §5);
  // empty: text, every row = start_pos + i.
  std::vector<int64_t> mrope_positions;
  int64_t num_prompt_tokens = 0;     // informational (the scripted test model reads it); runtimes ignore it
};

struct StepPlan {
  std::vector<SeqStep> seqs;
};

// Only what crosses to the host: sampled ids (+ requested logprobs), target logprobs, and logits
// rows when a sequence asked for them.
struct StepOutput {
  int64_t vocab_size = 0;
  std::vector<float> logits;         // return_logits rows, row-major [rows, vocab_size]
  std::vector<int64_t> row_offset;   // per seq: index of its first row in `logits`; rows follow in order
  std::vector<backend::SampleResult> sampled;  // per seq; token -1 when it did not sample
  std::vector<std::vector<backend::PositionLogprobs>> target_logprobs;  // per seq: one per new token
};

// Implemented by the Qwen3.5 graph over any backend (and a scripted model in tests). forward() is
// called from one thread.
class Model {
 public:
  virtual ~Model() = default;
  virtual const CacheConfig& cache_config() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual Result<StepOutput> forward(const StepPlan& plan) = 0;
  // False once the model can no longer run steps (a tensor-parallel rank died or hung): the
  // engine reports itself dead and /health answers 503.
  virtual bool healthy() const { return true; }
};

}  // namespace ds::model

namespace ds::model {

// For a model that computes its logits on the host (the scripted test model): given out.logits laid
// out as every sequence's rows (all new tokens when all_logits, else the last) and row_offset,
// fills out.sampled and out.target_logprobs with the reference sampler, as a backend would.
void finish_step_on_host(const StepPlan& plan, StepOutput* out);

}  // namespace ds::model
