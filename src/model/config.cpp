#include "deltaserve/model/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace ds::model {
namespace fs = std::filesystem;

namespace {

// Typed optional reads: absent or null leaves *out unchanged; a present value of the wrong type is an
// error naming the key.
class Reader {
 public:
  Reader(const ordered_json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Status i64(const char* key, int64_t* out) const {
    const ordered_json* v = find(key);
    if (!v) return {};
    if (v->is_number_integer() || v->is_number_unsigned()) {
      *out = v->get<int64_t>();
      return {};
    }
    // A whole float (`4096.0`) is an integer; the range check comes first because converting an
    // out-of-range double to int64_t is undefined (fuzz_model_config found `5.3e80`).
    const double d = v->is_number_float() ? v->get<double>() : 0.5;
    if (d >= -9.2e18 && d <= 9.2e18 && d == static_cast<double>(static_cast<int64_t>(d))) {
      *out = static_cast<int64_t>(d);
      return {};
    }
    return bad(key, "an integer");
  }
  Status i32(const char* key, int* out) const {
    int64_t x = *out;
    DS_RETURN_IF_ERROR(i64(key, &x));
    if (x < INT32_MIN || x > INT32_MAX) return bad(key, "a 32-bit integer");
    *out = static_cast<int>(x);
    return {};
  }
  Status f64(const char* key, double* out) const {
    const ordered_json* v = find(key);
    if (!v) return {};
    if (!v->is_number()) return bad(key, "a number");
    *out = v->get<double>();
    return {};
  }
  Status boolean(const char* key, bool* out) const {
    const ordered_json* v = find(key);
    if (!v) return {};
    if (!v->is_boolean()) return bad(key, "true or false");
    *out = v->get<bool>();
    return {};
  }
  Status str(const char* key, std::string* out) const {
    const ordered_json* v = find(key);
    if (!v) return {};
    if (!v->is_string()) return bad(key, "a string");
    *out = v->get<std::string>();
    return {};
  }
  // An int or a list of ints (eos_token_id).
  Status ids(const char* key, std::vector<int64_t>* out) const {
    const ordered_json* v = find(key);
    if (!v) return {};
    out->clear();
    if (v->is_number_integer()) {
      out->push_back(v->get<int64_t>());
      return {};
    }
    if (!v->is_array()) return bad(key, "an integer or a list of integers");
    for (const auto& x : *v) {
      if (!x.is_number_integer()) return bad(key, "an integer or a list of integers");
      out->push_back(x.get<int64_t>());
    }
    return {};
  }
  const ordered_json* find(const char* key) const {
    if (!obj_.is_object()) return nullptr;
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

 private:
  Status bad(const char* key, const char* want) const {
    return invalid_argument(where_ + ": '" + key + "' must be " + want);
  }
  const ordered_json& obj_;
  std::string where_;
};

Status parse_rope(const ordered_json& text, const ordered_json& top, ModelConfig* c) {
  // rope_parameters (transformers >= 4.57) or rope_scaling, in text_config or at the top level;
  // rope_theta / partial_rotary_factor may also sit beside them.
  const ordered_json* rp = nullptr;
  for (const ordered_json* o : {&text, &top}) {
    for (const char* key : {"rope_parameters", "rope_scaling"}) {
      if (rp) break;
      auto it = o->is_object() ? o->find(key) : o->end();
      if (o->is_object() && it != o->end() && it->is_object()) rp = &*it;
    }
  }
  Reader t(text, "config.json");
  DS_RETURN_IF_ERROR(t.f64("rope_theta", &c->rope.theta));
  DS_RETURN_IF_ERROR(t.f64("partial_rotary_factor", &c->rope.partial_rotary_factor));
  if (!rp) return {};
  Reader r(*rp, "config.json rope_parameters");
  DS_RETURN_IF_ERROR(r.f64("rope_theta", &c->rope.theta));
  DS_RETURN_IF_ERROR(r.f64("partial_rotary_factor", &c->rope.partial_rotary_factor));
  DS_RETURN_IF_ERROR(r.boolean("mrope_interleaved", &c->rope.mrope_interleaved));
  std::string type;
  DS_RETURN_IF_ERROR(r.str("type", &type));
  DS_RETURN_IF_ERROR(r.str("rope_type", &type));
  if (!type.empty()) c->rope.type = type == "mrope" ? "default" : type;
  if (c->rope.type != "default" && c->rope.type != "yarn")
    return unsupported("config.json: rope_type '" + c->rope.type + "' is not supported (default, yarn)");
  DS_RETURN_IF_ERROR(r.f64("factor", &c->rope.yarn_factor));
  DS_RETURN_IF_ERROR(r.i64("original_max_position_embeddings", &c->rope.original_max_position_embeddings));
  if (const ordered_json* ms = r.find("mrope_section")) {
    if (!ms->is_array()) return invalid_argument("config.json: 'mrope_section' must be a list of integers");
    c->rope.mrope_section.clear();
    for (const auto& x : *ms) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0)
        return invalid_argument("config.json: 'mrope_section' must be a list of non-negative integers");
      c->rope.mrope_section.push_back(x.get<int>());
    }
  }
  return {};
}

Status parse_vision(const ordered_json& top, ModelConfig* c) {
  auto it = top.find("vision_config");
  if (it == top.end() || !it->is_object()) return {};
  VisionConfig& v = c->vision;
  Reader r(*it, "config.json vision_config");
  v.present = true;
  DS_RETURN_IF_ERROR(r.i32("depth", &v.depth));
  DS_RETURN_IF_ERROR(r.i32("hidden_size", &v.hidden_size));
  DS_RETURN_IF_ERROR(r.i32("num_heads", &v.num_heads));
  DS_RETURN_IF_ERROR(r.i32("intermediate_size", &v.intermediate_size));
  DS_RETURN_IF_ERROR(r.i32("out_hidden_size", &v.out_hidden_size));
  DS_RETURN_IF_ERROR(r.i32("patch_size", &v.patch_size));
  DS_RETURN_IF_ERROR(r.i32("temporal_patch_size", &v.temporal_patch_size));
  DS_RETURN_IF_ERROR(r.i32("spatial_merge_size", &v.spatial_merge_size));
  DS_RETURN_IF_ERROR(r.i32("in_channels", &v.in_channels));
  DS_RETURN_IF_ERROR(r.i32("num_position_embeddings", &v.num_position_embeddings));
  return {};
}

Status positive(int64_t v, const char* key) {
  if (v <= 0) return invalid_argument(std::string("config.json: '") + key + "' must be positive");
  return {};
}

// Generous upper bounds (10-100x the largest released model) so a corrupt config cannot make the
// loader allocate or loop without end.
Status at_most(int64_t v, int64_t hi, const char* key) {
  if (v > hi)
    return invalid_argument(std::string("config.json: '") + key + "' = " + std::to_string(v) +
                            " is implausibly large (limit " + std::to_string(hi) + ")");
  return {};
}

Status check_bounds(const ModelConfig& c) {
  DS_RETURN_IF_ERROR(at_most(c.vocab_size, 1 << 23, "vocab_size"));
  DS_RETURN_IF_ERROR(at_most(c.hidden_size, 1 << 17, "hidden_size"));
  DS_RETURN_IF_ERROR(at_most(c.num_layers, 1024, "num_hidden_layers"));
  DS_RETURN_IF_ERROR(at_most(c.num_heads, 4096, "num_attention_heads"));
  DS_RETURN_IF_ERROR(at_most(c.head_dim, 4096, "head_dim"));
  DS_RETURN_IF_ERROR(at_most(c.linear_num_key_heads, 4096, "linear_num_key_heads"));
  DS_RETURN_IF_ERROR(at_most(c.linear_num_value_heads, 4096, "linear_num_value_heads"));
  DS_RETURN_IF_ERROR(at_most(c.linear_key_head_dim, 4096, "linear_key_head_dim"));
  DS_RETURN_IF_ERROR(at_most(c.linear_value_head_dim, 4096, "linear_value_head_dim"));
  DS_RETURN_IF_ERROR(at_most(c.linear_conv_kernel_dim, 64, "linear_conv_kernel_dim"));
  DS_RETURN_IF_ERROR(at_most(c.intermediate_size, 1 << 20, "intermediate_size"));
  DS_RETURN_IF_ERROR(at_most(c.num_experts, 1 << 16, "num_experts"));
  DS_RETURN_IF_ERROR(at_most(c.moe_intermediate_size, 1 << 20, "moe_intermediate_size"));
  DS_RETURN_IF_ERROR(at_most(c.shared_expert_intermediate_size, 1 << 20, "shared_expert_intermediate_size"));
  DS_RETURN_IF_ERROR(at_most(c.mtp_num_hidden_layers, 64, "mtp_num_hidden_layers"));
  if (int64_t{c.num_layers} * c.num_experts > (1 << 20))
    return invalid_argument("config.json: num_hidden_layers x num_experts is implausibly large");
  if (c.mtp_num_hidden_layers < 0) return invalid_argument("config.json: 'mtp_num_hidden_layers' must not be negative");
  if (c.intermediate_size < 0) return invalid_argument("config.json: 'intermediate_size' must not be negative");
  const VisionConfig& v = c.vision;
  if (v.present) {
    struct Bound {
      int64_t value, limit;
      const char* key;
    };
    for (const Bound& b : {Bound{v.depth, 1024, "vision_config.depth"},
                           Bound{v.hidden_size, 1 << 16, "vision_config.hidden_size"},
                           Bound{v.num_heads, 4096, "vision_config.num_heads"},
                           Bound{v.intermediate_size, 1 << 20, "vision_config.intermediate_size"},
                           Bound{v.out_hidden_size, 1 << 17, "vision_config.out_hidden_size"},
                           Bound{v.patch_size, 1024, "vision_config.patch_size"},
                           Bound{v.temporal_patch_size, 64, "vision_config.temporal_patch_size"},
                           Bound{v.spatial_merge_size, 64, "vision_config.spatial_merge_size"},
                           Bound{v.in_channels, 64, "vision_config.in_channels"},
                           Bound{v.num_position_embeddings, 1 << 24, "vision_config.num_position_embeddings"}}) {
      if (b.value < 0) return invalid_argument(std::string("config.json: '") + b.key + "' must not be negative");
      DS_RETURN_IF_ERROR(at_most(b.value, b.limit, b.key));
    }
  }
  return {};
}

}  // namespace

const char* layer_kind_name(LayerKind k) {
  return k == LayerKind::kFullAttention ? "full_attention" : "linear_attention";
}

Result<ordered_json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  ordered_json j = ordered_json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return corrupt(fs::path(path).filename().string() + ": not valid JSON");
  return j;
}

Result<ModelConfig> parse_model_config(const ordered_json& top) {
  if (!top.is_object()) return invalid_argument("config.json: not a JSON object");
  ModelConfig c;
  Reader tr(top, "config.json");
  DS_RETURN_IF_ERROR(tr.str("model_type", &c.model_type));
  if (const ordered_json* a = tr.find("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.architecture = (*a)[0].get<std::string>();
  auto tc = top.find("text_config");
  const bool has_text = tc != top.end() && tc->is_object();
  const ordered_json& text = has_text ? *tc : top;
  Reader r(text, has_text ? "config.json text_config" : "config.json");
  std::string text_type = c.model_type;
  DS_RETURN_IF_ERROR(r.str("model_type", &text_type));
  if (c.model_type.empty()) c.model_type = text_type;
  static const char* kTypes[] = {"qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text"};
  bool known = false;
  for (const char* t : kTypes) known = known || c.model_type == t;
  if (!known)
    return unsupported("config.json: model_type '" + c.model_type +
                       "' is not supported (qwen3_5, qwen3_5_moe, qwen3_5_text, qwen3_5_moe_text)");
  if (c.architecture.empty())
    c.architecture = c.model_type.find("moe") != std::string::npos ? "Qwen3_5MoeForCausalLM" : "Qwen3_5ForCausalLM";
  // Multimodal checkpoints keep the text model under model.language_model.; the loader confirms this
  // against the tensor names when weights are present.
  c.weight_prefix = c.architecture.find("ForConditionalGeneration") != std::string::npos
                        ? "model.language_model."
                        : "model.";

  c.vocab_size = 248320;
  c.head_dim = 256;
  c.max_position_embeddings = 262144;
  c.linear_num_key_heads = 16;
  c.linear_num_value_heads = 32;
  c.linear_key_head_dim = 128;
  c.linear_value_head_dim = 128;
  DS_RETURN_IF_ERROR(r.i64("vocab_size", &c.vocab_size));
  DS_RETURN_IF_ERROR(r.i64("hidden_size", &c.hidden_size));
  DS_RETURN_IF_ERROR(r.i32("num_hidden_layers", &c.num_layers));
  DS_RETURN_IF_ERROR(r.i32("num_attention_heads", &c.num_heads));
  DS_RETURN_IF_ERROR(r.i32("num_key_value_heads", &c.num_kv_heads));
  DS_RETURN_IF_ERROR(r.i32("head_dim", &c.head_dim));
  DS_RETURN_IF_ERROR(r.boolean("attn_output_gate", &c.attn_output_gate));
  DS_RETURN_IF_ERROR(r.i64("max_position_embeddings", &c.max_position_embeddings));
  DS_RETURN_IF_ERROR(r.i32("linear_num_key_heads", &c.linear_num_key_heads));
  DS_RETURN_IF_ERROR(r.i32("linear_num_value_heads", &c.linear_num_value_heads));
  DS_RETURN_IF_ERROR(r.i32("linear_key_head_dim", &c.linear_key_head_dim));
  DS_RETURN_IF_ERROR(r.i32("linear_value_head_dim", &c.linear_value_head_dim));
  DS_RETURN_IF_ERROR(r.i32("linear_conv_kernel_dim", &c.linear_conv_kernel_dim));
  DS_RETURN_IF_ERROR(r.i64("intermediate_size", &c.intermediate_size));
  DS_RETURN_IF_ERROR(r.i32("num_experts", &c.num_experts));
  DS_RETURN_IF_ERROR(r.i32("num_experts_per_tok", &c.num_experts_per_tok));
  DS_RETURN_IF_ERROR(r.i64("moe_intermediate_size", &c.moe_intermediate_size));
  DS_RETURN_IF_ERROR(r.i64("shared_expert_intermediate_size", &c.shared_expert_intermediate_size));
  DS_RETURN_IF_ERROR(r.boolean("norm_topk_prob", &c.norm_topk_prob));
  DS_RETURN_IF_ERROR(r.f64("rms_norm_eps", &c.rms_norm_eps));
  DS_RETURN_IF_ERROR(r.i32("mtp_num_hidden_layers", &c.mtp_num_hidden_layers));
  // tie_word_embeddings: top level wins for multimodal configs (that is what transformers reads).
  DS_RETURN_IF_ERROR(r.boolean("tie_word_embeddings", &c.tie_word_embeddings));
  if (has_text) DS_RETURN_IF_ERROR(tr.boolean("tie_word_embeddings", &c.tie_word_embeddings));
  DS_RETURN_IF_ERROR(tr.str("torch_dtype", &c.torch_dtype));
  DS_RETURN_IF_ERROR(tr.str("dtype", &c.torch_dtype));
  DS_RETURN_IF_ERROR(r.str("torch_dtype", &c.torch_dtype));
  DS_RETURN_IF_ERROR(r.str("dtype", &c.torch_dtype));
  if (c.torch_dtype.empty()) c.torch_dtype = "bfloat16";
  DS_RETURN_IF_ERROR(tr.ids("eos_token_id", &c.eos_token_ids));
  DS_RETURN_IF_ERROR(r.ids("eos_token_id", &c.eos_token_ids));
  DS_RETURN_IF_ERROR(tr.i64("image_token_id", &c.image_token_id));
  DS_RETURN_IF_ERROR(tr.i64("video_token_id", &c.video_token_id));
  DS_RETURN_IF_ERROR(tr.i64("vision_start_token_id", &c.vision_start_token_id));
  DS_RETURN_IF_ERROR(tr.i64("vision_end_token_id", &c.vision_end_token_id));

  c.is_moe = c.model_type.find("moe") != std::string::npos || c.num_experts > 0;
  DS_RETURN_IF_ERROR(positive(c.vocab_size, "vocab_size"));
  DS_RETURN_IF_ERROR(positive(c.hidden_size, "hidden_size"));
  DS_RETURN_IF_ERROR(positive(c.num_layers, "num_hidden_layers"));
  DS_RETURN_IF_ERROR(positive(c.num_heads, "num_attention_heads"));
  DS_RETURN_IF_ERROR(positive(c.num_kv_heads, "num_key_value_heads"));
  DS_RETURN_IF_ERROR(positive(c.head_dim, "head_dim"));
  DS_RETURN_IF_ERROR(positive(c.linear_num_key_heads, "linear_num_key_heads"));
  DS_RETURN_IF_ERROR(positive(c.linear_num_value_heads, "linear_num_value_heads"));
  DS_RETURN_IF_ERROR(positive(c.linear_key_head_dim, "linear_key_head_dim"));
  DS_RETURN_IF_ERROR(positive(c.linear_value_head_dim, "linear_value_head_dim"));
  DS_RETURN_IF_ERROR(positive(c.linear_conv_kernel_dim, "linear_conv_kernel_dim"));
  if (c.num_heads % c.num_kv_heads != 0)
    return invalid_argument("config.json: num_attention_heads " + std::to_string(c.num_heads) +
                            " is not a multiple of num_key_value_heads " + std::to_string(c.num_kv_heads));
  if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
    return invalid_argument("config.json: linear_num_value_heads is not a multiple of linear_num_key_heads");
  if (c.is_moe) {
    DS_RETURN_IF_ERROR(positive(c.num_experts, "num_experts"));
    DS_RETURN_IF_ERROR(positive(c.num_experts_per_tok, "num_experts_per_tok"));
    DS_RETURN_IF_ERROR(positive(c.moe_intermediate_size, "moe_intermediate_size"));
    if (c.num_experts_per_tok > c.num_experts)
      return invalid_argument("config.json: num_experts_per_tok exceeds num_experts");
    if (c.shared_expert_intermediate_size < 0)
      return invalid_argument("config.json: 'shared_expert_intermediate_size' must not be negative");
  } else {
    DS_RETURN_IF_ERROR(positive(c.intermediate_size, "intermediate_size"));
  }

  DS_RETURN_IF_ERROR(check_bounds(c));  // before anything loops over layers
  if (const ordered_json* lt = r.find("layer_types")) {
    if (!lt->is_array() || static_cast<int>(lt->size()) != c.num_layers)
      return invalid_argument("config.json: 'layer_types' must list num_hidden_layers (" +
                              std::to_string(c.num_layers) + ") entries");
    for (const auto& x : *lt) {
      const std::string s = x.is_string() ? x.get<std::string>() : "";
      if (s == "linear_attention") c.layer_types.push_back(LayerKind::kLinearAttention);
      else if (s == "full_attention") c.layer_types.push_back(LayerKind::kFullAttention);
      else return invalid_argument("config.json: layer_types entry '" + x.dump() +
                                   "' is neither linear_attention nor full_attention");
    }
  } else {
    int interval = 4;
    DS_RETURN_IF_ERROR(r.i32("full_attention_interval", &interval));
    if (interval <= 0) return invalid_argument("config.json: 'full_attention_interval' must be positive");
    for (int i = 0; i < c.num_layers; ++i)
      c.layer_types.push_back((i + 1) % interval == 0 ? LayerKind::kFullAttention : LayerKind::kLinearAttention);
  }

  DS_RETURN_IF_ERROR(parse_rope(text, top, &c));
  if (c.rope.partial_rotary_factor <= 0 || c.rope.partial_rotary_factor > 1)
    return invalid_argument("config.json: partial_rotary_factor must be in (0, 1]");
  int msum = 0;
  for (int s : c.rope.mrope_section) msum += s;
  if (!c.rope.mrope_section.empty() && 2 * msum != c.rotary_dim())
    return invalid_argument("config.json: mrope_section sums to " + std::to_string(msum) +
                            " but rotary_dim/2 is " + std::to_string(c.rotary_dim() / 2));
  DS_RETURN_IF_ERROR(parse_vision(top, &c));
  DS_RETURN_IF_ERROR(check_bounds(c));
  return c;
}

Result<GenerationDefaults> read_generation_defaults(const std::string& dir) {
  GenerationDefaults g;
  const std::string path = dir + "/generation_config.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return g;
  DS_ASSIGN_OR_RETURN(ordered_json j, read_json_file(path));
  if (!j.is_object()) return invalid_argument("generation_config.json: not a JSON object");
  Reader r(j, "generation_config.json");
  DS_RETURN_IF_ERROR(r.ids("eos_token_id", &g.eos_token_ids));
  auto opt_f = [&](const char* key, std::optional<double>* out) -> Status {
    double v = 0;
    if (!r.find(key)) return {};
    DS_RETURN_IF_ERROR(r.f64(key, &v));
    *out = v;
    return {};
  };
  auto opt_i = [&](const char* key, std::optional<int64_t>* out) -> Status {
    int64_t v = 0;
    if (!r.find(key)) return {};
    DS_RETURN_IF_ERROR(r.i64(key, &v));
    *out = v;
    return {};
  };
  DS_RETURN_IF_ERROR(opt_f("temperature", &g.temperature));
  DS_RETURN_IF_ERROR(opt_f("top_p", &g.top_p));
  DS_RETURN_IF_ERROR(opt_f("min_p", &g.min_p));
  DS_RETURN_IF_ERROR(opt_f("repetition_penalty", &g.repetition_penalty));
  DS_RETURN_IF_ERROR(opt_i("top_k", &g.top_k));
  DS_RETURN_IF_ERROR(opt_i("max_new_tokens", &g.max_new_tokens));
  return g;
}

std::vector<std::string> list_tokenizer_files(const std::string& dir) {
  static const char* kFiles[] = {"tokenizer.json",          "tokenizer_config.json", "vocab.json",
                                 "merges.txt",              "special_tokens_map.json", "added_tokens.json",
                                 "chat_template.jinja",     "chat_template.json"};
  std::vector<std::string> out;
  std::error_code ec;
  for (const char* f : kFiles)
    if (fs::is_regular_file(dir + "/" + f, ec)) out.push_back(f);
  return out;
}

std::map<std::string, std::string> read_extra_files(const std::string& dir) {
  static const char* kFiles[] = {"preprocessor_config.json", "video_preprocessor_config.json",
                                 "chat_template.jinja", "generation_config.json"};
  std::map<std::string, std::string> out;
  for (const char* f : kFiles) {
    std::ifstream in(dir + "/" + f, std::ios::binary);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    out[f] = ss.str();
  }
  return out;
}

}  // namespace ds::model
