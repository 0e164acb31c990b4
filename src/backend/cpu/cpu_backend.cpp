// CPU implementation of the backend op table: per-op planning on the host, kernels from
// kernels/cpu split over ThreadPool::global(). Every output element is computed by exactly one
// thread in a fixed order, so results do not depend on the thread count or on batching.
#include "deltaserve/backend/cpu_backend.h"

#include <algorithm>
#include <cstring>

#include "deltaserve/core/thread_pool.h"

namespace ds::backend {

namespace {

std::vector<float>& thread_scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// Splits `units` items of the given costs over the pool's threads by cumulative cost.
template <typename Fn>
void parallel_by_cost(const std::vector<double>& cost, const Fn& fn) {
  const int64_t n = static_cast<int64_t>(cost.size());
  if (n == 0) return;
  std::vector<double> prefix(cost.size() + 1, 0.0);
  for (size_t i = 0; i < cost.size(); ++i) prefix[i + 1] = prefix[i] + cost[i];
  ThreadPool& pool = ThreadPool::global();
  const int parts = static_cast<int>(std::min<int64_t>(pool.size(), n));
  if (parts <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  const double total = prefix.back();
  pool.parallel_for(parts, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      // Unit i belongs to the part containing its cost midpoint.
      const double lo = total * static_cast<double>(p) / parts, hi = total * static_cast<double>(p + 1) / parts;
      for (int64_t i = 0; i < n; ++i) {
        const double mid = 0.5 * (prefix[static_cast<size_t>(i)] + prefix[static_cast<size_t>(i + 1)]);
        if (mid >= lo && (mid < hi || p == parts - 1)) fn(i);
      }
    }
  });
}

const CpuWeight& cpu(const PreparedWeight& w) { return static_cast<const CpuWeight&>(w); }

}  // namespace

CpuBackend::CpuBackend(kernels::CpuIsa isa) : isa_(isa), kern_(&kernels::cpu_kernels(isa)) { isa_ = kern_->isa; }

std::string CpuBackend::name() const { return std::string("cpu-") + kernels::cpu_isa_name(isa_); }

Result<std::unique_ptr<PreparedWeight>> CpuBackend::prepare_weight(const WeightSource& src) const {
  auto r = prepare_cpu_weight(src);
  if (!r) return r.status();
  return std::unique_ptr<PreparedWeight>(std::move(r).value());
}

void CpuBackend::embed(const EmbeddingTable& t, const int32_t* ids, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = ids[i];
    float* o = out + i * t.dim;
    if (row < 0 || row >= t.rows) {
      std::fill(o, o + t.dim, 0.0f);
      continue;
    }
    for (int64_t j = 0; j < t.dim; ++j) {
      const int64_t idx = row * t.dim + j;
      switch (t.dtype) {
        case DType::kF32: o[j] = static_cast<const float*>(t.data)[idx]; break;
        case DType::kBF16: o[j] = bf16_to_f32(static_cast<const uint16_t*>(t.data)[idx]); break;
        case DType::kF16: o[j] = f16_to_f32(static_cast<const uint16_t*>(t.data)[idx]); break;
        default: o[j] = 0.0f;
      }
    }
  }
}

void CpuBackend::rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, bool zc,
                          float* out) {
  kernels::rms_norm(x, w, rows, dim, eps, zc, out);
}

void CpuBackend::gated_rms_norm(const float* x, const float* z, const float* w, int64_t rows, int64_t dim,
                                float eps, float* out) {
  kernels::gated_rms_norm(x, z, w, rows, dim, eps, out);
}

void CpuBackend::linear(const PreparedWeight& w, const float* x, int64_t m, float* y, int64_t ldy) {
  const LinearCall c{&w, x, m, y, ldy};
  linear_multi(&c, 1);
}

void CpuBackend::linear_multi(const LinearCall* calls, int n) {
  // Gather act-order inputs and per-group sums once per call.
  if (input_scratch_.size() < static_cast<size_t>(n)) input_scratch_.resize(static_cast<size_t>(n));
  std::vector<const float*> xs(static_cast<size_t>(n)), sums(static_cast<size_t>(n), nullptr);
  std::vector<double> cost;
  struct Unit {
    int call;
    int64_t rb0, rb1;
  };
  std::vector<Unit> units;
  for (int c = 0; c < n; ++c) {
    const auto& v = cpu(*calls[c].w).view;
    const int64_t m = calls[c].m;
    xs[static_cast<size_t>(c)] = calls[c].x;
    if (kernels::is_quantized(v.format)) {
      auto& buf = input_scratch_[static_cast<size_t>(c)];
      const size_t need = static_cast<size_t>(m * v.groups + (v.perm ? m * v.k : 0));
      if (buf.size() < need) buf.resize(need);
      float* sum = buf.data();
      const float* xin = calls[c].x;
      if (v.perm) {
        float* xp = buf.data() + m * v.groups;
        for (int64_t t = 0; t < m; ++t)
          for (int64_t k = 0; k < v.k; ++k) xp[t * v.k + k] = xin[t * v.k + v.perm[k]];
        xin = xp;
      }
      for (int64_t t = 0; t < m; ++t)
        for (int64_t g = 0; g < v.groups; ++g) {
          float s = 0.0f;
          for (int64_t k = v.group_start[g]; k < v.group_start[g + 1]; ++k) s += xin[t * v.k + k];
          sum[t * v.groups + g] = s;
        }
      xs[static_cast<size_t>(c)] = xin;
      sums[static_cast<size_t>(c)] = sum;
    }
    const int64_t rbs = kernels::row_blocks(v);
    const int64_t step = std::max<int64_t>(1, rbs / 16);
    for (int64_t rb = 0; rb < rbs; rb += step) {
      units.push_back({c, rb, std::min(rbs, rb + step)});
      cost.push_back(static_cast<double>((std::min(rbs, rb + step) - rb) * v.k) * static_cast<double>(m + 1));
    }
  }
  parallel_by_cost(cost, [&](int64_t i) {
    const Unit& u = units[static_cast<size_t>(i)];
    const LinearCall& c = calls[u.call];
    kern_->linear_rows(cpu(*c.w).view, xs[static_cast<size_t>(u.call)], sums[static_cast<size_t>(u.call)], c.m,
                       c.y, c.ldy, u.rb0, u.rb1);
  });
}

void CpuBackend::lm_head(const PreparedWeight& w, const float* x, int64_t m, float* logits) {
  linear(w, x, m, logits, w.n);
}

void CpuBackend::rope_mrope(float* x, int64_t T, int heads, int head_dim, int64_t stride, int rot_dim,
                            double theta, const int32_t* section, const int64_t* pos) {
  kernels::rope_mrope(x, T, heads, head_dim, stride, rot_dim, theta, section, pos);
}

void CpuBackend::attention(const float* q, const float* k, const float* v, const SeqSpan* seqs, int n_seqs,
                           int nh, int nkv, int hd, float scale, const KvCacheView& cache, float* out) {
  const int64_t row_stride = static_cast<int64_t>(nkv) * hd;
  const int64_t block_stride = cache.block_size * row_stride;
  for (int s = 0; s < n_seqs; ++s) {
    const SeqSpan& sp = seqs[s];
    for (int64_t i = 0; i < sp.n_tokens; ++i) {
      const int64_t p = sp.start_pos + i, t = sp.token_begin + i;
      const int64_t off = sp.block_table[p / cache.block_size] * block_stride + (p % cache.block_size) * row_stride;
      std::memcpy(cache.k + off, k + t * row_stride, static_cast<size_t>(row_stride) * sizeof(float));
      std::memcpy(cache.v + off, v + t * row_stride, static_cast<size_t>(row_stride) * sizeof(float));
    }
  }
  struct Item {
    int seq;
    int64_t i;
  };
  std::vector<Item> items;
  std::vector<double> cost;
  for (int s = 0; s < n_seqs; ++s)
    for (int64_t i = 0; i < seqs[s].n_tokens; ++i)
      for (int h = 0; h < nh; ++h) {
        items.push_back({s, i});
        cost.push_back(static_cast<double>(seqs[s].start_pos + i + 1));
      }
  const int group = nh / nkv;
  parallel_by_cost(cost, [&](int64_t idx) {
    const Item& it = items[static_cast<size_t>(idx)];
    const SeqSpan& sp = seqs[it.seq];
    const int h = static_cast<int>(idx % nh);
    const int64_t t = sp.token_begin + it.i, n_ctx = sp.start_pos + it.i + 1;
    float* scores = thread_scratch(static_cast<size_t>(n_ctx)).data();
    kern_->attention_head(q + t * nh * hd + static_cast<int64_t>(h) * hd, cache.k, cache.v, sp.block_table,
                          cache.block_size, block_stride, row_stride, h / group, hd, n_ctx, scale, scores,
                          out + t * nh * hd + static_cast<int64_t>(h) * hd);
  });
}

void CpuBackend::conv1d_causal(const float* x, int64_t ldx, const SeqSpan* seqs, int n_seqs, int64_t C, int K,
                               const float* w, const float* bias, float* y, int64_t ldy) {
  ThreadPool::global().parallel_for(n_seqs, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const SeqSpan& sp = seqs[s];
      kernels::conv1d_causal_silu(x + sp.token_begin * ldx, ldx, sp.n_tokens, C, K, w, bias, sp.conv_state,
                                  y + sp.token_begin * ldy, ldy);
    }
  });
}

void CpuBackend::gdn_run(bool chunked, const float* q, const float* k, int64_t ld_qk, const float* v,
                         int64_t ld_v, const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk,
                         int Hv, int dk, int dv, float* o) {
  const int ratio = Hv / Hk;
  std::vector<double> cost;
  for (int s = 0; s < n_seqs; ++s)
    for (int h = 0; h < Hv; ++h) cost.push_back(static_cast<double>(seqs[s].n_tokens));
  parallel_by_cost(cost, [&](int64_t idx) {
    const SeqSpan& sp = seqs[idx / Hv];
    const int h = static_cast<int>(idx % Hv);
    const int64_t t0 = sp.token_begin;
    float* S = sp.gdn_state + static_cast<int64_t>(h) * dv * dk;
    const float* qh = q + t0 * ld_qk + static_cast<int64_t>(h / ratio) * dk;
    const float* kh = k + t0 * ld_qk + static_cast<int64_t>(h / ratio) * dk;
    const float* vh = v + t0 * ld_v + static_cast<int64_t>(h) * dv;
    float* oh = o + t0 * Hv * dv + static_cast<int64_t>(h) * dv;
    if (chunked) {
      constexpr int kChunk = 64;
      float* scratch = thread_scratch(static_cast<size_t>(kernels::gdn_chunked_scratch_floats(kChunk, dk, dv))).data();
      kernels::gdn_chunked(S, dk, dv, sp.n_tokens, kChunk, qh, kh, ld_qk, vh, ld_v, g + t0 * Hv + h,
                           beta + t0 * Hv + h, Hv, oh, static_cast<int64_t>(Hv) * dv, scratch);
    } else {
      kern_->gdn_recurrent(S, dk, dv, sp.n_tokens, qh, kh, ld_qk, vh, ld_v, g + t0 * Hv + h, beta + t0 * Hv + h,
                           Hv, oh, static_cast<int64_t>(Hv) * dv);
    }
  });
}

void CpuBackend::gdn_decode(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
                            const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv,
                            int dk, int dv, float* o) {
  gdn_run(false, q, k, ld_qk, v, ld_v, g, beta, seqs, n_seqs, Hk, Hv, dk, dv, o);
}

void CpuBackend::gdn_prefill(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
                             const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv,
                             int dk, int dv, float* o) {
  gdn_run(true, q, k, ld_qk, v, ld_v, g, beta, seqs, n_seqs, Hk, Hv, dk, dv, o);
}

void CpuBackend::moe_route(const float* logits, int64_t T, int64_t E, int top_k, bool renormalize, int32_t* ids,
                           float* weights) {
  for (int64_t t = 0; t < T; ++t)
    kernels::moe_route(logits + t * E, E, top_k, renormalize, ids + t * top_k, weights + t * top_k);
}

void CpuBackend::moe_experts(const float* x, int64_t T, int64_t H, const int32_t* ids, const float* weights,
                             int top_k, const PreparedWeight* const* gate, const PreparedWeight* const* up,
                             const PreparedWeight* const* down, float* out) {
  // Bucket (token, slot) pairs by expert; each expert runs once over its gathered tokens.
  std::vector<std::vector<int64_t>> rows_of;  // expert -> list of token*top_k + slot
  std::vector<int32_t> active;
  for (int64_t r = 0; r < T * top_k; ++r) {
    const int32_t e = ids[r];
    if (static_cast<size_t>(e) >= rows_of.size()) rows_of.resize(static_cast<size_t>(e) + 1);
    if (rows_of[static_cast<size_t>(e)].empty()) active.push_back(e);
    rows_of[static_cast<size_t>(e)].push_back(r);
  }
  std::sort(active.begin(), active.end());
  // Scratch: per active expert, gathered x [m][H], gate [m][I], up [m][I]; then slot outputs [T*top_k][H].
  size_t total = static_cast<size_t>(T * top_k * H);
  std::vector<size_t> off_x, off_g, off_u;
  for (int32_t e : active) {
    const size_t m = rows_of[static_cast<size_t>(e)].size();
    const size_t I = static_cast<size_t>(gate[e]->n);
    off_x.push_back(total);
    total += m * static_cast<size_t>(H);
    off_g.push_back(total);
    total += m * I;
    off_u.push_back(total);
    total += m * I;
  }
  if (moe_scratch_.size() < total) moe_scratch_.resize(total);
  float* slots = moe_scratch_.data();
  std::vector<LinearCall> calls;
  for (size_t a = 0; a < active.size(); ++a) {
    const auto& rows = rows_of[static_cast<size_t>(active[a])];
    float* xg = moe_scratch_.data() + off_x[a];
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(xg + i * H, x + (rows[i] / top_k) * H, static_cast<size_t>(H) * sizeof(float));
    const int64_t m = static_cast<int64_t>(rows.size());
    calls.push_back({gate[active[a]], xg, m, moe_scratch_.data() + off_g[a], gate[active[a]]->n});
    calls.push_back({up[active[a]], xg, m, moe_scratch_.data() + off_u[a], up[active[a]]->n});
  }
  linear_multi(calls.data(), static_cast<int>(calls.size()));
  calls.clear();
  for (size_t a = 0; a < active.size(); ++a) {
    const int64_t m = static_cast<int64_t>(rows_of[static_cast<size_t>(active[a])].size());
    float* g = moe_scratch_.data() + off_g[a];
    kernels::silu_mul(g, moe_scratch_.data() + off_u[a], m * gate[active[a]]->n, g);
    // Down projection output reuses the gathered-x area ([m][H]).
    calls.push_back({down[active[a]], g, m, moe_scratch_.data() + off_x[a], H});
  }
  linear_multi(calls.data(), static_cast<int>(calls.size()));
  for (size_t a = 0; a < active.size(); ++a) {
    const auto& rows = rows_of[static_cast<size_t>(active[a])];
    const float* yd = moe_scratch_.data() + off_x[a];
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(slots + rows[i] * H, yd + i * H, static_cast<size_t>(H) * sizeof(float));
  }
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * H;
    std::fill(o, o + H, 0.0f);
    for (int s = 0; s < top_k; ++s) {
      const float wgt = weights[t * top_k + s];
      const float* ys = slots + (t * top_k + s) * H;
      for (int64_t j = 0; j < H; ++j) o[j] += wgt * ys[j];
    }
  }
}

void CpuBackend::silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  kernels::silu_mul(gate, up, n, out);
}
void CpuBackend::sigmoid_gate(float* x, const float* gate, int64_t n) { kernels::sigmoid_gate(x, gate, n); }
void CpuBackend::add(float* x, const float* y, int64_t n) { kernels::add_inplace(x, y, n); }

}  // namespace ds::backend
