// Internal to the CPU Qwen3.5 graph (qwen35*.cpp): one decoder layer's prepared weights.
#pragma once

#include <memory>
#include <vector>

#include "deltaserve/model/qwen35.h"

namespace ds::model {

using PW = std::unique_ptr<backend::PreparedWeight>;

struct CpuQwen35Model::Layer {
  LayerKind kind = LayerKind::kLinearAttention;
  int cache_index = 0;  // index among attention layers (KV pool) or GDN layers (state pool)
  std::vector<float> input_norm, post_norm;
  // gated attention
  PW q_proj, k_proj, v_proj, o_proj;
  std::vector<float> q_norm, k_norm;
  // Gated DeltaNet
  PW in_qkv, in_z, in_a, in_b, out_proj;
  std::vector<float> conv_w, conv_b, A_log, dt_bias, gdn_norm;
  // MLP / MoE
  bool moe = false;
  PW gate, up, down;  // dense MLP, or the shared expert
  PW router, shared_gate;
  std::vector<PW> e_gate, e_up, e_down;
  std::vector<const backend::PreparedWeight*> e_gate_p, e_up_p, e_down_p;
};

}  // namespace ds::model
