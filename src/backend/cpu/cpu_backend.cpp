// CPU implementation of the backend contract: host memory, the planned step as host arrays, kernels
// from kernels/cpu split over ThreadPool::global(). Every output element is computed by exactly one
// thread in a fixed order, so results do not depend on the thread count or on batching.
#include "deltaserve/backend/cpu_backend.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>

#include "deltaserve/core/thread_pool.h"
#include "deltaserve/backend/host_sampling.h"
#include "src/backend/cpu/parallel.h"

namespace ds::backend {

namespace {

const CpuWeight& cpu(const PreparedWeight& w) { return static_cast<const CpuWeight&>(w); }

float* f32(const Act& a) { return a.as<float>(); }

}  // namespace

// --- memory ---

Result<std::unique_ptr<DeviceBuffer>> HostBuffer::make(size_t bytes, const std::string& what) {
  auto b = std::unique_ptr<HostBuffer>(new HostBuffer());
  const size_t rounded = (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096;
  b->data_ = std::aligned_alloc(4096, rounded);
  if (!b->data_)
    return resource_exhausted("cannot allocate " + std::to_string(bytes >> 20) + " MiB of host memory for " + what);
  b->bytes_ = bytes;
  return std::unique_ptr<DeviceBuffer>(std::move(b));
}

HostBuffer::~HostBuffer() { std::free(data_); }

CpuBackend::CpuBackend(kernels::CpuIsa isa) : isa_(isa), kern_(&kernels::cpu_kernels(isa)) { isa_ = kern_->isa; }

std::string CpuBackend::name() const { return std::string("cpu-") + kernels::cpu_isa_name(isa_); }

Result<std::unique_ptr<DeviceBuffer>> CpuBackend::alloc(size_t bytes, const std::string& what) {
  return HostBuffer::make(bytes, what);
}
void CpuBackend::upload(void* dst, const void* host, size_t bytes) { std::memcpy(dst, host, bytes); }
void CpuBackend::download(void* host, const void* src, size_t bytes) { std::memcpy(host, src, bytes); }
void CpuBackend::fill_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }
void CpuBackend::copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                           size_t rows) {
  for (size_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, width_bytes);
}

// --- load time ---

Result<std::unique_ptr<PreparedWeight>> CpuBackend::prepare_weight(const WeightSource& src) {
  auto r = prepare_cpu_weight(src);
  if (!r) return r.status();
  return std::unique_ptr<PreparedWeight>(std::move(r).value());
}

Status CpuBackend::allocate_cache(const CacheSpec& spec) {
  cache_ = spec;
  const size_t kv_bytes = static_cast<size_t>(spec.num_kv_blocks) * spec.block_size * spec.kv_heads * spec.head_dim * 4;
  kv_k_.clear();
  kv_v_.clear();
  gdn_pool_.clear();
  for (int l = 0; l < spec.num_attn_layers; ++l) {
    DS_ASSIGN_OR_RETURN(auto k, alloc(kv_bytes, "the KV cache"));
    DS_ASSIGN_OR_RETURN(auto v, alloc(kv_bytes, "the KV cache"));
    kv_k_.push_back(std::move(k));
    kv_v_.push_back(std::move(v));
  }
  ssm_floats_ = static_cast<int64_t>(spec.v_heads) * spec.v_dim * spec.k_dim;
  conv_floats_ = static_cast<int64_t>(spec.conv_kernel - 1) * spec.conv_dim;
  const size_t slot_bytes = static_cast<size_t>(ssm_floats_ + conv_floats_) * 4;
  for (int l = 0; l < spec.num_gdn_layers; ++l) {
    DS_ASSIGN_OR_RETURN(auto s, alloc(slot_bytes * static_cast<size_t>(spec.num_state_slots), "the GDN state pool"));
    gdn_pool_.push_back(std::move(s));
  }
  return Status::ok();
}

size_t CpuBackend::cache_bytes() const {
  size_t b = 0;
  for (const auto& v : kv_k_) b += 2 * v->bytes();
  for (const auto& v : gdn_pool_) b += v->bytes();
  return b;
}

float* CpuBackend::ssm_state(int layer, int32_t slot) const {
  return static_cast<float*>(gdn_pool_[static_cast<size_t>(layer)]->data()) + slot * (ssm_floats_ + conv_floats_);
}
float* CpuBackend::conv_state(int layer, int32_t slot) const { return ssm_state(layer, slot) + ssm_floats_; }

Status CpuBackend::reserve_step(const StepLimits& limits) {
  limits_ = limits;
  const size_t T = static_cast<size_t>(limits.max_tokens), S = static_cast<size_t>(limits.max_seqs);
  meta_.token_ids.reserve(T);
  meta_.positions.reserve(3 * T);
  meta_.cu_seqlens.reserve(S + 1);
  meta_.start_pos.reserve(S);
  meta_.state_slots.reserve(S);
  meta_.block_tables.reserve(S * static_cast<size_t>(limits.max_blocks_per_seq));
  meta_.reset_slots.reserve(S);
  meta_.logit_rows.reserve(T);
  seqs_.reserve(S);
  return Status::ok();
}

Status CpuBackend::plan(const StepMeta& m) {
  const int S = m.num_seqs();
  if (m.num_tokens() > limits_.max_tokens || S > limits_.max_seqs || m.blocks_per_seq > limits_.max_blocks_per_seq)
    return invalid_argument("step of " + std::to_string(m.num_tokens()) + " tokens / " + std::to_string(S) +
                            " sequences exceeds the reserved workspace (" + std::to_string(limits_.max_tokens) +
                            " tokens / " + std::to_string(limits_.max_seqs) + " sequences)");
  auto copy = [](auto& dst, const auto& src) { dst.assign(src.begin(), src.end()); };
  copy(meta_.token_ids, m.token_ids);
  copy(meta_.positions, m.positions);
  copy(meta_.cu_seqlens, m.cu_seqlens);
  copy(meta_.start_pos, m.start_pos);
  copy(meta_.state_slots, m.state_slots);
  copy(meta_.block_tables, m.block_tables);
  copy(meta_.reset_slots, m.reset_slots);
  copy(meta_.logit_rows, m.logit_rows);
  meta_.blocks_per_seq = m.blocks_per_seq;
  seqs_.clear();
  for (int s = 0; s < S; ++s) {
    CpuSeq q;
    q.token_begin = meta_.cu_seqlens[static_cast<size_t>(s)];
    q.n_tokens = meta_.cu_seqlens[static_cast<size_t>(s) + 1] - q.token_begin;
    q.start_pos = meta_.start_pos[static_cast<size_t>(s)];
    q.block_table = meta_.block_tables.data() + static_cast<int64_t>(s) * meta_.blocks_per_seq;
    q.slot = meta_.state_slots[static_cast<size_t>(s)];
    seqs_.push_back(q);
  }
  return Status::ok();
}

void CpuBackend::reset_states() {
  for (int l = 0; l < cache_.num_gdn_layers; ++l)
    for (int32_t slot : meta_.reset_slots)
      std::fill_n(ssm_state(l, slot), ssm_floats_ + conv_floats_, 0.0f);
}

// --- ops ---

void CpuBackend::embed(const EmbeddingTable& t, Act out) {
  const int64_t n = meta_.num_tokens();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = meta_.token_ids[static_cast<size_t>(i)] - t.first_row;
    float* o = f32(out) + i * out.ld;
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

void CpuBackend::rms_norm(Act x, const float* w, float eps, bool zc, Act out) {
  assert(x.contiguous() && out.contiguous());
  kernels::rms_norm(f32(x), w, x.rows, x.cols, eps, zc, f32(out));
}

void CpuBackend::gated_rms_norm(Act x, Act z, const float* w, float eps, Act out) {
  assert(x.contiguous() && z.contiguous() && out.contiguous());
  kernels::gated_rms_norm(f32(x), f32(z), w, x.rows, x.cols, eps, f32(out));
}

void CpuBackend::l2_norm_heads(Act x, int head_dim, float eps, float scale) {
  const int heads = static_cast<int>(x.cols / head_dim);
  for (int64_t t = 0; t < x.rows; ++t) kernels::l2_norm(f32(x) + t * x.ld, heads, head_dim, head_dim, eps, scale);
}

void CpuBackend::linear(const PreparedWeight& w, Act x, Act y) {
  const LinearCall c{&w, f32(x), x.ld, x.rows, f32(y), y.ld};
  run_linears(&c, 1);
}

void CpuBackend::linear_shared_input(Act x, const PreparedWeight* const* w, const Act* y, int n) {
  LinearCall calls[8];
  assert(n <= 8);
  for (int i = 0; i < n; ++i) calls[i] = {w[i], f32(x), x.ld, x.rows, f32(y[i]), y[i].ld};
  run_linears(calls, n);
}

void CpuBackend::run_linears(const LinearCall* calls, int n) {
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
    assert(calls[c].ldx == v.k);
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
    kern_->linear_rows(cpu(*c.w).view, xs[static_cast<size_t>(u.call)], sums[static_cast<size_t>(u.call)], c.m, c.y,
                       c.ldy, u.rb0, u.rb1);
  });
}

void CpuBackend::rope_mrope(Act x, int heads, int head_dim, int rot_dim, double theta, const int32_t* section) {
  kernels::rope_mrope(f32(x), x.rows, heads, head_dim, x.ld, rot_dim, theta, section, meta_.positions.data());
}

void CpuBackend::split_query_gate(Act qg, int heads, int head_dim, Act q, Act gate) {
  kernels::split_query_gate(f32(qg), qg.ld, qg.rows, heads, head_dim, f32(q), q.ld, f32(gate), gate.ld);
}

void CpuBackend::attention(int layer, Act q, Act k, Act v, int nh, int nkv, int hd, float scale, Act out) {
  float* kc = static_cast<float*>(kv_k_[static_cast<size_t>(layer)]->data());
  float* vc = static_cast<float*>(kv_v_[static_cast<size_t>(layer)]->data());
  const int bs = cache_.block_size;
  const int64_t row_stride = static_cast<int64_t>(nkv) * hd;
  const int64_t block_stride = bs * row_stride;
  for (const CpuSeq& sp : seqs_) {
    for (int64_t i = 0; i < sp.n_tokens; ++i) {
      const int64_t p = sp.start_pos + i, t = sp.token_begin + i;
      const int64_t off = sp.block_table[p / bs] * block_stride + (p % bs) * row_stride;
      std::memcpy(kc + off, f32(k) + t * k.ld, static_cast<size_t>(row_stride) * sizeof(float));
      std::memcpy(vc + off, f32(v) + t * v.ld, static_cast<size_t>(row_stride) * sizeof(float));
    }
  }
  struct Item {
    int seq;
    int64_t i;
  };
  std::vector<Item> items;
  std::vector<double> cost;
  for (int s = 0; s < static_cast<int>(seqs_.size()); ++s)
    for (int64_t i = 0; i < seqs_[static_cast<size_t>(s)].n_tokens; ++i)
      for (int h = 0; h < nh; ++h) {
        items.push_back({s, i});
        cost.push_back(static_cast<double>(seqs_[static_cast<size_t>(s)].start_pos + i + 1));
      }
  const int group = nh / nkv;
  parallel_by_cost(cost, [&](int64_t idx) {
    const Item& it = items[static_cast<size_t>(idx)];
    const CpuSeq& sp = seqs_[static_cast<size_t>(it.seq)];
    const int h = static_cast<int>(idx % nh);
    const int64_t t = sp.token_begin + it.i, n_ctx = sp.start_pos + it.i + 1;
    float* scores = thread_scratch(static_cast<size_t>(n_ctx));
    kern_->attention_head(f32(q) + t * q.ld + static_cast<int64_t>(h) * hd, kc, vc, sp.block_table, bs, block_stride,
                          row_stride, h / group, hd, n_ctx, scale, scores,
                          f32(out) + t * out.ld + static_cast<int64_t>(h) * hd);
  });
}

void CpuBackend::conv1d_causal(int layer, Act x, const float* w, const float* bias, int kernel, Act y) {
  ThreadPool::global().parallel_for(static_cast<int64_t>(seqs_.size()), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const CpuSeq& sp = seqs_[static_cast<size_t>(s)];
      kernels::conv1d_causal_silu(f32(x) + sp.token_begin * x.ld, x.ld, sp.n_tokens, x.cols, kernel, w, bias,
                                  conv_state(layer, sp.slot), f32(y) + sp.token_begin * y.ld, y.ld);
    }
  });
}

void CpuBackend::gdn_gates(Act a, Act b, const float* A_log, const float* dt_bias, Act g, Act beta) {
  kernels::gdn_gates(f32(a), a.ld, f32(b), b.ld, a.rows, static_cast<int>(a.cols), A_log, dt_bias, f32(g), f32(beta));
}

void CpuBackend::gdn_run(bool chunked, int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk,
                         int dv, Act o) {
  const int ratio = Hv / Hk;
  std::vector<double> cost;
  for (const CpuSeq& sp : seqs_)
    for (int h = 0; h < Hv; ++h) cost.push_back(static_cast<double>(sp.n_tokens));
  parallel_by_cost(cost, [&](int64_t idx) {
    const CpuSeq& sp = seqs_[static_cast<size_t>(idx / Hv)];
    const int h = static_cast<int>(idx % Hv);
    const int64_t t0 = sp.token_begin;
    float* S = ssm_state(layer, sp.slot) + static_cast<int64_t>(h) * dv * dk;
    const float* qh = f32(q) + t0 * q.ld + static_cast<int64_t>(h / ratio) * dk;
    const float* kh = f32(k) + t0 * k.ld + static_cast<int64_t>(h / ratio) * dk;
    const float* vh = f32(v) + t0 * v.ld + static_cast<int64_t>(h) * dv;
    const float* gh = f32(g) + t0 * g.ld + h;
    const float* bh = f32(beta) + t0 * beta.ld + h;
    float* oh = f32(o) + t0 * o.ld + static_cast<int64_t>(h) * dv;
    if (chunked) {
      constexpr int kChunk = 64;
      float* scratch = thread_scratch(static_cast<size_t>(kernels::gdn_chunked_scratch_floats(kChunk, dk, dv)));
      kernels::gdn_chunked(S, dk, dv, sp.n_tokens, kChunk, qh, kh, q.ld, vh, v.ld, gh, bh, g.ld, oh, o.ld, scratch);
    } else {
      kern_->gdn_recurrent(S, dk, dv, sp.n_tokens, qh, kh, q.ld, vh, v.ld, gh, bh, g.ld, oh, o.ld);
    }
  });
}

void CpuBackend::gdn_decode(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) {
  gdn_run(false, layer, q, k, v, g, beta, Hk, Hv, dk, dv, o);
}

void CpuBackend::gdn_prefill(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) {
  gdn_run(true, layer, q, k, v, g, beta, Hk, Hv, dk, dv, o);
}

void CpuBackend::moe_route(Act logits, int top_k, bool renormalize, int32_t* ids, Act weights) {
  for (int64_t t = 0; t < logits.rows; ++t)
    kernels::moe_route(f32(logits) + t * logits.ld, logits.cols, top_k, renormalize, ids + t * top_k,
                       f32(weights) + t * weights.ld);
}

void CpuBackend::moe_experts(Act xa, const int32_t* ids, Act wa, int top_k, int num_experts, const PreparedWeight* const* gate,
                             const PreparedWeight* const* up, const PreparedWeight* const* down, Act outa) {
  const int64_t T = xa.rows, H = xa.cols;
  const float* x = f32(xa);
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
      std::memcpy(xg + i * H, x + (rows[i] / top_k) * xa.ld, static_cast<size_t>(H) * sizeof(float));
    const int64_t m = static_cast<int64_t>(rows.size());
    calls.push_back({gate[active[a]], xg, H, m, moe_scratch_.data() + off_g[a], gate[active[a]]->n});
    calls.push_back({up[active[a]], xg, H, m, moe_scratch_.data() + off_u[a], up[active[a]]->n});
  }
  run_linears(calls.data(), static_cast<int>(calls.size()));
  calls.clear();
  for (size_t a = 0; a < active.size(); ++a) {
    const int64_t m = static_cast<int64_t>(rows_of[static_cast<size_t>(active[a])].size());
    float* g = moe_scratch_.data() + off_g[a];
    const int64_t I = gate[active[a]]->n;
    kernels::silu_mul(g, moe_scratch_.data() + off_u[a], m * I, g);
    // Down projection output reuses the gathered-x area ([m][H]).
    calls.push_back({down[active[a]], g, I, m, moe_scratch_.data() + off_x[a], H});
  }
  run_linears(calls.data(), static_cast<int>(calls.size()));
  for (size_t a = 0; a < active.size(); ++a) {
    const auto& rows = rows_of[static_cast<size_t>(active[a])];
    const float* yd = moe_scratch_.data() + off_x[a];
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(slots + rows[i] * H, yd + i * H, static_cast<size_t>(H) * sizeof(float));
  }
  const float* weights = f32(wa);
  for (int64_t t = 0; t < T; ++t) {
    float* o = f32(outa) + t * outa.ld;
    std::fill(o, o + H, 0.0f);
    for (int s = 0; s < top_k; ++s) {
      const float wgt = weights[t * wa.ld + s];
      const float* ys = slots + (t * top_k + s) * H;
      for (int64_t j = 0; j < H; ++j) o[j] += wgt * ys[j];
    }
  }
}

void CpuBackend::silu_mul(Act gate, Act up, Act out) {
  for (int64_t r = 0; r < gate.rows; ++r)
    kernels::silu_mul(f32(gate) + r * gate.ld, f32(up) + r * up.ld, gate.cols, f32(out) + r * out.ld);
}

void CpuBackend::sigmoid_gate(Act x, Act gate) {
  for (int64_t r = 0; r < x.rows; ++r) kernels::sigmoid_gate(f32(x) + r * x.ld, f32(gate) + r * gate.ld, x.cols);
}

void CpuBackend::add(Act x, Act y) {
  for (int64_t r = 0; r < x.rows; ++r) kernels::add_inplace(f32(x) + r * x.ld, f32(y) + r * y.ld, x.cols);
}

void CpuBackend::add_sigmoid_gated(Act x, Act y, Act gate_logit) {
  kernels::add_sigmoid_gated(f32(x), x.ld, f32(y), y.ld, f32(gate_logit), gate_logit.ld, x.rows, x.cols);
}

void CpuBackend::gather_logit_rows(Act h, int64_t first, Act out) {
  for (int64_t r = 0; r < out.rows; ++r)
    std::memcpy(f32(out) + r * out.ld, f32(h) + meta_.logit_rows[static_cast<size_t>(first + r)] * h.ld,
                static_cast<size_t>(h.cols) * sizeof(float));
}

void CpuBackend::sample(Act logits, const SamplingRow* rows, SampleResult* out) {
  ThreadPool::global().parallel_for(logits.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) sample_host_row(f32(logits) + r * logits.ld, logits.cols, rows[r], &out[r]);
  });
}

void CpuBackend::target_logprobs(Act logits, const int32_t* targets, const int32_t* top_k, PositionLogprobs* out) {
  ThreadPool::global().parallel_for(logits.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      if (targets[r] >= 0) out[r] = host_logprobs(f32(logits) + r * logits.ld, logits.cols, targets[r], top_k[r]);
  });
}

}  // namespace ds::backend
