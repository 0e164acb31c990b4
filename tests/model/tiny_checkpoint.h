// Test helpers: a minimal safetensors writer and a generator of tiny Qwen3.5 checkpoints (config.json
// + shards) with any quantization layout, so loader tests can build good and broken files in place.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace ds::testing {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

struct StTensor {
  std::string dtype;  // "BF16", "F16", "F32", "I32"
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

inline size_t st_dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "BF16" || d == "F16" || d == "I16") return 2;
  if (d == "F64" || d == "I64") return 8;
  return 1;
}

// Tensors in insertion order; bytes() is the exact safetensors image.
class StWriter {
 public:
  StTensor& add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    StTensor t{dtype, std::move(shape), std::vector<uint8_t>(static_cast<size_t>(n) * st_dtype_size(dtype))};
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<uint8_t>((i * 31 + names_.size()) & 0x3f);
    names_.push_back(name);
    tensors_[name] = std::move(t);
    return tensors_[name];
  }
  void add_i32(const std::string& name, std::vector<int64_t> shape, const std::vector<int32_t>& values) {
    StTensor& t = add(name, "I32", std::move(shape));
    std::memcpy(t.data.data(), values.data(), t.data.size());
  }
  bool has(const std::string& n) const { return tensors_.count(n) > 0; }
  void remove(const std::string& n) {
    tensors_.erase(n);
    names_.erase(std::remove(names_.begin(), names_.end(), n), names_.end());
  }
  const std::vector<std::string>& names() const { return names_; }
  StTensor& at(const std::string& n) { return tensors_.at(n); }

  // Header JSON can be tampered with by the caller before serialising.
  ojson header() const {
    ojson h = ojson::object();
    h["__metadata__"] = {{"format", "pt"}};
    size_t off = 0;
    for (const auto& n : names_) {
      const StTensor& t = tensors_.at(n);
      h[n] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.data.size()}}};
      off += t.data.size();
    }
    return h;
  }
  std::string bytes(const ojson& header) const {
    std::string h = header.dump();
    while (h.size() % 8) h += ' ';
    std::string out(8, '\0');
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    out += h;
    for (const auto& name : names_) out.append(reinterpret_cast<const char*>(tensors_.at(name).data.data()), tensors_.at(name).data.size());
    return out;
  }
  std::string bytes() const { return bytes(header()); }
  void write(const std::string& path) const { write_file(path, bytes()); }

  static void write_file(const std::string& path, const std::string& content) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
  }

 private:
  std::vector<std::string> names_;
  std::map<std::string, StTensor> tensors_;
};

struct Scheme {
  int bits = 16;  // 16: unquantized BF16 .weight
  int group_size = 32;
  bool sym = true;
  bool desc_act = false;
  bool g_idx = true;  // write g_idx (AutoRound does not)
};

// A tiny Qwen3.5: H 64, 4 layers [L L L F], 2 q / 1 kv heads x 32, GDN 2 k / 4 v heads x 16, MoE 4
// experts (I 32, shared 32) or dense (I 96), vocab 128.
struct TinySpec {
  bool moe = true;
  bool fused_experts = false;  // 3-D bf16 experts.gate_up_proj / down_proj
  bool multimodal = true;      // model.language_model. prefix + vision_config + model.visual.*
  bool tie = false;
  bool mtp = true;
  Scheme lm_head{16};  // lm_head's storage (GPTQ `lm_head: true` checkpoints quantize it)
  std::function<Scheme(const std::string&)> scheme = [](const std::string&) { return Scheme{}; };
  ojson quantization_config;  // null: unquantized
};

struct TinyDims {
  static constexpr int64_t H = 64, V = 128, L = 4, NH = 2, NKV = 1, HD = 32, HK = 2, HV = 4, DK = 16, DV = 16,
                           CONV = 2 * HK * DK + HV * DV, E = 4, I = 32, ISH = 32, IDENSE = 96, KC = 4;
};

inline void add_linear(StWriter& w, const std::string& name, int64_t n, int64_t k, const Scheme& s) {
  if (s.bits >= 16) {
    w.add(name + ".weight", "BF16", {n, k});
    return;
  }
  const int64_t pf = 32 / s.bits, g = s.group_size > 0 ? k / s.group_size : 1;
  w.add(name + ".qweight", "I32", {k / pf, n});
  w.add(name + ".qzeros", "I32", {g, n / pf});
  w.add(name + ".scales", "F16", {g, n});
  if (s.g_idx) {
    std::vector<int32_t> idx(static_cast<size_t>(k));
    const int64_t gs = s.group_size > 0 ? s.group_size : k;
    for (int64_t i = 0; i < k; ++i) idx[static_cast<size_t>(i)] = static_cast<int32_t>(s.desc_act ? (i * 7 % k) / gs : i / gs);
    w.add_i32(name + ".g_idx", {k}, idx);
  }
}

inline void add_layer(StWriter& w, const TinySpec& sp, const std::string& p, bool full) {
  using D = TinyDims;
  auto S = [&](const std::string& n) { return sp.scheme(n); };
  w.add(p + "input_layernorm.weight", "BF16", {D::H});
  w.add(p + "post_attention_layernorm.weight", "BF16", {D::H});
  if (full) {
    const std::string a = p + "self_attn.";
    add_linear(w, a + "q_proj", 2 * D::NH * D::HD, D::H, S(a + "q_proj"));
    add_linear(w, a + "k_proj", D::NKV * D::HD, D::H, S(a + "k_proj"));
    add_linear(w, a + "v_proj", D::NKV * D::HD, D::H, S(a + "v_proj"));
    add_linear(w, a + "o_proj", D::H, D::NH * D::HD, S(a + "o_proj"));
    w.add(a + "q_norm.weight", "BF16", {D::HD});
    w.add(a + "k_norm.weight", "BF16", {D::HD});
  } else {
    const std::string g = p + "linear_attn.";
    add_linear(w, g + "in_proj_qkv", D::CONV, D::H, S(g + "in_proj_qkv"));
    add_linear(w, g + "in_proj_z", D::HV * D::DV, D::H, S(g + "in_proj_z"));
    add_linear(w, g + "in_proj_b", D::HV, D::H, Scheme{16});
    add_linear(w, g + "in_proj_a", D::HV, D::H, Scheme{16});
    add_linear(w, g + "out_proj", D::H, D::HV * D::DV, S(g + "out_proj"));
    w.add(g + "conv1d.weight", "BF16", {D::CONV, 1, D::KC});
    w.add(g + "A_log", "F32", {D::HV});
    w.add(g + "dt_bias", "BF16", {D::HV});
    w.add(g + "norm.weight", "BF16", {D::DV});
  }
  const std::string m = p + "mlp.";
  if (!sp.moe) {
    add_linear(w, m + "gate_proj", D::IDENSE, D::H, S(m + "gate_proj"));
    add_linear(w, m + "up_proj", D::IDENSE, D::H, S(m + "up_proj"));
    add_linear(w, m + "down_proj", D::H, D::IDENSE, S(m + "down_proj"));
    return;
  }
  w.add(m + "gate.weight", "BF16", {D::E, D::H});
  if (sp.fused_experts) {
    w.add(m + "experts.gate_up_proj", "BF16", {D::E, 2 * D::I, D::H});
    w.add(m + "experts.down_proj", "BF16", {D::E, D::H, D::I});
  } else {
    for (int e = 0; e < D::E; ++e) {
      const std::string x = m + "experts." + std::to_string(e) + ".";
      add_linear(w, x + "gate_proj", D::I, D::H, S(x + "gate_proj"));
      add_linear(w, x + "up_proj", D::I, D::H, S(x + "up_proj"));
      add_linear(w, x + "down_proj", D::H, D::I, S(x + "down_proj"));
    }
  }
  const std::string s = m + "shared_expert.";
  add_linear(w, s + "gate_proj", D::ISH, D::H, S(s + "gate_proj"));
  add_linear(w, s + "up_proj", D::ISH, D::H, S(s + "up_proj"));
  add_linear(w, s + "down_proj", D::H, D::ISH, S(s + "down_proj"));
  w.add(m + "shared_expert_gate.weight", "BF16", {1, D::H});
}

inline ojson tiny_config(const TinySpec& sp) {
  using D = TinyDims;
  ojson text = {{"model_type", sp.moe ? "qwen3_5_moe_text" : "qwen3_5_text"},
                {"hidden_size", D::H},
                {"num_hidden_layers", D::L},
                {"num_attention_heads", D::NH},
                {"num_key_value_heads", D::NKV},
                {"head_dim", D::HD},
                {"linear_num_key_heads", D::HK},
                {"linear_num_value_heads", D::HV},
                {"linear_key_head_dim", D::DK},
                {"linear_value_head_dim", D::DV},
                {"linear_conv_kernel_dim", D::KC},
                {"full_attention_interval", 4},
                {"vocab_size", D::V},
                {"max_position_embeddings", 4096},
                {"rms_norm_eps", 1e-6},
                {"tie_word_embeddings", sp.tie},
                {"mtp_num_hidden_layers", sp.mtp ? 1 : 0},
                {"eos_token_id", 5},
                {"dtype", "bfloat16"},
                {"rope_parameters",
                 {{"rope_type", "default"}, {"rope_theta", 10000000}, {"partial_rotary_factor", 0.25},
                  {"mrope_section", {2, 1, 1}}, {"mrope_interleaved", true}}}};
  if (sp.moe) {
    text["num_experts"] = D::E;
    text["num_experts_per_tok"] = 2;
    text["moe_intermediate_size"] = D::I;
    text["shared_expert_intermediate_size"] = D::ISH;
  } else {
    text["intermediate_size"] = D::IDENSE;
  }
  ojson cfg;
  if (sp.multimodal) {
    cfg["architectures"] = {sp.moe ? "Qwen3_5MoeForConditionalGeneration" : "Qwen3_5ForConditionalGeneration"};
    cfg["model_type"] = sp.moe ? "qwen3_5_moe" : "qwen3_5";
    cfg["text_config"] = text;
    cfg["tie_word_embeddings"] = sp.tie;
    cfg["vision_config"] = {{"depth", 1}, {"hidden_size", 16}, {"num_heads", 2}, {"intermediate_size", 32},
                            {"out_hidden_size", D::H}, {"patch_size", 2}, {"temporal_patch_size", 2},
                            {"spatial_merge_size", 2}, {"in_channels", 3}, {"num_position_embeddings", 4}};
  } else {
    cfg = text;
    cfg["architectures"] = {sp.moe ? "Qwen3_5MoeForCausalLM" : "Qwen3_5ForCausalLM"};
  }
  if (!sp.quantization_config.is_null()) cfg["quantization_config"] = sp.quantization_config;
  return cfg;
}

// Builds all tensors (main model, MTP, vision) into one writer.
inline StWriter tiny_tensors(const TinySpec& sp) {
  using D = TinyDims;
  StWriter w;
  const std::string P = sp.multimodal ? "model.language_model." : "model.";
  w.add(P + "embed_tokens.weight", "BF16", {D::V, D::H});
  w.add(P + "norm.weight", "BF16", {D::H});
  if (!sp.tie) add_linear(w, "lm_head", D::V, D::H, sp.lm_head);
  for (int i = 0; i < D::L; ++i) add_layer(w, sp, P + "layers." + std::to_string(i) + ".", (i + 1) % 4 == 0);
  if (sp.mtp) {
    w.add("mtp.fc.weight", "BF16", {D::H, 2 * D::H});
    w.add("mtp.pre_fc_norm_embedding.weight", "BF16", {D::H});
    w.add("mtp.pre_fc_norm_hidden.weight", "BF16", {D::H});
    w.add("mtp.norm.weight", "BF16", {D::H});
    TinySpec bf = sp;
    bf.scheme = [](const std::string&) { return Scheme{16}; };
    add_layer(w, bf, "mtp.layers.0.", true);
  }
  if (sp.multimodal) {
    w.add("model.visual.patch_embed.proj.weight", "BF16", {16, 3, 2, 2, 2});
    w.add("model.visual.blocks.0.attn.qkv.weight", "BF16", {48, 16});
  }
  return w;
}

// A fresh directory under the test temp dir.
inline std::string fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("ds_model_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

inline void write_json(const std::string& path, const ojson& j) { StWriter::write_file(path, j.dump(2)); }

// Writes config.json + model.safetensors for `sp` into dir and returns dir.
inline std::string write_tiny(const std::string& dir, const TinySpec& sp) {
  write_json(dir + "/config.json", tiny_config(sp));
  tiny_tensors(sp).write(dir + "/model.safetensors");
  return dir;
}

inline ojson gptq_config(int bits, int group_size, bool sym = true, bool desc_act = false) {
  return {{"quant_method", "gptq"}, {"bits", bits}, {"group_size", group_size}, {"sym", sym},
          {"desc_act", desc_act}, {"checkpoint_format", "gptq"}, {"lm_head", false}};
}

}  // namespace ds::testing
