// SequenceRunner, sampling, generate and perplexity over the Model interface.
#include "deltaserve/model/runner.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "deltaserve/core/thread_pool.h"
#include "deltaserve/core/timer.h"

namespace ds::model {

CacheConfig runner_cache_config(int64_t max_len, int max_seqs, int block_size) {
  CacheConfig c;
  c.block_size = block_size;
  c.num_kv_blocks = static_cast<int>((max_len + block_size - 1) / block_size) * max_seqs + 1;
  c.num_state_slots = max_seqs;
  return c;
}

Result<int> SequenceRunner::start() {
  const CacheConfig& cc = model_.cache_config();
  if (!blocks_init_) {
    for (int b = cc.num_kv_blocks - 1; b >= 0; --b) free_blocks_.push_back(b);
    blocks_init_ = true;
  }
  std::vector<bool> used(static_cast<size_t>(cc.num_state_slots), false);
  for (const Seq& s : seqs_)
    if (s.live) used[static_cast<size_t>(s.slot)] = true;
  int slot = -1;
  for (int i = 0; i < cc.num_state_slots && slot < 0; ++i)
    if (!used[static_cast<size_t>(i)]) slot = i;
  if (slot < 0) return resource_exhausted("no free GDN state slot (" + std::to_string(cc.num_state_slots) + " in use)");
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
  free_blocks_.insert(free_blocks_.end(), s.blocks.rbegin(), s.blocks.rend());
  s = Seq{};
}

Status SequenceRunner::grow(Seq& s, int64_t new_len) {
  const int bs = model_.cache_config().block_size;
  while (static_cast<int64_t>(s.blocks.size()) * bs < new_len) {
    if (free_blocks_.empty())
      return resource_exhausted("KV cache full: " + std::to_string(new_len) + " tokens do not fit (raise --max-model-len)");
    s.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return Status::ok();
}

Result<std::vector<float>> SequenceRunner::feed(int seq, const std::vector<int32_t>& ids, bool all_logits,
                                                int64_t max_chunk, const std::function<void(int64_t)>& on_step) {
  Seq& s = seqs_[static_cast<size_t>(seq)];
  std::vector<float> logits;
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t b = 0; b < n; b += max_chunk) {
    const int64_t m = std::min(max_chunk, n - b);
    DS_RETURN_IF_ERROR(grow(s, s.len + m));
    StepPlan plan;
    SeqStep st;
    st.seq_id = seq;
    st.token_ids.assign(ids.begin() + b, ids.begin() + b + m);
    st.start_pos = s.len;
    st.block_table = s.blocks;
    st.state_slot = s.slot;
    st.all_logits = all_logits;
    plan.seqs.push_back(std::move(st));
    DS_ASSIGN_OR_RETURN(StepOutput out, model_.forward(plan));
    s.len += m;
    if (all_logits) logits.insert(logits.end(), out.logits.begin(), out.logits.end());
    else if (b + m == n) logits = std::move(out.logits);
    if (on_step) on_step(m);
  }
  return logits;
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& opt, uint64_t* rng) {
  if (opt.temperature <= 0.0) return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, vocab) : vocab;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::vector<double> p(static_cast<size_t>(k));
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += (p[static_cast<size_t>(i)] = std::exp((logits[idx[static_cast<size_t>(i)]] - logits[idx[0]]) / opt.temperature));
  int64_t keep = k;
  if (opt.top_p < 1.0) {
    double c = 0;
    for (int64_t i = 0; i < k; ++i) {
      c += p[static_cast<size_t>(i)] / sum;
      if (c >= opt.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[static_cast<size_t>(i)];
  // splitmix64
  uint64_t z = (*rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  double r = static_cast<double>(z >> 11) / 9007199254740992.0 * total;
  for (int64_t i = 0; i < keep; ++i) {
    r -= p[static_cast<size_t>(i)];
    if (r <= 0) return idx[static_cast<size_t>(i)];
  }
  return idx[static_cast<size_t>(keep - 1)];
}

Result<GenerateResult> generate(Model& model, const std::vector<int32_t>& prompt, int64_t n,
                                const SamplingOptions& opt, const std::vector<int64_t>& stop_ids,
                                int64_t prefill_chunk, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) return invalid_argument("empty prompt");
  SequenceRunner runner(model);
  DS_ASSIGN_OR_RETURN(int seq, runner.start());
  GenerateResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.size());
  uint64_t rng = opt.seed;
  Timer timer;
  DS_ASSIGN_OR_RETURN(std::vector<float> logits, runner.feed(seq, prompt, false, prefill_chunk));
  res.prefill_seconds = timer.seconds();
  timer.reset();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = sample_token(logits.data(), model.vocab_size(), opt, &rng);
    res.tokens.push_back(tok);
    if (on_token) on_token(tok);
    if (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end() || i + 1 == n) break;
    DS_ASSIGN_OR_RETURN(logits, runner.feed(seq, {tok}, false, 1));
  }
  res.decode_seconds = timer.seconds();
  runner.release(seq);
  return res;
}

double PplResult::ppl() const { return n_scored > 0 ? std::exp(nll_sum / static_cast<double>(n_scored)) : 0.0; }

Result<PplResult> perplexity(Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t stride, int64_t chunk,
                             const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t N = static_cast<int64_t>(ids.size());
  if (N < 2) return invalid_argument("perplexity needs at least 2 tokens");
  if (ctx < 2 || stride < 1 || stride > ctx) return invalid_argument("need ctx >= 2 and 1 <= stride <= ctx");
  const int64_t V = model.vocab_size();
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
    // Feed the unscored prefix without logits, then the scored part in chunks with every row's logits.
    const std::vector<int32_t> win(ids.begin() + begin, ids.begin() + end);
    const int64_t pre = first - 1;  // logits row i predicts token i + 1: rows [first-1, end-begin-1)
    if (pre > 0) {
      DS_RETURN_IF_ERROR(runner.feed(seq, std::vector<int32_t>(win.begin(), win.begin() + pre), false, chunk).status());
    }
    for (int64_t r = pre; r < end - begin - 1; r += chunk) {
      const int64_t m = std::min(chunk, end - begin - 1 - r);
      DS_ASSIGN_OR_RETURN(std::vector<float> lg,
                          runner.feed(seq, std::vector<int32_t>(win.begin() + r, win.begin() + r + m), true, chunk));
      // Log-softmax of each scored row (fp32 exp, fp64 sums), rows split over the cores.
      std::vector<double> nll(static_cast<size_t>(m));
      ThreadPool::global().parallel_for(m, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const float* row = lg.data() + i * V;
          const float mx = *std::max_element(row, row + V);
          double s = 0;
          for (int64_t v = 0; v < V; ++v) s += static_cast<double>(std::exp(row[v] - mx));
          const int32_t target = win[static_cast<size_t>(r + i + 1)];
          nll[static_cast<size_t>(i)] = -(static_cast<double>(row[target]) - mx - std::log(s));
        }
      });
      for (double x : nll) res.nll_sum += x;
      res.n_scored += m;
    }
    runner.release(seq);
    ++res.windows;
    if (progress) progress(res.windows, total_windows);
    prev_end = end;
    if (end == N) break;
  }
  return res;
}

}  // namespace ds::model
