#include "deltaserve/model/inspect.h"

#include <cinttypes>
#include <cstdio>
#include <map>
#include <sstream>

#include "deltaserve/model/model_walk.h"
#include "deltaserve/model/quant_rules.h"
#include "deltaserve/model/safetensors.h"

namespace ds::model {

std::string format_bytes(uint64_t b) {
  char buf[64];
  const double d = static_cast<double>(b);
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", d / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", d / (1ull << 20));
  else if (b >= (1ull << 10)) std::snprintf(buf, sizeof buf, "%.1f KiB", d / (1ull << 10));
  else std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  return buf;
}

namespace {

// "[L L L F] x 12" when the pattern repeats with a short period, else one letter per layer.
std::string layer_pattern(const std::vector<LayerKind>& t) {
  const size_t n = t.size();
  for (size_t period = 1; period <= 8 && period <= n; ++period) {
    if (n % period) continue;
    bool ok = true;
    for (size_t i = period; i < n && ok; ++i) ok = t[i] == t[i % period];
    if (!ok) continue;
    std::string s = "[";
    for (size_t i = 0; i < period; ++i) s += std::string(i ? " " : "") + (t[i] == LayerKind::kFullAttention ? "F" : "L");
    return s + "] x " + std::to_string(n / period);
  }
  std::string s;
  for (LayerKind k : t) s += k == LayerKind::kFullAttention ? 'F' : 'L';
  return s;
}

// Manifest spelling of a float dtype (tests/fixtures/reference/*/modules.json).
const char* short_dtype(DType t) {
  switch (t) {
    case DType::kBF16: return "bf16";
    case DType::kF16: return "fp16";
    case DType::kF32: return "fp32";
    default: return dtype_name(t);
  }
}

// One Linear: its scheme, shape and where it is stored. "tensor" names the stored tensor it views (the
// fused 3-D tensor for experts.gate_up_proj / down_proj slices).
ordered_json module_json(const LinearWeight& w, Component component) {
  const QuantScheme& s = w.scheme;
  ordered_json j;
  j["name"] = w.name;
  j["component"] = component_name(component);
  j["in_features"] = w.in_features;
  j["out_features"] = w.out_features;
  j["format"] = s.quantized() ? "gptq" : "plain";
  j["bits"] = s.quantized() ? s.bits : 16;
  j["group_size"] = s.quantized() ? s.group_size : -1;
  j["sym"] = s.quantized() && s.sym;
  j["desc_act"] = s.quantized() && s.desc_act;
  j["zeros_v2"] = s.quantized() && s.zeros_v2;
  j["method"] = s.quantized() ? s.method : "none";
  // plain: the weight's dtype; GPTQ: the scales' dtype (qweight is always int32)
  j["dtype"] = short_dtype(s.quantized() ? w.scales.dtype : w.weight.dtype);
  j["scheme"] = describe_scheme(s, w.weight.dtype == DType::kUnknown ? DType::kBF16 : w.weight.dtype);
  j["tensor"] = s.quantized() ? w.qweight.name : w.weight.name;
  j["bytes"] = w.stored_bytes();
  return j;
}

// Vision Linears (2-D .weight, with an optional .bias), listed like the text ones.
void vision_modules(const ModelDesc& m, ordered_json* out) {
  std::map<std::string, const TensorView*> by_name;
  for (const auto& t : m.vision_tensors) by_name[t.name] = &t;
  for (const auto& [name, t] : by_name) {
    if (t->shape.size() != 2 || name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0 ||
        name.find("pos_embed") != std::string::npos)
      continue;
    LinearWeight w;
    w.name = name.substr(0, name.size() - 7);
    w.out_features = t->shape[0];
    w.in_features = t->shape[1];
    w.weight = *t;
    if (auto b = by_name.find(w.name + ".bias"); b != by_name.end()) w.bias = *b->second;
    out->push_back(module_json(w, Component::kVision));
  }
}

}  // namespace

Result<ordered_json> inspect_report(const ModelDesc& m, const InspectOptions& o) {
  DS_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(m, o.memory));
  const ModelConfig& c = m.config;
  ordered_json r;
  r["path"] = m.path;
  r["source"] = m.config_only ? "config-only" : "weights";
  if (m.config_only)
    r["source_note"] = o.load.config_only ? "--config-only: sizes estimated from config.json and the quantization rules"
                                          : "no *.safetensors in the directory: sizes estimated from config.json and "
                                            "the quantization rules";
  else {
    r["shards"] = m.storage ? m.storage->shard_paths().size() : 0;
    r["checkpoint_bytes"] = m.storage ? m.storage->total_bytes() : 0;
  }
  r["architecture"] = c.architecture;
  r["model_type"] = c.model_type;
  r["weight_prefix"] = c.weight_prefix;
  r["dtype"] = c.torch_dtype;

  ordered_json d;
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["num_layers"] = c.num_layers;
  d["num_attention_heads"] = c.num_heads;
  d["num_key_value_heads"] = c.num_kv_heads;
  d["head_dim"] = c.head_dim;
  d["rotary_dim"] = c.rotary_dim();
  d["linear_num_key_heads"] = c.linear_num_key_heads;
  d["linear_num_value_heads"] = c.linear_num_value_heads;
  d["linear_key_head_dim"] = c.linear_key_head_dim;
  d["linear_value_head_dim"] = c.linear_value_head_dim;
  d["linear_conv_kernel_dim"] = c.linear_conv_kernel_dim;
  d["conv_dim"] = c.conv_dim();
  d["is_moe"] = c.is_moe;
  if (c.is_moe) {
    d["num_experts"] = c.num_experts;
    d["num_experts_per_tok"] = c.num_experts_per_tok;
    d["moe_intermediate_size"] = c.moe_intermediate_size;
    d["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
  } else {
    d["intermediate_size"] = c.intermediate_size;
  }
  d["max_position_embeddings"] = c.max_position_embeddings;
  d["tie_word_embeddings"] = c.tie_word_embeddings;
  r["dims"] = d;
  r["rope"] = {{"type", c.rope.type},
               {"theta", c.rope.theta},
               {"partial_rotary_factor", c.rope.partial_rotary_factor},
               {"mrope_section", c.rope.mrope_section},
               {"mrope_interleaved", c.rope.mrope_interleaved}};

  ordered_json layers;
  layers["pattern"] = layer_pattern(c.layer_types);
  std::vector<int> full;
  for (size_t i = 0; i < c.layer_types.size(); ++i)
    if (c.layer_types[i] == LayerKind::kFullAttention) full.push_back(static_cast<int>(i));
  layers["num_full_attention"] = full.size();
  layers["num_linear_attention"] = c.layer_types.size() - full.size();
  layers["full_attention_layers"] = full;
  r["layers"] = layers;
  r["quantization"] = {{"method", m.quant_method}, {"summary", m.quant_summary}};

  ordered_json comps = ordered_json::array();
  for (const auto& cm : plan.components)
    comps.push_back({{"component", component_name(cm.component)},
                     {"formats", cm.formats},
                     {"modules", cm.modules},
                     {"bytes", cm.bytes},
                     {"bytes_per_rank", cm.bytes_per_rank},
                     {"counted", cm.counted}});
  r["components"] = comps;

  // Linear modules grouped by (component, format).
  std::map<std::pair<int, std::string>, std::pair<int64_t, uint64_t>> groups;
  ordered_json modules = ordered_json::array();
  visit_linears(m, [&](const LinearRef& ref) {
    const DType dt = ref.w->weight.dtype == DType::kUnknown ? DType::kBF16 : ref.w->weight.dtype;
    auto& g = groups[{static_cast<int>(ref.component), describe_scheme(ref.w->scheme, dt)}];
    g.first += 1;
    g.second += ref.w->stored_bytes();
    if (o.list_modules) modules.push_back(module_json(*ref.w, ref.component));
  });
  if (o.list_modules) vision_modules(m, &modules);
  ordered_json fmts = ordered_json::array();
  for (const auto& [key, val] : groups)
    fmts.push_back({{"component", component_name(static_cast<Component>(key.first))},
                    {"format", key.second},
                    {"modules", val.first},
                    {"bytes", val.second}});
  r["formats"] = fmts;
  if (o.list_modules) r["modules"] = modules;

  uint64_t mtp_bytes = 0, vision_bytes = 0;
  for (const auto& cm : plan.components) {
    if (cm.component == Component::kMtp) mtp_bytes = cm.bytes;
    if (cm.component == Component::kVision) vision_bytes = cm.bytes;
  }
  r["mtp"] = {{"present", m.mtp.present}, {"layers", m.mtp.layers.size()}, {"bytes", mtp_bytes},
              {"counted", o.memory.include_mtp}};
  r["vision"] = {{"configured", c.vision.present}, {"tensors", m.vision_tensors.size()}, {"bytes", vision_bytes},
                 {"counted", o.memory.include_vision}};

  ordered_json mem;
  mem["tensor_parallel_size"] = o.memory.tensor_parallel_size;
  mem["max_model_len"] = plan.max_model_len;
  mem["weights_bytes"] = plan.weight_bytes;
  mem["weights_bytes_per_rank"] = plan.weight_bytes_per_rank;
  mem["num_attention_layers"] = plan.num_attention_layers;
  mem["num_gdn_layers"] = plan.num_gdn_layers;
  mem["kv_heads_per_rank"] = plan.kv_heads_per_rank;
  mem["kv_cache_dtype_bytes"] = o.memory.kv_cache_dtype_bytes;
  mem["kv_bytes_per_token"] = plan.kv_bytes_per_token;
  mem["conv_state_bytes_per_seq"] = plan.conv_state_bytes_per_seq;
  mem["ssm_state_bytes_per_seq"] = plan.ssm_state_bytes_per_seq;
  mem["gdn_state_bytes_per_seq"] = plan.gdn_state_bytes_per_seq;
  mem["reserve"] = {{"activation_bytes", plan.activation_bytes},
                    {"max_num_batched_tokens", o.memory.max_num_batched_tokens},
                    {"logits_bytes", plan.logits_bytes},
                    {"runtime_overhead_bytes", plan.runtime_overhead_bytes},
                    {"total_bytes", plan.reserve_bytes}};
  if (plan.fit_computed)
    mem["fit"] = {{"gpu_memory_gib", o.memory.gpu_memory_gib},
                  {"gpu_memory_utilization", o.memory.gpu_memory_utilization},
                  {"budget_bytes", plan.budget_bytes},
                  {"cache_bytes", plan.cache_bytes},
                  {"max_num_seqs", o.memory.max_num_seqs},
                  {"kv_tokens", plan.kv_tokens},
                  {"max_seqs_at_max_model_len", plan.max_seqs_at_max_len},
                  {"fits", plan.fits}};
  mem["notes"] = plan.notes;
  r["memory"] = mem;

  ordered_json gen;
  if (!m.generation.eos_token_ids.empty()) gen["eos_token_id"] = m.generation.eos_token_ids;
  if (m.generation.temperature) gen["temperature"] = *m.generation.temperature;
  if (m.generation.top_p) gen["top_p"] = *m.generation.top_p;
  if (m.generation.top_k) gen["top_k"] = *m.generation.top_k;
  if (m.generation.min_p) gen["min_p"] = *m.generation.min_p;
  if (m.generation.repetition_penalty) gen["repetition_penalty"] = *m.generation.repetition_penalty;
  if (m.generation.max_new_tokens) gen["max_new_tokens"] = *m.generation.max_new_tokens;
  r["generation"] = gen.is_null() ? ordered_json::object() : gen;
  r["tokenizer_files"] = m.tokenizer_files;
  ordered_json extra = ordered_json::array();
  for (const auto& [name, text] : m.extra_files) extra.push_back(name);
  r["extra_files"] = extra;
  r["unused_tensors"] = m.unused_tensors.size();
  r["warnings"] = m.warnings;
  return r;
}

Result<ordered_json> inspect_model(const std::string& model_arg, const InspectOptions& o) {
  DS_ASSIGN_OR_RETURN(ModelDesc m, load_model(model_arg, o.load));
  return inspect_report(m, o);
}

}  // namespace ds::model
