// A tiny random Qwen3.5 ModelDesc built in memory (no files): 3 GDN layers + 1 attention layer,
// dense MLP or MoE, weights f32 / bf16 or GPTQ int4/int8. Every Linear's exact weight is kept in
// double so tests can run an independent reference forward.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "deltaserve/model/model_desc.h"
#include "tests/runtime/test_util.h"

namespace ds::test {

struct SyntheticSpec {
  bool moe = false;
  int bits = 16;            // 16: dense weights; 4 / 8: GPTQ for the large linears
  DType dense = DType::kF32;
  bool act_order = false, sym = true;
  bool tied = false;
  int num_layers = 4;
  bool wide = false;  // heads and widths that split four ways (tensor-parallel tests up to TP 4)
};

struct SyntheticModel {
  model::ModelDesc desc;
  std::deque<std::vector<uint8_t>> bufs;
  std::map<std::string, std::vector<double>> W;  // linear name -> [n][k]
  std::map<std::string, std::vector<double>> V;  // vector / small tensor name -> values

  template <typename T>
  const void* keep(const std::vector<T>& v) {
    bufs.emplace_back(reinterpret_cast<const uint8_t*>(v.data()), reinterpret_cast<const uint8_t*>(v.data() + v.size()));
    return bufs.back().data();
  }

  model::TensorView vec(const std::string& name, std::vector<int64_t> shape, uint32_t seed, float scale, float offset = 0) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    auto v = randn(static_cast<size_t>(n), seed, scale);
    for (auto& x : v) x += offset;
    V[name] = std::vector<double>(v.begin(), v.end());
    model::TensorView t;
    t.name = name;
    t.dtype = DType::kF32;
    t.shape = shape;
    t.data = keep(v);
    t.nbytes = v.size() * 4;
    return t;
  }

  model::LinearWeight linear(const std::string& name, int64_t n, int64_t k, uint32_t seed, int bits, DType dense,
                             bool act_order, bool sym) {
    model::LinearWeight lw;
    lw.name = name;
    lw.out_features = n;
    lw.in_features = k;
    const float scale = 1.0f / std::sqrt(static_cast<float>(k));
    if (bits < 16) {
      auto t = make_gptq(n, k, bits, 32, sym, false, act_order, seed);
      // Rescale codes' scales so weights have ~1/sqrt(k) magnitude.
      lw.scheme.bits = bits;
      lw.scheme.group_size = 32;
      lw.scheme.sym = sym;
      lw.scheme.desc_act = act_order;
      lw.scheme.method = "gptq";
      auto view = [&](const char* suffix, DType dt, std::vector<int64_t> shape, const void* data, size_t nbytes) {
        model::TensorView v;
        v.name = name + suffix;
        v.dtype = dt;
        v.shape = shape;
        v.data = data;
        v.nbytes = nbytes;
        return v;
      };
      const int pf = 32 / bits;
      lw.qweight = view(".qweight", DType::kI32, {k / pf, n}, keep(t.qweight), t.qweight.size() * 4);
      lw.qzeros = view(".qzeros", DType::kI32, {t.G, n / pf}, keep(t.qzeros), t.qzeros.size() * 4);
      lw.scales = view(".scales", DType::kF16, {t.G, n}, keep(t.scales), t.scales.size() * 2);
      lw.g_idx = view(".g_idx", DType::kI32, {k}, keep(t.g_idx), t.g_idx.size() * 4);
      W[name] = t.W;
      (void)scale;
    } else {
      auto w = randn(static_cast<size_t>(n * k), seed, scale);
      std::vector<double> wd(w.size());
      lw.weight.name = name + ".weight";
      lw.weight.shape = {n, k};
      lw.weight.dtype = dense;
      if (dense == DType::kBF16) {
        std::vector<uint16_t> b(w.size());
        for (size_t i = 0; i < w.size(); ++i) wd[i] = bf16_to_f32(b[i] = f32_to_bf16(w[i]));
        lw.weight.data = keep(b);
        lw.weight.nbytes = b.size() * 2;
      } else {
        for (size_t i = 0; i < w.size(); ++i) wd[i] = w[i];
        lw.weight.data = keep(w);
        lw.weight.nbytes = w.size() * 4;
      }
      W[name] = wd;
    }
    return lw;
  }
};

inline std::unique_ptr<SyntheticModel> make_synthetic(const SyntheticSpec& spec) {
  auto m = std::make_unique<SyntheticModel>();
  auto& c = m->desc.config;
  c.model_type = spec.moe ? "qwen3_5_moe_text" : "qwen3_5_text";
  c.vocab_size = 96;
  c.hidden_size = 64;
  c.num_layers = spec.num_layers;
  for (int i = 0; i < c.num_layers; ++i)
    c.layer_types.push_back((i + 1) % 4 == 0 ? model::LayerKind::kFullAttention : model::LayerKind::kLinearAttention);
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.rope.theta = 10000.0;
  c.rope.partial_rotary_factor = 0.25;
  c.rope.mrope_section = {2, 1, 1};
  c.linear_num_key_heads = 2;
  c.linear_num_value_heads = 4;
  c.linear_key_head_dim = 16;
  c.linear_value_head_dim = 16;
  c.linear_conv_kernel_dim = 4;
  c.intermediate_size = 96;
  c.is_moe = spec.moe;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 32;
  c.shared_expert_intermediate_size = 48;
  if (spec.wide) {  // 4 key / 8 value heads; every quantized split holds whole groups of 32 at TP 4
    c.linear_num_key_heads = 4;
    c.linear_num_value_heads = 8;
    c.intermediate_size = 256;
    c.moe_intermediate_size = 128;
    c.shared_expert_intermediate_size = 128;
  }
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = spec.tied;
  const int64_t H = c.hidden_size;
  uint32_t seed = 1000;
  auto lin = [&](const std::string& name, int64_t n, int64_t k, bool quant = true) {
    return m->linear(name, n, k, seed++, quant ? spec.bits : 16, spec.dense, spec.act_order, spec.sym);
  };
  m->desc.embed_tokens = m->vec("embed", {c.vocab_size, H}, seed++, 1.0f);
  m->desc.final_norm = m->vec("final_norm", {H}, seed++, 0.1f);
  if (spec.tied) {
    m->desc.lm_head.name = "lm_head";
    m->desc.lm_head.out_features = c.vocab_size;
    m->desc.lm_head.in_features = H;
    m->desc.lm_head.weight = m->desc.embed_tokens;
    m->W["lm_head"] = m->V["embed"];
  } else {
    m->desc.lm_head = lin("lm_head", c.vocab_size, H, false);
  }
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "l" + std::to_string(i) + ".";
    model::LayerWeights L;
    L.kind = c.layer_types[static_cast<size_t>(i)];
    L.input_layernorm = m->vec(p + "in_norm", {H}, seed++, 0.1f);
    L.post_attention_layernorm = m->vec(p + "post_norm", {H}, seed++, 0.1f);
    if (L.kind == model::LayerKind::kFullAttention) {
      L.attn.q_proj = lin(p + "q", 2LL * c.num_heads * c.head_dim, H);
      L.attn.k_proj = lin(p + "k", static_cast<int64_t>(c.num_kv_heads) * c.head_dim, H);
      L.attn.v_proj = lin(p + "v", static_cast<int64_t>(c.num_kv_heads) * c.head_dim, H);
      L.attn.o_proj = lin(p + "o", H, static_cast<int64_t>(c.num_heads) * c.head_dim);
      L.attn.q_norm = m->vec(p + "q_norm", {c.head_dim}, seed++, 0.1f);
      L.attn.k_norm = m->vec(p + "k_norm", {c.head_dim}, seed++, 0.1f);
    } else {
      const int64_t vdim = static_cast<int64_t>(c.linear_num_value_heads) * c.linear_value_head_dim;
      L.gdn.in_proj_qkv = lin(p + "qkv", c.conv_dim(), H);
      L.gdn.in_proj_z = lin(p + "z", vdim, H);
      L.gdn.in_proj_a = lin(p + "a", c.linear_num_value_heads, H, false);
      L.gdn.in_proj_b = lin(p + "b", c.linear_num_value_heads, H, false);
      L.gdn.out_proj = lin(p + "out", H, vdim);
      L.gdn.conv1d = m->vec(p + "conv", {c.conv_dim(), 1, 4}, seed++, 0.5f);
      L.gdn.A_log = m->vec(p + "A_log", {c.linear_num_value_heads}, seed++, 0.5f);
      L.gdn.dt_bias = m->vec(p + "dt_bias", {c.linear_num_value_heads}, seed++, 0.5f);
      L.gdn.norm = m->vec(p + "gnorm", {c.linear_value_head_dim}, seed++, 0.1f, 1.0f);
    }
    L.is_moe = spec.moe;
    if (spec.moe) {
      L.moe.router = lin(p + "router", c.num_experts, H, false);
      for (int e = 0; e < c.num_experts; ++e) {
        const std::string q = p + "e" + std::to_string(e) + ".";
        model::MlpWeights ew;
        ew.gate_proj = lin(q + "gate", c.moe_intermediate_size, H);
        ew.up_proj = lin(q + "up", c.moe_intermediate_size, H);
        ew.down_proj = lin(q + "down", H, c.moe_intermediate_size);
        L.moe.experts.push_back(ew);
      }
      L.moe.shared_expert.gate_proj = lin(p + "sgate", c.shared_expert_intermediate_size, H);
      L.moe.shared_expert.up_proj = lin(p + "sup", c.shared_expert_intermediate_size, H);
      L.moe.shared_expert.down_proj = lin(p + "sdown", H, c.shared_expert_intermediate_size);
      L.moe.shared_expert_gate = lin(p + "seg", 1, H, false);
    } else {
      L.mlp.gate_proj = lin(p + "gate", c.intermediate_size, H);
      L.mlp.up_proj = lin(p + "up", c.intermediate_size, H);
      L.mlp.down_proj = lin(p + "down", H, c.intermediate_size);
    }
    m->desc.layers.push_back(L);
  }
  return m;
}

}  // namespace ds::test
