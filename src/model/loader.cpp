#include "deltaserve/model/loader.h"

#include <filesystem>
#include <set>

#include "deltaserve/core/log.h"
#include "deltaserve/model/config.h"
#include "deltaserve/model/quant_rules.h"
#include "deltaserve/model/resolve.h"
#include "deltaserve/model/safetensors.h"
#include "src/model/loader_internal.h"

namespace ds::model {
namespace fs = std::filesystem;
using detail::bind_linear;
using detail::bind_tensor;
using detail::LoadContext;

namespace {

DType dtype_from_torch(const std::string& s) {
  if (s == "float16" || s == "half") return DType::kF16;
  if (s == "float32" || s == "float") return DType::kF32;
  return DType::kBF16;
}

// One decoder layer (main stack or MTP) under `p` (ends in "."). `core`: whether the quantizer is
// expected to have handled its projections (false for MTP, which quantizers copy through).
Status bind_layer(LoadContext& ctx, const std::string& p, LayerKind kind, bool core, LayerWeights* L) {
  const ModelConfig& c = *ctx.cfg;
  const int64_t h = c.hidden_size;
  L->kind = kind;
  DS_ASSIGN_OR_RETURN(L->input_layernorm, bind_tensor(ctx, p + "input_layernorm.weight", {h}));
  DS_ASSIGN_OR_RETURN(L->post_attention_layernorm, bind_tensor(ctx, p + "post_attention_layernorm.weight", {h}));
  if (kind == LayerKind::kFullAttention) {
    const std::string a = p + "self_attn.";
    const int64_t hd = c.head_dim, q_out = (c.attn_output_gate ? 2 : 1) * int64_t{c.num_heads} * hd;
    const int64_t kv_out = int64_t{c.num_kv_heads} * hd;
    AttentionWeights& w = L->attn;
    DS_ASSIGN_OR_RETURN(w.q_proj, bind_linear(ctx, a + "q_proj", q_out, h, core));
    DS_ASSIGN_OR_RETURN(w.k_proj, bind_linear(ctx, a + "k_proj", kv_out, h, core));
    DS_ASSIGN_OR_RETURN(w.v_proj, bind_linear(ctx, a + "v_proj", kv_out, h, core));
    DS_ASSIGN_OR_RETURN(w.o_proj, bind_linear(ctx, a + "o_proj", h, int64_t{c.num_heads} * hd, core));
    DS_ASSIGN_OR_RETURN(w.q_norm, bind_tensor(ctx, a + "q_norm.weight", {hd}));
    DS_ASSIGN_OR_RETURN(w.k_norm, bind_tensor(ctx, a + "k_norm.weight", {hd}));
  } else {
    const std::string g = p + "linear_attn.";
    const int64_t hv = c.linear_num_value_heads, vd = hv * c.linear_value_head_dim, conv = c.conv_dim();
    GdnWeights& w = L->gdn;
    DS_ASSIGN_OR_RETURN(w.in_proj_qkv, bind_linear(ctx, g + "in_proj_qkv", conv, h, core));
    DS_ASSIGN_OR_RETURN(w.in_proj_z, bind_linear(ctx, g + "in_proj_z", vd, h, core));
    DS_ASSIGN_OR_RETURN(w.in_proj_b, bind_linear(ctx, g + "in_proj_b", hv, h, false));
    DS_ASSIGN_OR_RETURN(w.in_proj_a, bind_linear(ctx, g + "in_proj_a", hv, h, false));
    DS_ASSIGN_OR_RETURN(w.out_proj, bind_linear(ctx, g + "out_proj", h, vd, core));
    DS_ASSIGN_OR_RETURN(w.conv1d, bind_tensor(ctx, g + "conv1d.weight", {conv, 1, c.linear_conv_kernel_dim}));
    DS_ASSIGN_OR_RETURN(w.conv1d_bias, bind_tensor(ctx, g + "conv1d.bias", {conv}, /*required=*/false));
    DS_ASSIGN_OR_RETURN(w.A_log, bind_tensor(ctx, g + "A_log", {hv}, true, DType::kF32));  // transformers saves it fp32
    DS_ASSIGN_OR_RETURN(w.dt_bias, bind_tensor(ctx, g + "dt_bias", {hv}));
    DS_ASSIGN_OR_RETURN(w.norm, bind_tensor(ctx, g + "norm.weight", {c.linear_value_head_dim}));
  }
  const std::string m = p + "mlp.";
  L->is_moe = c.is_moe;
  if (!c.is_moe) {
    DS_ASSIGN_OR_RETURN(L->mlp.gate_proj, bind_linear(ctx, m + "gate_proj", c.intermediate_size, h, core));
    DS_ASSIGN_OR_RETURN(L->mlp.up_proj, bind_linear(ctx, m + "up_proj", c.intermediate_size, h, core));
    DS_ASSIGN_OR_RETURN(L->mlp.down_proj, bind_linear(ctx, m + "down_proj", h, c.intermediate_size, core));
    return {};
  }
  MoeWeights& moe = L->moe;
  DS_ASSIGN_OR_RETURN(moe.router, bind_linear(ctx, m + "gate", c.num_experts, h, false));
  DS_RETURN_IF_ERROR(detail::bind_experts(ctx, m, core, &moe));
  const int64_t ish = c.shared_expert_intermediate_size;
  if (ish > 0) {
    const std::string s = m + "shared_expert.";
    DS_ASSIGN_OR_RETURN(moe.shared_expert.gate_proj, bind_linear(ctx, s + "gate_proj", ish, h, core));
    DS_ASSIGN_OR_RETURN(moe.shared_expert.up_proj, bind_linear(ctx, s + "up_proj", ish, h, core));
    DS_ASSIGN_OR_RETURN(moe.shared_expert.down_proj, bind_linear(ctx, s + "down_proj", h, ish, core));
    DS_ASSIGN_OR_RETURN(moe.shared_expert_gate, bind_linear(ctx, m + "shared_expert_gate", 1, h, false));
  }
  return {};
}

// Vision tensor shapes of the Qwen3-VL ViT (qwen35-arch.md §5), for config-only estimates.
std::vector<TensorView> estimate_vision(const VisionConfig& v, DType dt) {
  std::vector<TensorView> out;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    TensorView t;
    t.name = "model.visual." + n;
    t.dtype = dt;
    t.shape = std::move(shape);
    t.nbytes = static_cast<size_t>(t.numel()) * dtype_size(dt);
    out.push_back(std::move(t));
  };
  const int64_t d = v.hidden_size, f = v.intermediate_size, m = d * v.spatial_merge_size * v.spatial_merge_size;
  add("patch_embed.proj.weight", {d, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  add("patch_embed.proj.bias", {d});
  add("pos_embed.weight", {v.num_position_embeddings, d});
  for (int i = 0; i < v.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.proj.bias",
                          "mlp.linear_fc2.bias"})
      add(b + n, {d});
    add(b + "attn.qkv.weight", {3 * d, d});
    add(b + "attn.qkv.bias", {3 * d});
    add(b + "attn.proj.weight", {d, d});
    add(b + "mlp.linear_fc1.weight", {f, d});
    add(b + "mlp.linear_fc1.bias", {f});
    add(b + "mlp.linear_fc2.weight", {d, f});
  }
  add("merger.norm.weight", {d});
  add("merger.norm.bias", {d});
  add("merger.linear_fc1.weight", {m, m});
  add("merger.linear_fc1.bias", {m});
  add("merger.linear_fc2.weight", {v.out_hidden_size, m});
  add("merger.linear_fc2.bias", {v.out_hidden_size});
  return out;
}

Status bind_mtp(LoadContext& ctx, ModelDesc* desc) {
  const ModelConfig& c = desc->config;
  int n_layers = 0;
  if (ctx.config_only()) {
    n_layers = c.mtp_num_hidden_layers;
  } else {
    bool any = false;
    for (auto it = ctx.storage->tensors().lower_bound("mtp."); it != ctx.storage->tensors().end(); ++it) {
      if (it->first.rfind("mtp.", 0) != 0) break;
      any = true;
      if (it->first.rfind("mtp.layers.", 0) == 0) {
        const int idx = std::atoi(it->first.c_str() + 11);
        if (idx >= 0 && idx < 64) n_layers = std::max(n_layers, idx + 1);
      }
    }
    if (!any) return {};
  }
  if (n_layers == 0) return {};
  MtpWeights& mtp = desc->mtp;
  const int64_t h = c.hidden_size;
  DS_ASSIGN_OR_RETURN(mtp.fc, bind_linear(ctx, "mtp.fc", h, 2 * h, false));
  DS_ASSIGN_OR_RETURN(mtp.pre_fc_norm_embedding, bind_tensor(ctx, "mtp.pre_fc_norm_embedding.weight", {h}));
  DS_ASSIGN_OR_RETURN(mtp.pre_fc_norm_hidden, bind_tensor(ctx, "mtp.pre_fc_norm_hidden.weight", {h}));
  DS_ASSIGN_OR_RETURN(mtp.norm, bind_tensor(ctx, "mtp.norm.weight", {h}));
  mtp.layers.resize(static_cast<size_t>(n_layers));
  for (int i = 0; i < n_layers; ++i)
    DS_RETURN_IF_ERROR(bind_layer(ctx, "mtp.layers." + std::to_string(i) + ".", LayerKind::kFullAttention, false,
                                  &mtp.layers[static_cast<size_t>(i)]));
  mtp.present = true;
  return {};
}

// vLLM fuses q/k/v, in_proj_qkv/z, in_proj_b/a and gate/up into one module each and refuses a
// checkpoint whose shards are quantized differently ("Detected some but not all shards ... are
// quantized"). We run such checkpoints (every module has its own scheme) but say vLLM would not.
void warn_mixed_fused_shards(const ModelDesc& m, std::vector<std::string>* warnings) {
  int count = 0;
  std::string first;
  auto check = [&](std::initializer_list<const LinearWeight*> group, const char* fused) {
    const LinearWeight* a = *group.begin();
    for (const LinearWeight* b : group) {
      if (!a->present() && a->stored_bytes() == 0) return;
      if (b->scheme.quantized() != a->scheme.quantized()) {
        if (count++ == 0) first = b->name + " is " + describe_scheme(b->scheme) + " but " + a->name + " is " +
                                  describe_scheme(a->scheme) + " (vLLM fuses them into " + fused + ")";
        return;
      }
    }
  };
  for (const auto& L : m.layers) {
    if (L.kind == LayerKind::kFullAttention) check({&L.attn.q_proj, &L.attn.k_proj, &L.attn.v_proj}, "qkv_proj");
    else check({&L.gdn.in_proj_qkv, &L.gdn.in_proj_z}, "in_proj_qkvz");
    if (!L.is_moe) check({&L.mlp.gate_proj, &L.mlp.up_proj}, "gate_up_proj");
    else check({&L.moe.shared_expert.gate_proj, &L.moe.shared_expert.up_proj}, "shared_expert.gate_up_proj");
  }
  if (count)
    warnings->push_back(std::to_string(count) + " fused module(s) mix quantized and unquantized shards, which vLLM "
                        "refuses; e.g. " + first);
}

}  // namespace

Result<ModelDesc> load_model(const std::string& model_arg, const LoadOptions& options) {
  DS_ASSIGN_OR_RETURN(std::string dir, resolve_model_dir(model_arg, options.revision));
  return load_model_dir(dir, options);
}

Result<ModelDesc> load_model_dir(const std::string& dir, const LoadOptions& options) {
  std::error_code ec;
  const std::string config_path = dir + "/config.json";
  if (!fs::is_regular_file(config_path, ec)) return not_found("no config.json in " + dir);
  DS_ASSIGN_OR_RETURN(ordered_json cj, read_json_file(config_path));
  ModelDesc desc;
  desc.path = dir;
  DS_ASSIGN_OR_RETURN(desc.config, parse_model_config(cj));
  ModelConfig& c = desc.config;
  DS_ASSIGN_OR_RETURN(desc.generation, read_generation_defaults(dir));
  desc.tokenizer_files = list_tokenizer_files(dir);
  desc.extra_files = read_extra_files(dir);

  // quantization_config: config.json (top level, or text_config), else quantize_config.json.
  const ordered_json* qc = nullptr;
  std::string qc_source = "config.json";
  ordered_json qfile;
  if (cj.contains("quantization_config")) qc = &cj["quantization_config"];
  else if (cj.contains("text_config") && cj["text_config"].is_object() && cj["text_config"].contains("quantization_config"))
    qc = &cj["text_config"]["quantization_config"];
  else if (fs::is_regular_file(dir + "/quantize_config.json", ec)) {
    DS_ASSIGN_OR_RETURN(qfile, read_json_file(dir + "/quantize_config.json"));
    qc = &qfile;
    qc_source = "quantize_config.json";
  }
  DS_ASSIGN_OR_RETURN(QuantRules rules, QuantRules::parse(qc, qc_source));
  desc.quant_method = rules.method();
  desc.quant_summary = rules.describe();

  LoadContext ctx;
  ctx.cfg = &c;
  ctx.rules = &rules;
  ctx.model_dtype = dtype_from_torch(c.torch_dtype);
  if (!options.config_only) {
    DS_ASSIGN_OR_RETURN(desc.storage, WeightStorage::open_dir(dir));
    if (desc.storage->empty()) {
      if (!options.allow_config_only) return not_found("no *.safetensors weights in " + dir);
      desc.storage.reset();
    }
  }
  ctx.storage = desc.storage.get();
  desc.config_only = ctx.storage == nullptr;

  // Confirm the text-model prefix from the tensors: configs of multimodal repackagings do not always
  // name the architecture that matches their weight names.
  if (ctx.storage) {
    if (ctx.storage->find("model.language_model.embed_tokens.weight")) c.weight_prefix = "model.language_model.";
    else if (ctx.storage->find("model.embed_tokens.weight")) c.weight_prefix = "model.";
  }
  const std::string& P = c.weight_prefix;
  const int64_t h = c.hidden_size, v = c.vocab_size;
  DS_ASSIGN_OR_RETURN(desc.embed_tokens, bind_tensor(ctx, P + "embed_tokens.weight", {v, h}));
  DS_ASSIGN_OR_RETURN(desc.final_norm, bind_tensor(ctx, P + "norm.weight", {h}));
  if (c.tie_word_embeddings) {
    desc.lm_head.name = "lm_head";
    desc.lm_head.out_features = v;
    desc.lm_head.in_features = h;
    desc.lm_head.scheme = QuantScheme{16, -1, true, false, false, "none"};
    desc.lm_head.weight = desc.embed_tokens;
    if (ctx.storage && ctx.storage->find("lm_head.weight")) ctx.used.insert("lm_head.weight");  // tied copy
  } else {
    DS_ASSIGN_OR_RETURN(desc.lm_head, bind_linear(ctx, "lm_head", v, h, false, /*is_lm_head=*/true));
  }

  desc.layers.resize(static_cast<size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i)
    DS_RETURN_IF_ERROR(bind_layer(ctx, P + "layers." + std::to_string(i) + ".", c.layer_types[static_cast<size_t>(i)],
                                  true, &desc.layers[static_cast<size_t>(i)]));
  if (options.load_mtp) DS_RETURN_IF_ERROR(bind_mtp(ctx, &desc));

  if (options.load_vision) {
    if (ctx.storage) {
      for (const auto& [name, t] : ctx.storage->tensors())
        if (name.rfind("model.visual.", 0) == 0) {
          desc.vision_tensors.push_back(t);
          ctx.used.insert(name);
        }
    } else if (c.vision.present && c.vision.depth > 0) {
      desc.vision_tensors = estimate_vision(c.vision, ctx.model_dtype);
    }
  }

  DS_RETURN_IF_ERROR(rules.check_rules_used());
  warn_mixed_fused_shards(desc, &desc.warnings);
  for (const auto& k : rules.unused_extra_config_keys())
    desc.warnings.push_back(qc_source + " extra_config['" + k + "'] matches no module");
  if (ctx.storage) {
    for (const auto& [name, t] : ctx.storage->tensors()) {
      if (ctx.used.count(name)) continue;
      const bool skipped = (!options.load_mtp && name.rfind("mtp.", 0) == 0) ||
                           (!options.load_vision && name.rfind("model.visual.", 0) == 0);
      if (!skipped) desc.unused_tensors.push_back(name);
    }
    if (!desc.unused_tensors.empty())
      desc.warnings.push_back(std::to_string(desc.unused_tensors.size()) + " tensor(s) in the checkpoint are not used, e.g. '" +
                              desc.unused_tensors.front() + "'");
    for (const auto& s : ctx.storage->unindexed_shards())
      desc.warnings.push_back("shard " + s + " is not in model.safetensors.index.json; loaded anyway");
  }
  for (const auto& w : desc.warnings) DS_WARN << w;
  return desc;
}

}  // namespace ds::model
