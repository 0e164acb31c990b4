// A tiny offline sequence runner over any Model: a trivial KV-block / state-slot allocator, chunked
// prefill, greedy or temperature sampling, and sliding-window perplexity. It backs the `generate`
// and `ppl` commands and the fixture tests; the serving engine has its own scheduler and pools.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "deltaserve/model/step_plan.h"

namespace ds::model {

// Cache sizes for `max_seqs` sequences of up to `max_len` tokens.
CacheConfig runner_cache_config(int64_t max_len, int max_seqs = 1, int block_size = 16);

class SequenceRunner {
 public:
  explicit SequenceRunner(Model& model) : model_(model) {}

  // Starts a sequence (state slot + blocks allocated on demand); returns its handle.
  Result<int> start();
  void release(int seq);
  int64_t length(int seq) const { return seqs_[static_cast<size_t>(seq)].len; }

  // Feeds tokens in steps of at most max_chunk. Returns logits [rows][vocab]: every fed token when
  // all_logits, else only the last one. on_step(tokens_in_step) is called after each forward.
  Result<std::vector<float>> feed(int seq, const std::vector<int32_t>& ids, bool all_logits, int64_t max_chunk,
                                  const std::function<void(int64_t)>& on_step = {});

 private:
  struct Seq {
    bool live = false;
    int slot = -1;
    int64_t len = 0;
    std::vector<int32_t> blocks;
  };
  Status grow(Seq& s, int64_t new_len);

  Model& model_;
  std::vector<Seq> seqs_;
  std::vector<int32_t> free_blocks_;
  bool blocks_init_ = false;
};

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (ties -> lowest id)
  int64_t top_k = 0;         // 0: all
  double top_p = 1.0;
  uint64_t seed = 0;
};

// Picks a token from one logits row.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& opt, uint64_t* rng_state);

struct GenerateResult {
  std::vector<int32_t> tokens;
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t prompt_tokens = 0;
};

// Prefills `prompt` (chunks of prefill_chunk), then samples n tokens one at a time; stops early on
// any of stop_ids. on_token(token) streams each new token.
Result<GenerateResult> generate(Model& model, const std::vector<int32_t>& prompt, int64_t n,
                                const SamplingOptions& opt, const std::vector<int64_t>& stop_ids,
                                int64_t prefill_chunk, const std::function<void(int32_t)>& on_token = {});

struct PplResult {
  double nll_sum = 0;
  int64_t n_scored = 0;
  int64_t windows = 0;
  double ppl() const;
};

// Sliding-window perplexity as HF measures it: windows begin at 0, stride, 2*stride, ...; each
// covers [begin, min(begin + ctx, N)) and scores the targets after the previous window's end (the
// first window scores every position after its first token). nll in natural log, fp64 log-softmax.
Result<PplResult> perplexity(Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride,
                             int64_t chunk, const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace ds::model
