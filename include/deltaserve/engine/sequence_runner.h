// Offline sequences over any Model with the engine's own pieces: KV blocks and GDN slots from the
// engine's pools, tokens from the backend's sample op with the engine's RowSampler, scores from its
// target-logprob op. It backs `generate`, `ppl`, the fixture tests and the decode benchmark; the
// server runs the full Engine instead.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/engine/sampler.h"
#include "deltaserve/engine/sampling_params.h"
#include "deltaserve/model/step_plan.h"

namespace ds::engine {

// Cache sizes for `max_seqs` sequences of up to `max_len` tokens.
model::CacheConfig runner_cache_config(int64_t max_len, int max_seqs = 1, int block_size = 16);

class SequenceRunner {
 public:
  explicit SequenceRunner(model::Model& model);

  // Starts a sequence (state slot now, blocks on demand); returns its handle.
  Result<int> start();
  void release(int seq);
  int64_t length(int seq) const { return seqs_[static_cast<size_t>(seq)].len; }

  // Feeds tokens in steps of at most max_chunk and returns their logits [rows][vocab] on the host:
  // every fed token when all_logits, else only the last one (tests and debugging).
  Result<std::vector<float>> feed(int seq, const std::vector<int32_t>& ids, bool all_logits, int64_t max_chunk);
  // Feeds tokens and samples the next one from the last row with `sampler` (already prepared).
  Result<backend::SampleResult> feed_and_sample(int seq, const std::vector<int32_t>& ids, int64_t max_chunk,
                                                const backend::SamplingRow& sampler);
  // Feeds tokens; returns logprob(targets[i] | tokens up to ids[i]) for each i with targets[i] >= 0.
  Result<std::vector<double>> feed_scored(int seq, const std::vector<int32_t>& ids,
                                          const std::vector<int32_t>& targets, int64_t max_chunk);

 private:
  struct Seq {
    bool live = false;
    int32_t slot = -1;
    int64_t len = 0;
    std::vector<int32_t> blocks;
  };
  // One step of `m` tokens of ids starting at b; the step's outputs as the model returns them.
  Result<model::StepOutput> step(Seq& s, model::SeqStep st);

  model::Model& model_;
  KvBlockPool kv_;
  StateSlotPool slots_;
  std::vector<Seq> seqs_;
};

struct GenerateResult {
  std::vector<int32_t> tokens;
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t prompt_tokens = 0;
};

// Prefills `prompt` (chunks of prefill_chunk), then samples up to n tokens one at a time with the
// request's params and RNG (seeded from params.seed, else 0); stops early on any of stop_ids.
// on_token(token) streams each new token.
Result<GenerateResult> generate(model::Model& model, const std::vector<int32_t>& prompt, int64_t n,
                                const SamplingParams& params, const std::vector<int64_t>& stop_ids,
                                int64_t prefill_chunk, const std::function<void(int32_t)>& on_token = {});

struct PplResult {
  double nll_sum = 0;
  int64_t n_scored = 0;
  int64_t windows = 0;
  double ppl() const;
};

// Sliding-window perplexity as HF measures it: windows begin at 0, stride, 2*stride, ...; each
// covers [begin, min(begin + ctx, N)) and scores the targets after the previous window's end (the
// first window scores every position after its first token). nll in natural log.
Result<PplResult> perplexity(model::Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride,
                             int64_t chunk, const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace ds::engine
