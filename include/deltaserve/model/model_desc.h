// The in-memory description of a loaded checkpoint (DESIGN.md §3 "Model description"): the
// hyper-parameters, and per layer / module its kind, shape and storage format, with zero-copy views
// into the mmapped safetensors. Quantization rules (GPTQ `dynamic`, AutoRound `extra_config` /
// `block_name_to_quantize`) are resolved once by the loader and checked against the tensors present;
// nothing after loading re-reads config JSON. Backends read this to prepare their own layouts.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deltaserve/core/dtype.h"

namespace ds::model {

// A zero-copy view of one stored tensor (row-major, safetensors order). data == nullptr: absent.
struct TensorView {
  std::string name;
  DType dtype = DType::kUnknown;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  bool present() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// How one Linear's weight is stored, after resolving every quantization rule.
struct QuantScheme {
  int bits = 16;          // 16: unquantized (weight dtype from the tensor); 4 or 8: GPTQ family
  int group_size = -1;    // -1: one group over all of K
  bool sym = true;        // sym: zero = 2^(bits-1), qzeros ignored
  bool desc_act = false;  // act-order: g_idx is not k / group_size
  bool zeros_v2 = false;  // checkpoint_format gptq_v2: qzeros hold true zeros (v1 stores zero-1)
  std::string method;     // "none", "gptq", "auto-round"

  bool quantized() const { return bits < 16; }
};

// One logical Linear y = x W^T (+ b), W of shape [out_features, in_features] = [N, K].
// Unquantized: `weight` [N, K] (bf16/fp16/f32). Quantized (GPTQ layout, kernels-formats.md §1.1):
// qweight int32 [K*bits/32, N], qzeros int32 [G, N*bits/32], scales fp16 [G, N], g_idx int32 [K]
// (may be absent: then g_idx[k] = k / group_size). A fused 3-D expert tensor appears as one
// LinearWeight per expert whose `weight` views that expert's slice.
struct LinearWeight {
  std::string name;  // checkpoint module name, e.g. "model.language_model.layers.3.mlp.experts.7.up_proj"
  int64_t in_features = 0;
  int64_t out_features = 0;
  QuantScheme scheme;
  TensorView weight;
  TensorView qweight, qzeros, scales, g_idx;
  TensorView bias;

  bool present() const { return weight.present() || qweight.present(); }
  // Bytes this module occupies in the checkpoint (all its tensors).
  size_t stored_bytes() const {
    return weight.nbytes + qweight.nbytes + qzeros.nbytes + scales.nbytes + g_idx.nbytes + bias.nbytes;
  }
};

enum class LayerKind { kLinearAttention, kFullAttention };

struct AttentionWeights {  // gated full attention (qwen35-arch.md §3.2)
  LinearWeight q_proj;     // [2*nh*hd, H], rows interleaved per head: query then gate
  LinearWeight k_proj, v_proj, o_proj;
  TensorView q_norm, k_norm;  // [hd], zero-centred
};

struct GdnWeights {  // Gated DeltaNet (qwen35-arch.md §3.4)
  LinearWeight in_proj_qkv, in_proj_z, in_proj_a, in_proj_b, out_proj;
  TensorView conv1d;   // [conv_dim, 1, K]
  TensorView conv1d_bias;  // usually absent
  TensorView A_log;    // [Hv]
  TensorView dt_bias;  // [Hv]
  TensorView norm;     // [dv], plain (not zero-centred)
};

struct MlpWeights {
  LinearWeight gate_proj, up_proj, down_proj;
};

struct MoeWeights {
  LinearWeight router;              // mlp.gate [E, H]
  std::vector<MlpWeights> experts;  // E entries
  bool experts_fused = false;       // stored as 3-D experts.gate_up_proj / experts.down_proj
  MlpWeights shared_expert;
  LinearWeight shared_expert_gate;  // [1, H]
};

struct LayerWeights {
  LayerKind kind = LayerKind::kLinearAttention;
  TensorView input_layernorm, post_attention_layernorm;  // zero-centred
  AttentionWeights attn;  // when kind == kFullAttention
  GdnWeights gdn;         // when kind == kLinearAttention
  bool is_moe = false;
  MlpWeights mlp;  // dense
  MoeWeights moe;  // when is_moe
};

struct MtpWeights {  // multi-token-prediction head (qwen35-arch.md §4); absent in some checkpoints
  bool present = false;
  LinearWeight fc;  // [H, 2H]
  TensorView pre_fc_norm_embedding, pre_fc_norm_hidden, norm;
  std::vector<LayerWeights> layers;  // full-attention layers
};

struct RopeConfig {
  double theta = 1e7;
  double partial_rotary_factor = 0.25;
  std::vector<int> mrope_section;  // e.g. {11, 11, 10}
  bool mrope_interleaved = true;
  std::string type = "default";    // "default" or "yarn"
  double yarn_factor = 1.0;
  int64_t original_max_position_embeddings = 0;
};

struct VisionConfig {
  bool present = false;
  int depth = 0, hidden_size = 0, num_heads = 0, intermediate_size = 0, out_hidden_size = 0;
  int patch_size = 16, temporal_patch_size = 2, spatial_merge_size = 2, in_channels = 3;
  int num_position_embeddings = 0;
};

struct ModelConfig {
  std::string model_type;    // qwen3_5, qwen3_5_moe, qwen3_5_text, qwen3_5_moe_text
  std::string architecture;  // e.g. Qwen3_5MoeForConditionalGeneration
  std::string weight_prefix; // "model.language_model." or "model."
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int num_layers = 0;
  std::vector<LayerKind> layer_types;
  // full attention
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  bool attn_output_gate = true;
  RopeConfig rope;
  int64_t max_position_embeddings = 0;
  // Gated DeltaNet
  int linear_num_key_heads = 0, linear_num_value_heads = 0;
  int linear_key_head_dim = 0, linear_value_head_dim = 0, linear_conv_kernel_dim = 4;
  // MLP / MoE
  int64_t intermediate_size = 0;  // dense
  bool is_moe = false;
  int num_experts = 0, num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0, shared_expert_intermediate_size = 0;
  bool norm_topk_prob = true;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int mtp_num_hidden_layers = 0;
  std::string torch_dtype;  // "bfloat16", "float16"
  // special tokens
  std::vector<int64_t> eos_token_ids;
  int64_t image_token_id = -1, video_token_id = -1, vision_start_token_id = -1, vision_end_token_id = -1;
  VisionConfig vision;

  int64_t conv_dim() const {
    return 2LL * linear_num_key_heads * linear_key_head_dim +
           static_cast<int64_t>(linear_num_value_heads) * linear_value_head_dim;
  }
  int rotary_dim() const { return static_cast<int>(head_dim * rope.partial_rotary_factor); }
};

// generation_config.json, as vLLM reads it for request defaults (--generation-config auto).
struct GenerationDefaults {
  std::vector<int64_t> eos_token_ids;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k, max_new_tokens;
};

class WeightStorage;  // owns the mmapped shards the views point into

struct ModelDesc {
  std::string path;  // resolved local directory
  ModelConfig config;
  GenerationDefaults generation;
  std::string quant_method;  // "none", "gptq", "auto-round"
  TensorView embed_tokens;   // [V, H]
  TensorView final_norm;     // [H], zero-centred
  LinearWeight lm_head;      // tied: weight views embed_tokens
  std::vector<LayerWeights> layers;
  MtpWeights mtp;
  std::vector<TensorView> vision_tensors;  // model.visual.* (kept for the vision encoder)
  std::vector<std::string> tokenizer_files;  // tokenizer.json, tokenizer_config.json, ... present
  std::map<std::string, std::string> extra_files;  // preprocessor_config.json etc.: name -> text
  std::shared_ptr<WeightStorage> storage;
  // config_only: described from config.json alone; views carry shape/dtype/nbytes estimated from the
  // resolved scheme but no data (present() is false). Used by `inspect` on config-only directories.
  bool config_only = false;
  std::string quant_summary;                // one line, e.g. "gptq int4 g128 sym (gptq v1), 2 dynamic rules"
  std::vector<std::string> unused_tensors;  // in the shards but not part of the model (ignored)
  std::vector<std::string> warnings;        // non-fatal findings of the loader, one line each
};

}  // namespace ds::model
