// The three block kinds of a Qwen3.5 layer, wired from backend ops (qwen35-arch.md §3.2-3.5).
// Each ends where its row-parallel projection ends, with the communicator's all-reduce.
#include <cmath>

#include "src/model/qwen35_internal.h"

namespace ds::model {

// Gated DeltaNet: in-projections, causal conv + SiLU, l2-normalised q/k, gates, delta rule per value
// head (value head h reads key head h / (Hv/Hk)), gated RMSNorm per value head, out_proj.
Status Qwen35Model::gdn_block(const Layer& L, int64_t T, backend::Act x, backend::Act out) {
  const ModelConfig& c = cfg_;
  backend::Backend& be = *be_;
  const Workspace& w = *ws_;
  // This rank's heads; a and b come whole from the replicated in_proj_a/b.
  const int Hk = dims_.hk, Hv = dims_.hv, dk = c.linear_key_head_dim, dv = c.linear_value_head_dim;
  const int64_t key_dim = static_cast<int64_t>(Hk) * dk, vdim = static_cast<int64_t>(Hv) * dv;
  const backend::Act qkv = w.qkv.rows_view(0, T), z = w.z.rows_view(0, T), a = w.a.rows_view(0, T),
                     b = w.b.rows_view(0, T), conv = w.conv.rows_view(0, T), g = w.g.rows_view(0, T),
                     beta = w.beta.rows_view(0, T), core = w.core.rows_view(0, T), normed = w.normed.rows_view(0, T);
  const backend::PreparedWeight* in[4] = {L.in_qkv.get(), L.in_z.get(), L.in_a.get(), L.in_b.get()};
  const backend::Act in_out[4] = {qkv, z, a, b};
  be.linear_shared_input(x, in, in_out, 4);
  be.conv1d_causal(L.cache_index, qkv, L.conv_w, L.conv_b, c.linear_conv_kernel_dim, conv);
  const backend::Act q = conv.cols_view(0, key_dim), k = conv.cols_view(key_dim, key_dim),
                     v = conv.cols_view(2 * key_dim, vdim);
  be.l2_norm_heads(q, dk, 1e-6f, 1.0f / std::sqrt(static_cast<float>(dk)));
  be.l2_norm_heads(k, dk, 1e-6f, 1.0f);
  be.gdn_gates(a.cols_view(dims_.hv_first, Hv), b.cols_view(dims_.hv_first, Hv), L.A_log, L.dt_bias, g, beta);
  bool multi_token = false;
  for (size_t s = 0; s + 1 < meta_.cu_seqlens.size(); ++s) multi_token |= meta_.cu_seqlens[s + 1] - meta_.cu_seqlens[s] > 1;
  if (opt_.chunked_gdn_prefill && multi_token)
    be.gdn_prefill(L.cache_index, q, k, v, g, beta, Hk, Hv, dk, dv, core);
  else
    be.gdn_decode(L.cache_index, q, k, v, g, beta, Hk, Hv, dk, dv, core);
  be.gated_rms_norm(core.reshaped(T * Hv, dv), z.reshaped(T * Hv, dv), L.gdn_norm, static_cast<float>(c.rms_norm_eps),
                    normed.reshaped(T * Hv, dv));
  be.linear(*L.out_proj, normed, out);
  return comm_->all_reduce_sum(be, out);
}

// Gated full attention: q_proj rows interleave per head (query, gate); q/k zero-centred norms;
// partial interleaved M-RoPE; paged causal GQA; sigmoid output gate; o_proj.
Status Qwen35Model::attention_block(const Layer& L, int64_t T, backend::Act x, backend::Act out) {
  const ModelConfig& c = cfg_;
  backend::Backend& be = *be_;
  const Workspace& w = *ws_;
  const int nh = dims_.nh, nkv = dims_.nkv, hd = c.head_dim;  // this rank's heads
  const backend::Act qg = w.qg.rows_view(0, T), q = w.q.rows_view(0, T), gate = w.gate.rows_view(0, T),
                     k = w.k.rows_view(0, T), v = w.v.rows_view(0, T), o = w.attn.rows_view(0, T);
  const backend::PreparedWeight* in[3] = {L.q_proj.get(), L.k_proj.get(), L.v_proj.get()};
  const backend::Act in_out[3] = {qg, k, v};
  be.linear_shared_input(x, in, in_out, 3);
  be.split_query_gate(qg, nh, hd, q, gate);
  const float eps = static_cast<float>(c.rms_norm_eps);
  be.rms_norm(q.reshaped(T * nh, hd), L.q_norm, eps, true, q.reshaped(T * nh, hd));
  be.rms_norm(k.reshaped(T * nkv, hd), L.k_norm, eps, true, k.reshaped(T * nkv, hd));
  const int32_t* section = mrope_section_.size() == 3 ? mrope_section_.data() : nullptr;
  be.rope_mrope(q, nh, hd, c.rotary_dim(), c.rope.theta, section);
  be.rope_mrope(k, nkv, hd, c.rotary_dim(), c.rope.theta, section);
  be.attention(L.cache_index, q, k, v, nh, nkv, hd, 1.0f / std::sqrt(static_cast<float>(hd)), o);
  be.sigmoid_gate(o, gate);
  be.linear(*L.o_proj, o, out);
  return comm_->all_reduce_sum(be, out);
}

// Dense SwiGLU MLP, or MoE: fp32 softmax router, top-k renormalised, experts grouped by token,
// plus the shared expert scaled by sigmoid(shared_expert_gate . x).
Status Qwen35Model::mlp_block(const Layer& L, int64_t T, backend::Act x, backend::Act out) {
  const ModelConfig& c = cfg_;
  backend::Backend& be = *be_;
  const Workspace& w = *ws_;
  auto swiglu = [&](backend::Act dst) {
    const int64_t I = L.gate->n;
    // gate rows then up rows, each [T][I] contiguous (down reads the gate rows as its input).
    const backend::Act gu{w.gu.data, w.gu.dtype, 2 * T, I, I};
    const backend::Act g = gu.rows_view(0, T), u = gu.rows_view(T, T);
    const backend::PreparedWeight* in[2] = {L.gate.get(), L.up.get()};
    const backend::Act in_out[2] = {g, u};
    be.linear_shared_input(x, in, in_out, 2);
    be.silu_mul(g, u, g);
    be.linear(*L.down, g, dst);
  };
  if (!L.moe) {
    swiglu(out);
    return comm_->all_reduce_sum(be, out);
  }
  const backend::Act logits = w.router_logits.rows_view(0, T), weights = w.route_weights.rows_view(0, T);
  be.linear(*L.router, x, logits);
  be.moe_route(logits, c.num_experts_per_tok, c.norm_topk_prob, w.route_ids, weights);
  be.moe_experts(x, w.route_ids, weights, c.num_experts_per_tok, static_cast<int>(L.e_gate_p.size()), L.e_gate_p.data(), L.e_up_p.data(),
                 L.e_down_p.data(), out);
  if (L.gate) {
    const backend::Act shared = w.shared.rows_view(0, T), sgate = w.shared_gate.rows_view(0, T);
    swiglu(shared);
    be.linear(*L.shared_gate, x, sgate);
    be.add_sigmoid_gated(out, shared, sgate);
  }
  return comm_->all_reduce_sum(be, out);
}

}  // namespace ds::model
