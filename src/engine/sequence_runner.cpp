// SequenceRunner, generate and perplexity over the Model interface with the engine's pools and sampler.
#include "deltaserve/engine/sequence_runner.h"

#include <algorithm>
#include <cmath>

#include "deltaserve/core/timer.h"

namespace ds::engine {

model::CacheConfig runner_cache_config(int64_t max_len, int max_seqs, int block_size) {
  model::CacheConfig c;
  c.block_size = block_size;
  c.num_kv_blocks = static_cast<int>((max_len + block_size - 1) / block_size) * max_seqs + 1;
  c.num_state_slots = max_seqs;
  return c;
}

SequenceRunner::SequenceRunner(model::Model& model)
    : model_(model),
      kv_(model.cache_config().num_kv_blocks, model.cache_config().block_size),
      slots_(model.cache_config().num_state_slots) {}

Result<int> SequenceRunner::start() {
  const int32_t slot = slots_.acquire();
  if (slot < 0) return resource_exhausted("no free GDN state slot (" + std::to_string(slots_.num_slots()) + " in use)");
  Seq s;
  s.live = true;
  s.slot = slot;
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].live) {
      seqs_[i] = s;
      return static_cast<int>(i);
    }
  seqs_.push_back(s);
  return static_cast<int>(seqs_.size() - 1);
}

void SequenceRunner::release(int seq) {
  Seq& s = seqs_[static_cast<size_t>(seq)];
  kv_.release(&s.blocks);
  slots_.release(s.slot);
  s = Seq{};
}

Result<model::StepOutput> SequenceRunner::step(Seq& s, model::SeqStep st) {
  const int64_t new_len = s.len + static_cast<int64_t>(st.token_ids.size());
  if (!kv_.grow_to(&s.blocks, new_len))
    return resource_exhausted("KV cache full: " + std::to_string(new_len) + " tokens do not fit (raise --max-model-len)");
  st.start_pos = s.len;
  st.block_table = s.blocks;
  st.state_slot = s.slot;
  model::StepPlan plan;
  plan.seqs.push_back(std::move(st));
  DS_ASSIGN_OR_RETURN(model::StepOutput out, model_.forward(plan));
  s.len = new_len;
  return out;
}

Result<std::vector<float>> SequenceRunner::feed(int seq, const std::vector<int32_t>& ids, bool all_logits,
                                                int64_t max_chunk) {
  Seq& s = seqs_[static_cast<size_t>(seq)];
  std::vector<float> logits;
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t b = 0; b < n; b += max_chunk) {
    const int64_t m = std::min(max_chunk, n - b);
    model::SeqStep st;
    st.seq_id = seq;
    st.token_ids.assign(ids.begin() + b, ids.begin() + b + m);
    st.all_logits = all_logits;
    st.return_logits = all_logits || b + m == n;
    DS_ASSIGN_OR_RETURN(model::StepOutput out, step(s, std::move(st)));
    if (all_logits) logits.insert(logits.end(), out.logits.begin(), out.logits.end());
    else if (b + m == n) logits = std::move(out.logits);
  }
  return logits;
}

Result<backend::SampleResult> SequenceRunner::feed_and_sample(int seq, const std::vector<int32_t>& ids,
                                                              int64_t max_chunk, const backend::SamplingRow& sampler) {
  Seq& s = seqs_[static_cast<size_t>(seq)];
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0) return invalid_argument("nothing to feed");
  backend::SampleResult res;
  for (int64_t b = 0; b < n; b += max_chunk) {
    const int64_t m = std::min(max_chunk, n - b);
    model::SeqStep st;
    st.seq_id = seq;
    st.token_ids.assign(ids.begin() + b, ids.begin() + b + m);
    if (b + m == n) st.sampling = sampler;
    DS_ASSIGN_OR_RETURN(model::StepOutput out, step(s, std::move(st)));
    if (b + m == n) res = std::move(out.sampled.at(0));
  }
  return res;
}

Result<std::vector<double>> SequenceRunner::feed_scored(int seq, const std::vector<int32_t>& ids,
                                                        const std::vector<int32_t>& targets, int64_t max_chunk) {
  Seq& s = seqs_[static_cast<size_t>(seq)];
  const int64_t n = static_cast<int64_t>(ids.size());
  if (static_cast<int64_t>(targets.size()) != n) return invalid_argument("one target per fed token");
  std::vector<double> lp;
  for (int64_t b = 0; b < n; b += max_chunk) {
    const int64_t m = std::min(max_chunk, n - b);
    model::SeqStep st;
    st.seq_id = seq;
    st.token_ids.assign(ids.begin() + b, ids.begin() + b + m);
    if (std::any_of(targets.begin() + b, targets.begin() + b + m, [](int32_t t) { return t >= 0; })) {
      st.all_logits = true;
      st.logprob_targets.assign(targets.begin() + b, targets.begin() + b + m);
    }
    DS_ASSIGN_OR_RETURN(model::StepOutput out, step(s, std::move(st)));
    for (int64_t i = 0; i < m; ++i)
      if (targets[static_cast<size_t>(b + i)] >= 0) lp.push_back(out.target_logprobs.at(0).at(static_cast<size_t>(i)).chosen.logprob);
  }
  return lp;
}

Result<GenerateResult> generate(model::Model& model, const std::vector<int32_t>& prompt, int64_t n,
                                const SamplingParams& params, const std::vector<int64_t>& stop_ids,
                                int64_t prefill_chunk, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) return invalid_argument("empty prompt");
  SequenceRunner runner(model);
  DS_ASSIGN_OR_RETURN(int seq, runner.start());
  GenerateResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  Rng rng(params.seed.value_or(0));
  RowSampler sampler;
  prepare_sampling_row(params, prompt, res.tokens, &rng, &sampler);
  Timer timer;
  DS_ASSIGN_OR_RETURN(backend::SampleResult next, runner.feed_and_sample(seq, prompt, prefill_chunk, sampler.row));
  res.prefill_seconds = timer.seconds();
  timer.reset();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = next.token;
    res.tokens.push_back(tok);
    if (on_token) on_token(tok);
    if (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end() || i + 1 == n) break;
    prepare_sampling_row(params, prompt, res.tokens, &rng, &sampler);
    DS_ASSIGN_OR_RETURN(next, runner.feed_and_sample(seq, {tok}, 1, sampler.row));
  }
  res.decode_seconds = timer.seconds();
  runner.release(seq);
  return res;
}

double PplResult::ppl() const { return n_scored > 0 ? std::exp(nll_sum / static_cast<double>(n_scored)) : 0.0; }

Result<PplResult> perplexity(model::Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride,
                             int64_t chunk, const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t N = static_cast<int64_t>(ids.size());
  if (N < 2) return invalid_argument("perplexity needs at least 2 tokens");
  if (ctx < 2 || stride < 1 || stride > ctx) return invalid_argument("need ctx >= 2 and 1 <= stride <= ctx");
  if (chunk < 1) return invalid_argument("need chunk >= 1");
  PplResult res;
  int64_t prev_end = 0, total_windows = 0;
  for (int64_t b = 0;; b += stride) {
    ++total_windows;
    if (std::min(b + ctx, N) == N) break;
  }
  for (int64_t begin = 0; begin < N; begin += stride) {
    const int64_t end = std::min(begin + ctx, N);
    const int64_t first = std::max<int64_t>(1, (end - begin) - (end - prev_end));  // first scored index in window
    SequenceRunner runner(model);
    DS_ASSIGN_OR_RETURN(int seq, runner.start());
    // Token i of the window predicts token i + 1: score the inputs [first-1, end-begin-1), feed the
    // prefix before them unscored.
    const std::vector<int32_t> win(ids.begin() + begin, ids.begin() + end);
    const int64_t pre = first - 1;
    if (pre > 0) {
      DS_RETURN_IF_ERROR(runner.feed_scored(seq, std::vector<int32_t>(win.begin(), win.begin() + pre),
                                            std::vector<int32_t>(static_cast<size_t>(pre), -1), chunk)
                             .status());
    }
    const std::vector<int32_t> inputs(win.begin() + pre, win.end() - 1), targets(win.begin() + first, win.end());
    DS_ASSIGN_OR_RETURN(std::vector<double> lp, runner.feed_scored(seq, inputs, targets, chunk));
    for (double x : lp) res.nll_sum -= x;
    res.n_scored += static_cast<int64_t>(lp.size());
    runner.release(seq);
    ++res.windows;
    if (progress) progress(res.windows, total_windows);
    prev_end = end;
    if (end == N) break;
  }
  return res;
}

}  // namespace ds::engine
