#include "deltaserve/model/model_walk.h"

namespace ds::model {

const char* component_name(Component c) {
  switch (c) {
    case Component::kEmbedding: return "embeddings";
    case Component::kLmHead: return "lm_head";
    case Component::kAttention: return "attention";
    case Component::kGdn: return "gdn";
    case Component::kDenseMlp: return "dense_mlp";
    case Component::kSharedExperts: return "shared_experts";
    case Component::kRoutedExperts: return "routed_experts";
    case Component::kRouter: return "router";
    case Component::kNorms: return "norms";
    case Component::kVision: return "vision";
    case Component::kMtp: return "mtp";
  }
  return "?";
}

namespace {

// `over` replaces the per-module component (MTP layers all count as kMtp).
void visit_layer_linears(const LayerWeights& L, int layer, const Component* over,
                         const std::function<void(const LinearRef&)>& fn) {
  auto emit = [&](const LinearWeight& w, Component c, TpSplit s) {
    if (w.present() || w.stored_bytes() > 0) fn({&w, over ? *over : c, s, layer});
  };
  if (L.kind == LayerKind::kFullAttention) {
    emit(L.attn.q_proj, Component::kAttention, TpSplit::kColumn);
    emit(L.attn.k_proj, Component::kAttention, TpSplit::kKvHeads);
    emit(L.attn.v_proj, Component::kAttention, TpSplit::kKvHeads);
    emit(L.attn.o_proj, Component::kAttention, TpSplit::kRow);
  } else {
    emit(L.gdn.in_proj_qkv, Component::kGdn, TpSplit::kColumn);
    emit(L.gdn.in_proj_z, Component::kGdn, TpSplit::kColumn);
    // Replicated, not split (tensor-parallel.md §0.2): a few KB per layer, and a split quantized
    // in_proj_b/a would cap the tensor-parallel size (N = Hv / TP under Marlin's 64 minimum).
    emit(L.gdn.in_proj_b, Component::kGdn, TpSplit::kReplicated);
    emit(L.gdn.in_proj_a, Component::kGdn, TpSplit::kReplicated);
    emit(L.gdn.out_proj, Component::kGdn, TpSplit::kRow);
  }
  if (!L.is_moe) {
    emit(L.mlp.gate_proj, Component::kDenseMlp, TpSplit::kColumn);
    emit(L.mlp.up_proj, Component::kDenseMlp, TpSplit::kColumn);
    emit(L.mlp.down_proj, Component::kDenseMlp, TpSplit::kRow);
    return;
  }
  emit(L.moe.router, Component::kRouter, TpSplit::kReplicated);
  for (const auto& e : L.moe.experts) {
    emit(e.gate_proj, Component::kRoutedExperts, TpSplit::kColumn);
    emit(e.up_proj, Component::kRoutedExperts, TpSplit::kColumn);
    emit(e.down_proj, Component::kRoutedExperts, TpSplit::kRow);
  }
  emit(L.moe.shared_expert.gate_proj, Component::kSharedExperts, TpSplit::kColumn);
  emit(L.moe.shared_expert.up_proj, Component::kSharedExperts, TpSplit::kColumn);
  emit(L.moe.shared_expert.down_proj, Component::kSharedExperts, TpSplit::kRow);
  emit(L.moe.shared_expert_gate, Component::kSharedExperts, TpSplit::kReplicated);
}

void visit_layer_tensors(const LayerWeights& L, int layer, const Component* over,
                         const std::function<void(const TensorRef&)>& fn) {
  auto emit = [&](const TensorView& t, Component c, TpSplit s) {
    if (t.nbytes > 0 || t.present()) fn({&t, over ? *over : c, s, layer});
  };
  emit(L.input_layernorm, Component::kNorms, TpSplit::kReplicated);
  emit(L.post_attention_layernorm, Component::kNorms, TpSplit::kReplicated);
  if (L.kind == LayerKind::kFullAttention) {
    emit(L.attn.q_norm, Component::kAttention, TpSplit::kReplicated);
    emit(L.attn.k_norm, Component::kAttention, TpSplit::kReplicated);
  } else {
    emit(L.gdn.conv1d, Component::kGdn, TpSplit::kHeads);
    emit(L.gdn.conv1d_bias, Component::kGdn, TpSplit::kHeads);
    emit(L.gdn.A_log, Component::kGdn, TpSplit::kHeads);
    emit(L.gdn.dt_bias, Component::kGdn, TpSplit::kHeads);
    emit(L.gdn.norm, Component::kGdn, TpSplit::kReplicated);
  }
}

}  // namespace

void visit_linears(const ModelDesc& m, const std::function<void(const LinearRef&)>& fn) {
  // A tied lm_head views the embedding: it costs nothing of its own.
  if (!m.config.tie_word_embeddings) fn({&m.lm_head, Component::kLmHead, TpSplit::kVocab, -1});
  for (size_t i = 0; i < m.layers.size(); ++i) visit_layer_linears(m.layers[i], static_cast<int>(i), nullptr, fn);
  if (m.mtp.present) {
    const Component mtp = Component::kMtp;
    fn({&m.mtp.fc, mtp, TpSplit::kColumn, -1});
    for (size_t i = 0; i < m.mtp.layers.size(); ++i) visit_layer_linears(m.mtp.layers[i], static_cast<int>(i), &mtp, fn);
  }
}

void visit_tensors(const ModelDesc& m, const std::function<void(const TensorRef&)>& fn) {
  fn({&m.embed_tokens, Component::kEmbedding, TpSplit::kVocab, -1});
  fn({&m.final_norm, Component::kNorms, TpSplit::kReplicated, -1});
  for (size_t i = 0; i < m.layers.size(); ++i) visit_layer_tensors(m.layers[i], static_cast<int>(i), nullptr, fn);
  for (const auto& t : m.vision_tensors) fn({&t, Component::kVision, TpSplit::kReplicated, -1});
  if (m.mtp.present) {
    const Component mtp = Component::kMtp;
    for (const TensorView* t : {&m.mtp.pre_fc_norm_embedding, &m.mtp.pre_fc_norm_hidden, &m.mtp.norm})
      fn({t, mtp, TpSplit::kReplicated, -1});
    for (size_t i = 0; i < m.mtp.layers.size(); ++i) visit_layer_tensors(m.mtp.layers[i], static_cast<int>(i), &mtp, fn);
  }
}

}  // namespace ds::model
