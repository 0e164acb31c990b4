// GpuBackend's sample and target_logprobs: the rows' processor lists are packed on the host into
// one upload (distinct penalty ids with their deltas precomputed as the CPU computes them), the
// kernels of kernels/gpu/sampling.cu run per batch of rows, and only token ids and the requested
// logprobs come back. A request for more than kMaxTopLogprobs alternatives is answered on the
// host from that one row (vLLM's --max-logprobs is 20 by default).
#include <algorithm>
#include <string>
#include <vector>

#include "deltaserve/backend/host_sampling.h"
#include "kernels/gpu/ops_sample.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/gpu_ops_util.h"

namespace ds::backend::gpu {
namespace {

using ds::gpu::LogprobOut;
using ds::gpu::SampleDesc;

constexpr int64_t kMaxBatch = 16;                                 // rows per launch
constexpr int64_t kPoolEntriesPerRow = 2 * ds::gpu::kSampleMaxVocab;  // processor list entries



// The scratch of one batch of B rows: descriptors, tokens, k, logprobs, work, then the pools.
struct Layout {
  size_t desc = 0, tokens = 0, ks = 0, lp = 0, work = 0, pool = 0, pool_entries = 0;
  Layout(int64_t B, int64_t V, size_t total) {
    tokens = desc + align256(static_cast<size_t>(B) * sizeof(SampleDesc));
    ks = tokens + align256(static_cast<size_t>(B) * 4);
    lp = ks + align256(static_cast<size_t>(B) * 4);
    work = lp + align256(static_cast<size_t>(B) * sizeof(LogprobOut));
    pool = work + align256(static_cast<size_t>(B) * ds::gpu::sample_row_work_bytes(V));
    pool_entries = total > pool ? (total - pool) / 8 : 0;
  }
};

struct Batch {
  std::vector<SampleDesc> desc;
  std::vector<int32_t> ids;
  std::vector<float> vals;
};

// Appends one row's processor lists to the batch, in the CPU's order and semantics.
void pack_row(const SamplingRow& r, int64_t V, Batch* b) {
  SampleDesc d;
  d.temperature = r.temperature;
  d.top_p = r.top_p;
  d.min_p = r.min_p;
  d.uniform = r.uniform;
  d.top_k = r.top_k;
  d.greedy = r.greedy() ? 1 : 0;
  d.repetition_penalty = static_cast<float>(r.repetition_penalty);
  auto list = [&](const int32_t* ids, const float* vals, int64_t n, int64_t* off, int64_t* count) {
    *off = static_cast<int64_t>(b->ids.size());
    *count = n;
    for (int64_t i = 0; i < n; ++i) {
      b->ids.push_back(ids[i]);
      b->vals.push_back(vals ? vals[i] : 0.0f);
    }
  };
  list(r.allowed_ids, nullptr, r.n_allowed, &d.allowed_off, &d.n_allowed);
  list(r.bias_ids, r.bias_values, r.n_bias, &d.bias_off, &d.n_bias);
  list(r.masked_ids, nullptr, r.n_masked, &d.masked_off, &d.n_masked);
  auto valid = [V](int32_t t) { return t >= 0 && t < V; };
  std::vector<int32_t> seen;
  if (r.repetition_penalty != 1.0) {
    for (int64_t i = 0; i < r.n_prompt; ++i)
      if (valid(r.prompt_ids[i])) seen.push_back(r.prompt_ids[i]);
    for (int64_t i = 0; i < r.n_output; ++i)
      if (valid(r.output_ids[i])) seen.push_back(r.output_ids[i]);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  }
  list(seen.data(), nullptr, static_cast<int64_t>(seen.size()), &d.rep_off, &d.n_rep);
  std::vector<int32_t> out_ids, pen_ids;
  std::vector<float> deltas;
  if (r.frequency_penalty != 0.0 || r.presence_penalty != 0.0) {
    for (int64_t i = 0; i < r.n_output; ++i)
      if (valid(r.output_ids[i])) out_ids.push_back(r.output_ids[i]);
    std::sort(out_ids.begin(), out_ids.end());
    for (size_t i = 0; i < out_ids.size();) {
      size_t j = i;
      while (j < out_ids.size() && out_ids[j] == out_ids[i]) ++j;
      pen_ids.push_back(out_ids[i]);
      deltas.push_back(static_cast<float>(r.frequency_penalty * static_cast<double>(j - i) + r.presence_penalty));
      i = j;
    }
  }
  list(pen_ids.data(), deltas.data(), static_cast<int64_t>(pen_ids.size()), &d.pen_off, &d.n_pen);
  b->desc.push_back(d);
}

PositionLogprobs to_logprobs(const LogprobOut& o, int32_t target, int k, int64_t V) {
  PositionLogprobs p;
  p.chosen = {target, o.logprob, o.rank};
  const int n = static_cast<int>(std::min<int64_t>(std::max(k, 0), V));
  for (int i = 0; i < n; ++i) p.top.push_back({o.top_ids[i], o.top_logprobs[i], i + 1});
  return p;
}

}  // namespace

void GpuBackend::sample(Act logits, const SamplingRow* rows, SampleResult* out) {
  const int64_t V = logits.cols, R = logits.rows;
  if (R == 0) return;
  auto shapes = [&] { return "logits=" + std::to_string(R) + "x" + std::to_string(V); };
  if (logits.dtype != DType::kF32) op_fail("sample", "logits must be fp32 [" + shapes() + "]");
  const size_t avail = scratch_ ? scratch_->bytes() : 0;
  char* base = static_cast<char*>(scratch());
  const float* lg = logits.as<float>();
  for (int64_t r0 = 0; r0 < R;) {
    // The largest batch whose work fits, then as many of its rows as the pool holds.
    int64_t B = std::min(kMaxBatch, R - r0);
    while (B > 1 && Layout(B, V, avail).pool_entries == 0) --B;
    const Layout lay(B, V, avail);
    if (lay.pool > avail) op_fail("sample", "op scratch of " + std::to_string(avail) + " bytes is too small [" + shapes() + "]");
    Batch batch;
    int64_t n = 0;
    while (n < B) {
      const size_t before = batch.ids.size();
      pack_row(rows[r0 + n], V, &batch);
      if (batch.ids.size() > lay.pool_entries) {
        if (n == 0) op_fail("sample", "the row's logits processor lists do not fit the op scratch [" + shapes() + "]");
        batch.ids.resize(before);
        batch.vals.resize(before);
        batch.desc.pop_back();
        break;
      }
      ++n;
    }
    std::vector<int32_t> ks(static_cast<size_t>(n), -1);
    bool any_lp = false;
    for (int64_t i = 0; i < n; ++i) {
      const int k = rows[r0 + i].logprobs;
      if (k >= 0 && k <= ds::gpu::kMaxTopLogprobs) {
        ks[static_cast<size_t>(i)] = k;
        any_lp = true;
      }
    }
    auto* desc = reinterpret_cast<SampleDesc*>(base + lay.desc);
    auto* tokens = reinterpret_cast<int32_t*>(base + lay.tokens);
    auto* kd = reinterpret_cast<int32_t*>(base + lay.ks);
    auto* lp = reinterpret_cast<LogprobOut*>(base + lay.lp);
    auto* pool_ids = reinterpret_cast<int32_t*>(base + lay.pool);
    auto* pool_vals = reinterpret_cast<float*>(base + lay.pool + 4 * lay.pool_entries);
    Status s = rt_->copy_h2d(desc, batch.desc.data(), batch.desc.size() * sizeof(SampleDesc));
    if (s.is_ok() && !batch.ids.empty()) s = rt_->copy_h2d(pool_ids, batch.ids.data(), batch.ids.size() * 4);
    if (s.is_ok() && !batch.ids.empty()) s = rt_->copy_h2d(pool_vals, batch.vals.data(), batch.vals.size() * 4);
    if (s.is_ok() && any_lp) s = rt_->copy_h2d(kd, ks.data(), ks.size() * 4);
    if (!s.is_ok()) op_fail("sample (upload)", shapes() + ": " + s.message());
    const float* rows_lg = lg + r0 * logits.ld;
    ds::gpu::sample_rows(rows_lg, logits.ld, n, V, desc, pool_ids, pool_vals, base + lay.work, tokens, rt_->stream());
    check("sample", shapes);
    if (any_lp) {
      ds::gpu::logprob_rows(rows_lg, logits.ld, n, V, tokens, kd, lp, rt_->stream());
      check("sample (logprobs)", shapes);
    }
    std::vector<int32_t> tok(static_cast<size_t>(n));
    std::vector<LogprobOut> lps(any_lp ? static_cast<size_t>(n) : 0);
    s = rt_->copy_d2h(tok.data(), tokens, tok.size() * 4);
    if (s.is_ok() && any_lp) s = rt_->copy_d2h(lps.data(), lp, lps.size() * sizeof(LogprobOut));
    if (s.is_ok()) s = rt_->synchronize();
    if (!s.is_ok()) op_fail("sample (download)", shapes() + ": " + s.message());
    for (int64_t i = 0; i < n; ++i) {
      const SamplingRow& row = rows[r0 + i];
      SampleResult& res = out[r0 + i];
      res.token = tok[static_cast<size_t>(i)];
      res.logprobs.reset();
      if (row.logprobs < 0) continue;
      if (ks[static_cast<size_t>(i)] >= 0) {
        res.logprobs = to_logprobs(lps[static_cast<size_t>(i)], res.token, row.logprobs, V);
      } else {  // more alternatives than the kernel keeps: this one row on the host
        std::vector<float> h(static_cast<size_t>(V));
        download(h.data(), rows_lg + i * logits.ld, h.size() * 4);
        res.logprobs = host_logprobs(h.data(), V, res.token, row.logprobs);
      }
    }
    r0 += n;
  }
}

void GpuBackend::target_logprobs(Act logits, const int32_t* targets, const int32_t* top_k, PositionLogprobs* out) {
  const int64_t V = logits.cols, R = logits.rows;
  auto shapes = [&] { return "logits=" + std::to_string(R) + "x" + std::to_string(V); };
  if (R == 0) return;
  if (logits.dtype != DType::kF32) op_fail("target_logprobs", "logits must be fp32 [" + shapes() + "]");
  char* base = static_cast<char*>(scratch());
  const Layout lay(std::min(kMaxBatch, R), 0, scratch_ ? scratch_->bytes() : 0);
  for (int64_t r0 = 0; r0 < R; r0 += kMaxBatch) {
    const int64_t n = std::min(kMaxBatch, R - r0);
    std::vector<int32_t> tg(targets + r0, targets + r0 + n), ks(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      ks[static_cast<size_t>(i)] = std::min(top_k[r0 + i], ds::gpu::kMaxTopLogprobs);
      if (tg[static_cast<size_t>(i)] >= V) tg[static_cast<size_t>(i)] = -1;
    }
    auto* tokens = reinterpret_cast<int32_t*>(base + lay.tokens);
    auto* kd = reinterpret_cast<int32_t*>(base + lay.ks);
    auto* lp = reinterpret_cast<LogprobOut*>(base + lay.lp);
    Status s = rt_->copy_h2d(tokens, tg.data(), tg.size() * 4);
    if (s.is_ok()) s = rt_->copy_h2d(kd, ks.data(), ks.size() * 4);
    if (!s.is_ok()) op_fail("target_logprobs (upload)", shapes() + ": " + s.message());
    const float* rows_lg = logits.as<float>() + r0 * logits.ld;
    ds::gpu::logprob_rows(rows_lg, logits.ld, n, V, tokens, kd, lp, rt_->stream());
    check("target_logprobs", shapes);
    std::vector<LogprobOut> lps(static_cast<size_t>(n));
    s = rt_->copy_d2h(lps.data(), lp, lps.size() * sizeof(LogprobOut));
    if (s.is_ok()) s = rt_->synchronize();
    if (!s.is_ok()) op_fail("target_logprobs (download)", shapes() + ": " + s.message());
    for (int64_t i = 0; i < n; ++i) {
      const int32_t t = targets[r0 + i];
      if (t < 0 || t >= V) continue;
      if (top_k[r0 + i] > ds::gpu::kMaxTopLogprobs) {
        std::vector<float> h(static_cast<size_t>(V));
        download(h.data(), rows_lg + i * logits.ld, h.size() * 4);
        out[r0 + i] = host_logprobs(h.data(), V, t, top_k[r0 + i]);
      } else {
        out[r0 + i] = to_logprobs(lps[static_cast<size_t>(i)], t, top_k[r0 + i], V);
      }
    }
  }
}

size_t GpuBackend::sample_scratch_bytes(const StepLimits& limits, const CacheSpec&) {
  const int64_t B = std::clamp<int64_t>(limits.max_logit_rows, 1, kMaxBatch);
  return Layout(B, ds::gpu::kSampleMaxVocab, 0).pool + static_cast<size_t>(B * kPoolEntriesPerRow) * 8;
}

}  // namespace ds::backend::gpu
