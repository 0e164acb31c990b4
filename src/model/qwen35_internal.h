// Internal to the Qwen3.5 graph (qwen35*.cpp): one decoder layer's prepared weights and the
// activation workspace, carved once from one backend buffer at the largest step's size.
#pragma once

#include <memory>
#include <vector>

#include "deltaserve/model/qwen35.h"

namespace ds::model {

using PreparedLinear = std::unique_ptr<backend::PreparedWeight>;

struct Qwen35Model::Layer {
  LayerKind kind = LayerKind::kLinearAttention;
  int cache_index = 0;  // index among attention layers (KV pool) or GDN layers (state pool)
  const float* input_norm = nullptr;  // small fp32 parameters live in Qwen35Model::params_
  const float* post_norm = nullptr;
  // gated attention
  PreparedLinear q_proj, k_proj, v_proj, o_proj;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  // Gated DeltaNet
  PreparedLinear in_qkv, in_z, in_a, in_b, out_proj;
  const float* conv_w = nullptr;
  const float* conv_b = nullptr;  // optional
  const float* A_log = nullptr;
  const float* dt_bias = nullptr;
  const float* gdn_norm = nullptr;
  // MLP / MoE
  bool moe = false;
  PreparedLinear gate, up, down;  // dense MLP, or the shared expert
  PreparedLinear router, shared_gate;
  std::vector<PreparedLinear> e_gate, e_up, e_down;
  std::vector<const backend::PreparedWeight*> e_gate_p, e_up_p, e_down_p;
};

// Every activation buffer of a step, [max_step_tokens] rows each (logits: [max_logit_rows]).
// Views keep fixed addresses from step to step; a step uses their first T rows. The three block
// kinds never run at once, so their buffers share one scratch region.
struct Qwen35Model::Workspace {
  std::unique_ptr<backend::DeviceBuffer> buffer;
  int64_t max_tokens = 0, max_logit_rows = 0;
  backend::Act h, xn, out;  // residual stream, normalised input, block output [T][H]
  // Gated DeltaNet
  backend::Act qkv, z, a, b, conv, g, beta, core, normed;
  // gated attention
  backend::Act qg, q, gate, k, v, attn;
  // MLP / MoE
  backend::Act gu, router_logits, route_weights, shared, shared_gate;
  int32_t* route_ids = nullptr;
  // logits pass
  backend::Act last_h, last_xn, logits;
  backend::Act logits_local;  // this rank's vocabulary columns of the logits (tensor parallel)
};

}  // namespace ds::model
