// ReferenceBackend: the Backend contract implemented with nothing but plain loops and the scalar
// kernels. Linear weights are read from the checkpoint tensors per use (W = scale * (q - zero)),
// so the CPU backend's repacking is checked too. Host memory; one thread; no scratch reuse tricks.
#include "deltaserve/backend/reference_backend.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "deltaserve/backend/host_sampling.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gptq.h"

namespace ds::backend {

namespace {

float read_elem(DType dt, const void* p, int64_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return 0.0f;
  }
}

// The checkpoint tensors as given (they outlive the model: it holds the mapping).
class RefWeight : public PreparedWeight {
 public:
  WeightSource src;
  std::vector<int32_t> group_of;  // per input column

  float at(int64_t n, int64_t k) const {
    if (src.bits >= 16) return read_elem(src.weight_dtype, src.weight, n * src.k + k);
    const int64_t g = group_of[static_cast<size_t>(k)];
    const float scale = read_elem(src.scales_dtype, src.scales, g * src.n + n);
    const uint32_t q = kernels::gptq_qweight_code(src.qweight, src.n, src.bits, k, n);
    const int32_t z = kernels::gptq_zero(src.qzeros, src.n, src.bits, src.sym, src.zeros_v2, g, n);
    return scale * (static_cast<float>(q) - static_cast<float>(src.sym ? (1 << (src.bits - 1)) : z));
  }
};

class RefBuffer : public DeviceBuffer {
 public:
  explicit RefBuffer(size_t bytes) {
    data_ = std::calloc(std::max<size_t>(bytes, 1), 1);
    bytes_ = bytes;
  }
  ~RefBuffer() override { std::free(data_); }
};

float* f(const Act& a) { return a.as<float>(); }

class ReferenceBackend : public Backend {
 public:
  std::string name() const override { return "reference"; }
  DType activation_dtype() const override { return DType::kF32; }
  DType kv_cache_dtype() const override { return DType::kF32; }

  Result<std::unique_ptr<DeviceBuffer>> alloc(size_t bytes, const std::string& what) override {
    auto b = std::make_unique<RefBuffer>(bytes);
    if (!b->data()) return resource_exhausted("out of memory for " + what);
    return std::unique_ptr<DeviceBuffer>(std::move(b));
  }
  void upload(void* dst, const void* host, size_t bytes) override { std::memcpy(dst, host, bytes); }
  void download(void* host, const void* src, size_t bytes) override { std::memcpy(host, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                 size_t rows) override {
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                  width_bytes);
  }
  void synchronize() override {}

  Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) override {
    if (src.n <= 0 || src.k <= 0) return invalid_argument(src.name + ": empty weight");
    auto w = std::make_unique<RefWeight>();
    w->n = src.n;
    w->k = src.k;
    w->src = src;
    w->aliases_source = true;  // every op reads the checkpoint tensors
    if (src.bits < 16) {
      if (src.bits != 4 && src.bits != 8) return unsupported(src.name + ": " + std::to_string(src.bits) + "-bit weights");
      if (!src.qweight || !src.scales || (!src.sym && !src.qzeros))
        return invalid_argument(src.name + ": incomplete GPTQ tensors");
      for (int64_t k = 0; k < src.k; ++k) {
        const int64_t g = src.g_idx ? src.g_idx[k] : (src.group_size > 0 ? k / src.group_size : 0);
        if (g < 0 || g >= src.scale_groups) return corrupt(src.name + ": g_idx out of range");
        w->group_of.push_back(static_cast<int32_t>(g));
      }
    } else if (!src.weight) {
      return invalid_argument(src.name + ": dense weight without data");
    }
    return std::unique_ptr<PreparedWeight>(std::move(w));
  }

  Status allocate_cache(const CacheSpec& spec) override {
    cache_ = spec;
    const int64_t kv = int64_t{spec.num_kv_blocks} * spec.block_size * spec.kv_heads * spec.head_dim;
    k_.assign(static_cast<size_t>(spec.num_attn_layers), std::vector<float>(static_cast<size_t>(kv)));
    v_.assign(static_cast<size_t>(spec.num_attn_layers), std::vector<float>(static_cast<size_t>(kv)));
    ssm_ = int64_t{spec.v_heads} * spec.v_dim * spec.k_dim;
    conv_ = int64_t{spec.conv_kernel - 1} * spec.conv_dim;
    gdn_.assign(static_cast<size_t>(spec.num_gdn_layers),
                std::vector<float>(static_cast<size_t>((ssm_ + conv_) * spec.num_state_slots)));
    return Status::ok();
  }
  size_t cache_bytes() const override {
    size_t b = 0;
    for (const auto& v : k_) b += 8 * v.size();
    for (const auto& v : gdn_) b += 4 * v.size();
    return b;
  }
  Status reserve_step(const StepLimits&) override { return Status::ok(); }
  Status plan(const StepMeta& meta) override {
    m_ = meta;
    return Status::ok();
  }
  void reset_states() override {
    for (auto& pool : gdn_)
      for (int32_t s : m_.reset_slots) std::fill_n(pool.begin() + s * (ssm_ + conv_), ssm_ + conv_, 0.0f);
  }

  void embed(const EmbeddingTable& t, Act out) override {
    for (int64_t i = 0; i < m_.num_tokens(); ++i) {
      const int64_t row = m_.token_ids[static_cast<size_t>(i)] - t.first_row;
      const bool mine = row >= 0 && row < t.rows;  // a tensor-parallel rank holds rows of the table
      for (int64_t j = 0; j < t.dim; ++j) f(out)[i * out.ld + j] = mine ? read_elem(t.dtype, t.data, row * t.dim + j) : 0.0f;
    }
  }
  void rms_norm(Act x, const float* w, float eps, bool zc, Act out) override {
    for (int64_t r = 0; r < x.rows; ++r) kernels::rms_norm(f(x) + r * x.ld, w, 1, x.cols, eps, zc, f(out) + r * out.ld);
  }
  void gated_rms_norm(Act x, Act z, const float* w, float eps, Act out) override {
    for (int64_t r = 0; r < x.rows; ++r)
      kernels::gated_rms_norm(f(x) + r * x.ld, f(z) + r * z.ld, w, 1, x.cols, eps, f(out) + r * out.ld);
  }
  void l2_norm_heads(Act x, int head_dim, float eps, float scale) override {
    for (int64_t r = 0; r < x.rows; ++r) kernels::l2_norm(f(x) + r * x.ld, x.cols / head_dim, head_dim, head_dim, eps, scale);
  }
  void linear(const PreparedWeight& pw, Act x, Act y) override {
    const auto& w = static_cast<const RefWeight&>(pw);
    for (int64_t t = 0; t < x.rows; ++t)
      for (int64_t n = 0; n < w.n; ++n) {
        double acc = 0.0;  // fp64: the reference carries no accumulation-order error of its own
        for (int64_t k = 0; k < w.k; ++k) acc += static_cast<double>(w.at(n, k)) * f(x)[t * x.ld + k];
        if (w.src.bias) acc += read_elem(w.src.bias_dtype, w.src.bias, n);
        f(y)[t * y.ld + n] = static_cast<float>(acc);
      }
  }
  void linear_shared_input(Act x, const PreparedWeight* const* w, const Act* y, int n) override {
    for (int i = 0; i < n; ++i) linear(*w[i], x, y[i]);
  }
  void rope_mrope(Act x, int heads, int head_dim, int rot_dim, double theta, const int32_t* section) override {
    for (int64_t t = 0; t < x.rows; ++t)
      kernels::rope_mrope(f(x) + t * x.ld, 1, heads, head_dim, x.ld, rot_dim, theta, section, m_.positions.data() + 3 * t);
  }
  void split_query_gate(Act qg, int heads, int hd, Act q, Act gate) override {
    for (int64_t t = 0; t < qg.rows; ++t)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < hd; ++i) {
          f(q)[t * q.ld + h * hd + i] = f(qg)[t * qg.ld + h * 2 * hd + i];
          f(gate)[t * gate.ld + h * hd + i] = f(qg)[t * qg.ld + h * 2 * hd + hd + i];
        }
  }
  void attention(int layer, Act q, Act k, Act v, int nh, int nkv, int hd, float scale, Act out) override {
    float* kc = k_[static_cast<size_t>(layer)].data();
    float* vc = v_[static_cast<size_t>(layer)].data();
    const int bs = cache_.block_size;
    const int64_t row = int64_t{nkv} * hd, block = bs * row;
    for (int s = 0; s < m_.num_seqs(); ++s) {
      const int32_t* table = m_.block_tables.data() + int64_t{s} * m_.blocks_per_seq;
      const int64_t t0 = m_.cu_seqlens[static_cast<size_t>(s)], n = m_.cu_seqlens[static_cast<size_t>(s) + 1] - t0;
      const int64_t start = m_.start_pos[static_cast<size_t>(s)];
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = start + i, off = table[p / bs] * block + (p % bs) * row;
        std::memcpy(kc + off, f(k) + (t0 + i) * k.ld, static_cast<size_t>(row) * 4);
        std::memcpy(vc + off, f(v) + (t0 + i) * v.ld, static_cast<size_t>(row) * 4);
      }
      for (int64_t i = 0; i < n; ++i)
        for (int h = 0; h < nh; ++h) {
          std::vector<float> scores(static_cast<size_t>(start + i + 1));
          ref_.attention_head(f(q) + (t0 + i) * q.ld + h * hd, kc, vc, table, bs, block, row, h / (nh / nkv), hd,
                              start + i + 1, scale, scores.data(), f(out) + (t0 + i) * out.ld + h * hd);
        }
    }
  }
  void conv1d_causal(int layer, Act x, const float* w, const float* bias, int kernel, Act y) override {
    for (int s = 0; s < m_.num_seqs(); ++s) {
      const int64_t t0 = m_.cu_seqlens[static_cast<size_t>(s)], n = m_.cu_seqlens[static_cast<size_t>(s) + 1] - t0;
      kernels::conv1d_causal_silu(f(x) + t0 * x.ld, x.ld, n, x.cols, kernel, w, bias, slot(layer, s) + ssm_,
                                  f(y) + t0 * y.ld, y.ld);
    }
  }
  void gdn_gates(Act a, Act b, const float* A_log, const float* dt_bias, Act g, Act beta) override {
    kernels::gdn_gates(f(a), a.ld, f(b), b.ld, a.rows, static_cast<int>(a.cols), A_log, dt_bias, f(g), f(beta));
  }
  // The token recurrence serves both entry points: the chunked form is an optimisation of it.
  void gdn_decode(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) override {
    for (int s = 0; s < m_.num_seqs(); ++s) {
      const int64_t t0 = m_.cu_seqlens[static_cast<size_t>(s)], n = m_.cu_seqlens[static_cast<size_t>(s) + 1] - t0;
      for (int h = 0; h < Hv; ++h) {
        const int64_t kh = h / (Hv / Hk);
        ref_.gdn_recurrent(slot(layer, s) + int64_t{h} * dv * dk, dk, dv, n, f(q) + t0 * q.ld + kh * dk,
                           f(k) + t0 * k.ld + kh * dk, q.ld, f(v) + t0 * v.ld + int64_t{h} * dv, v.ld,
                           f(g) + t0 * g.ld + h, f(beta) + t0 * beta.ld + h, g.ld, f(o) + t0 * o.ld + int64_t{h} * dv,
                           o.ld);
      }
    }
  }
  void gdn_prefill(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) override {
    gdn_decode(layer, q, k, v, g, beta, Hk, Hv, dk, dv, o);
  }
  void moe_route(Act logits, int top_k, bool renormalize, int32_t* ids, Act weights) override {
    for (int64_t t = 0; t < logits.rows; ++t)
      kernels::moe_route(f(logits) + t * logits.ld, logits.cols, top_k, renormalize, ids + t * top_k,
                         f(weights) + t * weights.ld);
  }
  void moe_experts(Act x, const int32_t* ids, Act wts, int top_k, int num_experts, const PreparedWeight* const* gate,
                   const PreparedWeight* const* up, const PreparedWeight* const* down, Act out) override {
    for (int64_t t = 0; t < x.rows; ++t) {
      float* o = f(out) + t * out.ld;
      std::fill(o, o + x.cols, 0.0f);
      for (int s = 0; s < top_k; ++s) {
        const int32_t e = ids[t * top_k + s];
        const int64_t I = gate[e]->n;
        std::vector<float> g(static_cast<size_t>(I)), u(g.size()), y(static_cast<size_t>(x.cols));
        const Act xt = x.rows_view(t, 1);
        linear(*gate[e], xt, {g.data(), DType::kF32, 1, I, I});
        linear(*up[e], xt, {u.data(), DType::kF32, 1, I, I});
        kernels::silu_mul(g.data(), u.data(), I, g.data());
        linear(*down[e], {g.data(), DType::kF32, 1, I, I}, {y.data(), DType::kF32, 1, x.cols, x.cols});
        for (int64_t j = 0; j < x.cols; ++j) o[j] += f(wts)[t * wts.ld + s] * y[static_cast<size_t>(j)];
      }
    }
  }
  void silu_mul(Act gate, Act up, Act out) override {
    for (int64_t r = 0; r < gate.rows; ++r) kernels::silu_mul(f(gate) + r * gate.ld, f(up) + r * up.ld, gate.cols, f(out) + r * out.ld);
  }
  void sigmoid_gate(Act x, Act gate) override {
    for (int64_t r = 0; r < x.rows; ++r) kernels::sigmoid_gate(f(x) + r * x.ld, f(gate) + r * gate.ld, x.cols);
  }
  void add(Act x, Act y) override {
    for (int64_t r = 0; r < x.rows; ++r) kernels::add_inplace(f(x) + r * x.ld, f(y) + r * y.ld, x.cols);
  }
  void add_sigmoid_gated(Act x, Act y, Act gl) override {
    kernels::add_sigmoid_gated(f(x), x.ld, f(y), y.ld, f(gl), gl.ld, x.rows, x.cols);
  }
  void gather_logit_rows(Act h, int64_t first, Act out) override {
    for (int64_t r = 0; r < out.rows; ++r)
      for (int64_t j = 0; j < h.cols; ++j)
        f(out)[r * out.ld + j] = f(h)[m_.logit_rows[static_cast<size_t>(first + r)] * h.ld + j];
  }
  void sample(Act logits, const SamplingRow* rows, SampleResult* out) override {
    for (int64_t r = 0; r < logits.rows; ++r) sample_host_row(f(logits) + r * logits.ld, logits.cols, rows[r], &out[r]);
  }
  void target_logprobs(Act logits, const int32_t* targets, const int32_t* top_k, PositionLogprobs* out) override {
    for (int64_t r = 0; r < logits.rows; ++r)
      if (targets[r] >= 0) out[r] = host_logprobs(f(logits) + r * logits.ld, logits.cols, targets[r], top_k[r]);
  }

 private:
  float* slot(int layer, int s) {
    return gdn_[static_cast<size_t>(layer)].data() + m_.state_slots[static_cast<size_t>(s)] * (ssm_ + conv_);
  }

  const kernels::CpuKernels& ref_ = kernels::cpu_kernels(kernels::CpuIsa::kScalar);
  CacheSpec cache_;
  std::vector<std::vector<float>> k_, v_, gdn_;
  int64_t ssm_ = 0, conv_ = 0;
  StepMeta m_;
};

}  // namespace

std::shared_ptr<Backend> make_reference_backend() { return std::make_shared<ReferenceBackend>(); }

}  // namespace ds::backend
