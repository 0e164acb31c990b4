// The three block kinds of a Qwen3.5 layer, wired from backend ops (qwen35-arch.md §3.2-3.5).
#include <cmath>

#include "kernels/common/gdn.h"
#include "src/model/qwen35_internal.h"

namespace ds::model {

// Gated DeltaNet: in-projections, causal conv + SiLU, l2-normalised q/k, gates, delta rule per value
// head (value head h reads key head h / (Hv/Hk)), gated RMSNorm per value head, out_proj.
void CpuQwen35Model::gdn_block(const Layer& L, int64_t T, const std::vector<backend::SeqSpan>& spans, const float* x,
                               float* out) {
  const ModelConfig& c = cfg_;
  const int Hk = c.linear_num_key_heads, Hv = c.linear_num_value_heads, dk = c.linear_key_head_dim,
            dv = c.linear_value_head_dim;
  const int64_t C = c.conv_dim(), key_dim = static_cast<int64_t>(Hk) * dk, vdim = static_cast<int64_t>(Hv) * dv;
  auto& qkv = buf_[3];
  auto& z = buf_[4];
  auto& ab = buf_[5];  // a then b, [T][Hv] each
  auto& y = buf_[6];
  auto& o = buf_[7];
  qkv.resize(static_cast<size_t>(T * C));
  z.resize(static_cast<size_t>(T * vdim));
  ab.resize(static_cast<size_t>(4 * T * Hv));
  y.resize(qkv.size());
  o.resize(static_cast<size_t>(2 * T * vdim));
  float* a = ab.data();
  float* b = a + T * Hv;
  float* g = b + T * Hv;
  float* beta = g + T * Hv;
  const backend::LinearCall calls[4] = {{L.in_qkv.get(), x, T, qkv.data(), C},
                                        {L.in_z.get(), x, T, z.data(), vdim},
                                        {L.in_a.get(), x, T, a, Hv},
                                        {L.in_b.get(), x, T, b, Hv}};
  be_->linear_multi(calls, 4);
  be_->conv1d_causal(qkv.data(), C, spans.data(), static_cast<int>(spans.size()), C, c.linear_conv_kernel_dim,
                     L.conv_w.data(), L.conv_b.empty() ? nullptr : L.conv_b.data(), y.data(), C);
  const float eps = 1e-6f, q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int64_t t = 0; t < T; ++t) {
    kernels::l2_norm(y.data() + t * C, Hk, dk, dk, eps, q_scale);
    kernels::l2_norm(y.data() + t * C + key_dim, Hk, dk, dk, eps, 1.0f);
    for (int h = 0; h < Hv; ++h) {
      const int64_t i = t * Hv + h;
      beta[i] = kernels::sigmoidf(b[i]);
      g[i] = kernels::gdn_log_decay(a[i], L.A_log[static_cast<size_t>(h)], L.dt_bias[static_cast<size_t>(h)]);
    }
  }
  bool multi_token = false;
  for (const auto& s : spans) multi_token |= s.n_tokens > 1;
  float* core = o.data();
  float* normed = o.data() + T * vdim;
  if (opt_.chunked_gdn_prefill && multi_token)
    be_->gdn_prefill(y.data(), y.data() + key_dim, C, y.data() + 2 * key_dim, C, g, beta, spans.data(),
                     static_cast<int>(spans.size()), Hk, Hv, dk, dv, core);
  else
    be_->gdn_decode(y.data(), y.data() + key_dim, C, y.data() + 2 * key_dim, C, g, beta, spans.data(),
                    static_cast<int>(spans.size()), Hk, Hv, dk, dv, core);
  be_->gated_rms_norm(core, z.data(), L.gdn_norm.data(), T * Hv, dv, static_cast<float>(c.rms_norm_eps), normed);
  be_->linear(*L.out_proj, normed, T, out, c.hidden_size);
}

// Gated full attention: q_proj rows interleave per head (query, gate); q/k zero-centred norms;
// partial interleaved M-RoPE; paged causal GQA; sigmoid output gate; o_proj.
void CpuQwen35Model::attention_block(const Layer& L, int64_t T, const std::vector<backend::SeqSpan>& spans,
                                     const std::vector<int64_t>& pos, const float* x, float* out) {
  const ModelConfig& c = cfg_;
  const int nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int64_t qdim = static_cast<int64_t>(nh) * hd, kvdim = static_cast<int64_t>(nkv) * hd;
  auto& qg = buf_[3];
  auto& kv = buf_[4];
  auto& q = buf_[5];
  auto& o = buf_[6];
  qg.resize(static_cast<size_t>(T * 2 * qdim));
  kv.resize(static_cast<size_t>(4 * T * kvdim));
  q.resize(static_cast<size_t>(2 * T * qdim));
  o.resize(static_cast<size_t>(T * qdim));
  float* k = kv.data();
  float* v = k + T * kvdim;
  float* kn = v + T * kvdim;
  float* gate = q.data() + T * qdim;
  const backend::LinearCall calls[3] = {{L.q_proj.get(), x, T, qg.data(), 2 * qdim},
                                        {L.k_proj.get(), x, T, k, kvdim},
                                        {L.v_proj.get(), x, T, v, kvdim}};
  be_->linear_multi(calls, 3);
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < nh; ++h) {
      const float* src = qg.data() + t * 2 * qdim + static_cast<int64_t>(h) * 2 * hd;
      std::copy(src, src + hd, gate - T * qdim + t * qdim + static_cast<int64_t>(h) * hd);
      std::copy(src + hd, src + 2 * hd, gate + t * qdim + static_cast<int64_t>(h) * hd);
    }
  const float eps = static_cast<float>(c.rms_norm_eps);
  float* qn = qg.data();  // q_proj output is consumed; reuse it for the normalised queries
  be_->rms_norm(q.data(), L.q_norm.data(), T * nh, hd, eps, true, qn);
  be_->rms_norm(k, L.k_norm.data(), T * nkv, hd, eps, true, kn);
  const int32_t* section = mrope_section_.size() == 3 ? mrope_section_.data() : nullptr;
  be_->rope_mrope(qn, T, nh, hd, qdim, c.rotary_dim(), c.rope.theta, section, pos.data());
  be_->rope_mrope(kn, T, nkv, hd, kvdim, c.rotary_dim(), c.rope.theta, section, pos.data());
  const backend::KvCacheView cache{kv_k_[static_cast<size_t>(L.cache_index)].data(),
                                   kv_v_[static_cast<size_t>(L.cache_index)].data(), cache_.block_size};
  be_->attention(qn, kn, v, spans.data(), static_cast<int>(spans.size()), nh, nkv, hd,
                 1.0f / std::sqrt(static_cast<float>(hd)), cache, o.data());
  be_->sigmoid_gate(o.data(), gate, T * qdim);
  be_->linear(*L.o_proj, o.data(), T, out, c.hidden_size);
}

// Dense SwiGLU MLP, or MoE: fp32 softmax router, top-k renormalised, experts grouped by token,
// plus the shared expert scaled by sigmoid(shared_expert_gate . x).
void CpuQwen35Model::mlp_block(const Layer& L, int64_t T, const float* x, float* out) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden_size;
  auto& gu = buf_[8];
  auto& misc = buf_[9];
  auto shared_mlp = [&](float* dst) {
    const int64_t I = L.gate->n;
    gu.resize(static_cast<size_t>(2 * T * I));
    const backend::LinearCall calls[2] = {{L.gate.get(), x, T, gu.data(), I}, {L.up.get(), x, T, gu.data() + T * I, I}};
    be_->linear_multi(calls, 2);
    be_->silu_mul(gu.data(), gu.data() + T * I, T * I, gu.data());
    be_->linear(*L.down, gu.data(), T, dst, H);
  };
  if (!L.moe) {
    shared_mlp(out);
    return;
  }
  const int64_t E = c.num_experts;
  const int k = c.num_experts_per_tok;
  misc.resize(static_cast<size_t>(T * E + T * k + T * H + T));
  float* logits = misc.data();
  float* weights = logits + T * E;
  float* shared = weights + T * k;
  float* sgate = shared + T * H;
  route_ids_.resize(static_cast<size_t>(T * k));
  be_->linear(*L.router, x, T, logits, E);
  be_->moe_route(logits, T, E, k, c.norm_topk_prob, route_ids_.data(), weights);
  be_->moe_experts(x, T, H, route_ids_.data(), weights, k, L.e_gate_p.data(), L.e_up_p.data(), L.e_down_p.data(), out);
  if (L.gate) {
    shared_mlp(shared);
    be_->linear(*L.shared_gate, x, T, sgate, 1);
    for (int64_t t = 0; t < T; ++t) {
      const float s = kernels::sigmoidf(sgate[t]);
      for (int64_t j = 0; j < H; ++j) out[t * H + j] += s * shared[t * H + j];
    }
  }
}

}  // namespace ds::model
