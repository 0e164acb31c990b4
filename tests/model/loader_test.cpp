// Loader: tiny checkpoints written by the test, good and broken, against what the loader reports.
#include <gtest/gtest.h>

#include "deltaserve/model/loader.h"
#include "deltaserve/model/model_walk.h"
#include "tests/model/tiny_checkpoint.h"

namespace ds::model {
namespace {

using namespace ds::testing;
using D = TinyDims;

void expect_error(const Status& s, const std::string& needle) {
  ASSERT_FALSE(s.is_ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(needle), std::string::npos) << "message: " << s.message() << "\nwanted: " << needle;
}

Scheme q(int bits, int gs = 32, bool sym = true, bool desc = false) { return Scheme{bits, gs, sym, desc, true}; }

// The GPTQModel layout: every core projection quantized, the rest (router, in_proj_a/b,
// shared_expert_gate, lm_head, mtp) bf16 — tiny_checkpoint writes those bf16 regardless of scheme.
TinySpec gptq_spec(int bits, int gs) {
  TinySpec sp;
  sp.scheme = [bits, gs](const std::string&) { return q(bits, gs); };
  sp.quantization_config = gptq_config(bits, gs);
  return sp;
}

TEST(Loader, UnquantizedMoePerExpert) {
  TinySpec sp;
  const std::string dir = write_tiny(fresh_dir("bf16_moe"), sp);
  auto r = load_model_dir(dir);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const ModelDesc& m = *r;
  EXPECT_EQ(m.config.weight_prefix, "model.language_model.");
  EXPECT_EQ(m.quant_method, "none");
  ASSERT_EQ(m.layers.size(), 4u);
  EXPECT_EQ(m.layers[3].kind, LayerKind::kFullAttention);
  EXPECT_EQ(m.layers[0].kind, LayerKind::kLinearAttention);
  EXPECT_EQ(m.layers[0].moe.experts.size(), static_cast<size_t>(D::E));
  EXPECT_FALSE(m.layers[0].moe.experts_fused);
  EXPECT_EQ(m.layers[3].attn.q_proj.out_features, 2 * D::NH * D::HD);
  EXPECT_EQ(m.layers[0].gdn.conv1d.shape, (std::vector<int64_t>{D::CONV, 1, D::KC}));
  EXPECT_EQ(m.layers[0].gdn.A_log.dtype, DType::kF32);
  EXPECT_TRUE(m.mtp.present);
  ASSERT_EQ(m.mtp.layers.size(), 1u);
  EXPECT_TRUE(m.mtp.layers[0].attn.q_proj.present());
  EXPECT_EQ(m.vision_tensors.size(), 2u);
  EXPECT_TRUE(m.unused_tensors.empty());
  EXPECT_EQ(m.config.rope.mrope_section, (std::vector<int>{2, 1, 1}));
  // Everything the writer put in the file is accounted for exactly once.
  uint64_t walked = 0;
  visit_linears(m, [&](const LinearRef& l) { walked += l.w->stored_bytes(); });
  visit_tensors(m, [&](const TensorRef& t) { walked += t.t->nbytes; });
  EXPECT_EQ(walked, m.storage->total_bytes());
}

TEST(Loader, FusedExpertsAreSlicedPerExpert) {
  TinySpec sp;
  sp.fused_experts = true;
  const std::string dir = write_tiny(fresh_dir("fused"), sp);
  auto r = load_model_dir(dir);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const MoeWeights& moe = r->layers[1].moe;
  EXPECT_TRUE(moe.experts_fused);
  const TensorView* gu = r->storage->find("model.language_model.layers.1.mlp.experts.gate_up_proj");
  const TensorView* dn = r->storage->find("model.language_model.layers.1.mlp.experts.down_proj");
  ASSERT_TRUE(gu && dn);
  const auto* base = static_cast<const uint8_t*>(gu->data);
  // expert 2: gate rows [0, I), up rows [I, 2I) of gate_up[2]
  EXPECT_EQ(moe.experts[2].gate_proj.weight.data, base + (2 * 2 * D::I * D::H) * 2);
  EXPECT_EQ(moe.experts[2].up_proj.weight.data, base + (2 * 2 * D::I * D::H + D::I * D::H) * 2);
  EXPECT_EQ(moe.experts[2].down_proj.weight.data, static_cast<const uint8_t*>(dn->data) + 2 * D::H * D::I * 2);
  EXPECT_EQ(moe.experts[2].down_proj.weight.shape, (std::vector<int64_t>{D::H, D::I}));
  EXPECT_EQ(moe.experts[3].up_proj.name, "model.language_model.layers.1.mlp.experts.3.up_proj");
}

TEST(Loader, FusedExpertsContradictQuantRule) {
  TinySpec sp = gptq_spec(4, 32);
  sp.fused_experts = true;
  auto r = load_model_dir(write_tiny(fresh_dir("fused_q"), sp));
  expect_error(r.status(), "experts.0.gate_proj: global says int4 g32 sym (gptq v1) but the experts are stored as the fused");
}

TEST(Loader, TiedLmHeadAndTextOnlyPrefix) {
  TinySpec sp;
  sp.tie = true;
  sp.multimodal = false;
  sp.moe = false;
  auto r = load_model_dir(write_tiny(fresh_dir("tied"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->config.weight_prefix, "model.");
  EXPECT_EQ(r->config.architecture, "Qwen3_5ForCausalLM");
  EXPECT_EQ(r->lm_head.weight.data, r->embed_tokens.data);
  EXPECT_FALSE(r->layers[0].is_moe);
  EXPECT_EQ(r->layers[0].mlp.gate_proj.out_features, D::IDENSE);
  EXPECT_TRUE(r->vision_tensors.empty());
  bool lm_head_visited = false;
  visit_linears(*r, [&](const LinearRef& l) { lm_head_visited |= l.component == Component::kLmHead; });
  EXPECT_FALSE(lm_head_visited);  // tied: no bytes of its own
}

TEST(Loader, UntiedWithoutLmHeadIsMissingTensor) {
  TinySpec sp;
  const std::string dir = fresh_dir("no_lm_head");
  write_json(dir + "/config.json", tiny_config(sp));
  StWriter w = tiny_tensors(sp);
  w.remove("lm_head.weight");
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "missing tensor 'lm_head.weight'");
}

TEST(Loader, MissingTensorIsNamed) {
  TinySpec sp;
  const std::string dir = fresh_dir("missing");
  write_json(dir + "/config.json", tiny_config(sp));
  StWriter w = tiny_tensors(sp);
  w.remove("model.language_model.layers.2.linear_attn.A_log");
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "missing tensor 'model.language_model.layers.2.linear_attn.A_log'");
}

TEST(Loader, WrongShapeIsNamed) {
  TinySpec sp;
  const std::string dir = fresh_dir("shape");
  write_json(dir + "/config.json", tiny_config(sp));
  StWriter w = tiny_tensors(sp);
  w.remove("model.language_model.layers.3.self_attn.k_proj.weight");
  w.add("model.language_model.layers.3.self_attn.k_proj.weight", "BF16", {2 * D::HD, D::H});
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "layers.3.self_attn.k_proj.weight' has shape [64, 64], expected [32, 64]");
}

TEST(Loader, GptqInt4) {
  auto r = load_model_dir(write_tiny(fresh_dir("gptq4"), gptq_spec(4, 32)));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const auto& L0 = r->layers[0];
  EXPECT_EQ(r->quant_method, "gptq");
  EXPECT_EQ(L0.gdn.in_proj_qkv.scheme.bits, 4);
  EXPECT_EQ(L0.gdn.in_proj_qkv.scheme.group_size, 32);
  EXPECT_FALSE(L0.gdn.in_proj_qkv.scheme.zeros_v2);
  EXPECT_EQ(L0.gdn.in_proj_qkv.qweight.shape, (std::vector<int64_t>{D::H / 8, D::CONV}));
  EXPECT_EQ(L0.gdn.in_proj_qkv.scales.shape, (std::vector<int64_t>{D::H / 32, D::CONV}));
  EXPECT_EQ(L0.gdn.in_proj_a.scheme.bits, 16);  // quantizers skip these
  EXPECT_EQ(L0.moe.router.scheme.bits, 16);
  EXPECT_EQ(L0.moe.shared_expert_gate.scheme.bits, 16);
  EXPECT_EQ(L0.moe.experts[3].down_proj.scheme.bits, 4);
  EXPECT_EQ(L0.moe.experts[3].down_proj.qweight.shape, (std::vector<int64_t>{D::I / 8, D::H}));
  EXPECT_EQ(r->lm_head.scheme.bits, 16);
  EXPECT_EQ(r->mtp.layers[0].moe.experts[0].gate_proj.scheme.bits, 16);
  EXPECT_TRUE(r->unused_tensors.empty());
}

TEST(Loader, GptqInt8V2FromQuantizeConfigJson) {
  TinySpec sp = gptq_spec(8, 32);
  sp.quantization_config = nullptr;
  const std::string dir = write_tiny(fresh_dir("gptq8"), sp);
  ojson qc = gptq_config(8, 32);
  qc["checkpoint_format"] = "gptq_v2";
  write_json(dir + "/quantize_config.json", qc);
  auto r = load_model_dir(dir);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->layers[3].attn.o_proj.scheme.bits, 8);
  EXPECT_TRUE(r->layers[3].attn.o_proj.scheme.zeros_v2);
  EXPECT_EQ(r->layers[3].attn.o_proj.qweight.shape, (std::vector<int64_t>{D::H / 4, D::H}));
}

TEST(Loader, DescActAndAsym) {
  TinySpec sp;
  sp.scheme = [](const std::string&) { return q(4, 32, false, true); };
  sp.quantization_config = gptq_config(4, 32, false, true);
  auto r = load_model_dir(write_tiny(fresh_dir("desc"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const LinearWeight& o = r->layers[3].attn.o_proj;
  EXPECT_TRUE(o.scheme.desc_act);
  EXPECT_FALSE(o.scheme.sym);
  EXPECT_TRUE(o.g_idx.present());
  EXPECT_TRUE(o.qzeros.present());

  // desc_act without g_idx, asym without qzeros, out-of-range g_idx
  const std::string dir = fresh_dir("desc_bad");
  write_json(dir + "/config.json", tiny_config(sp));
  StWriter w = tiny_tensors(sp);
  w.remove("model.language_model.layers.0.linear_attn.in_proj_z.g_idx");
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "missing tensor 'model.language_model.layers.0.linear_attn.in_proj_z.g_idx' (desc_act");
  w = tiny_tensors(sp);
  w.remove("model.language_model.layers.0.linear_attn.in_proj_z.qzeros");
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "in_proj_z.qzeros' (asymmetric");
  w = tiny_tensors(sp);
  reinterpret_cast<int32_t*>(w.at("model.language_model.layers.0.linear_attn.in_proj_z.g_idx").data.data())[5] = 99;
  w.write(dir + "/model.safetensors");
  expect_error(load_model_dir(dir).status(), "in_proj_z: g_idx[5] = 99 is outside [0, 2)");
}

TEST(Loader, UnsupportedBitsAndGroupSize) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["bits"] = 3;
  expect_error(load_model_dir(write_tiny(fresh_dir("bits3"), sp)).status(), "bits 3 is not supported");

  sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"+:.*experts.*", {{"bits", 3}}}};
  expect_error(load_model_dir(write_tiny(fresh_dir("bits3dyn"), sp)).status(),
               "dynamic rule '+:.*experts.*': bits 3 is not supported");

  sp = gptq_spec(4, 32);
  sp.quantization_config["group_size"] = 48;
  expect_error(load_model_dir(write_tiny(fresh_dir("gs48"), sp)).status(), "group_size 48 is not supported");
}

TEST(Loader, GroupSizeNotDividingK) {
  // g128 over K = hidden 64: the first quantized module is layer 0's in_proj_qkv.
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["group_size"] = 128;
  expect_error(load_model_dir(write_tiny(fresh_dir("gsk"), sp)).status(),
               "model.language_model.layers.0.linear_attn.in_proj_qkv: group_size 128 (global) does not divide in_features K=64");
}

TEST(Loader, SchemeSaysQuantizedButOnlyWeight) {
  TinySpec sp = gptq_spec(4, 32);
  sp.scheme = [](const std::string& n) { return n.find("layers.3.self_attn.v_proj") != std::string::npos ? Scheme{16} : q(4); };
  expect_error(load_model_dir(write_tiny(fresh_dir("onlyweight"), sp)).status(),
               "model.language_model.layers.3.self_attn.v_proj: global says int4 g32 sym (gptq v1) but the checkpoint has "
               "only 'model.language_model.layers.3.self_attn.v_proj.weight'");
}

TEST(Loader, StoredBitsOrGroupsDisagreeWithRule) {
  TinySpec sp = gptq_spec(4, 32);
  sp.scheme = [](const std::string& n) { return n.find("layers.1.mlp.experts.2.up_proj") != std::string::npos ? q(8) : q(4); };
  expect_error(load_model_dir(write_tiny(fresh_dir("bitsmismatch"), sp)).status(),
               "layers.1.mlp.experts.2.up_proj: qweight shape [16, 32] holds 8-bit values for K=64 but global says int4");
  sp.scheme = [](const std::string& n) { return n.find("layers.1.mlp.experts.2.up_proj") != std::string::npos ? q(4, 64) : q(4); };
  expect_error(load_model_dir(write_tiny(fresh_dir("gsmismatch"), sp)).status(),
               "layers.1.mlp.experts.2.up_proj: scales shape [1, 32] means group_size 64 but global says int4 g32");
}

TEST(Loader, DynamicRulesOnCheckpointNames) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"-:.*shared_expert\\..*", ojson::object()},
                                       {"+:.*\\.layers\\.3\\..*", {{"bits", 8}}}};
  sp.scheme = [](const std::string& n) {
    if (n.find("shared_expert.") != std::string::npos) return Scheme{16};
    return n.find(".layers.3.") != std::string::npos ? q(8) : q(4);
  };
  auto r = load_model_dir(write_tiny(fresh_dir("dyn"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->layers[3].attn.q_proj.scheme.bits, 8);
  EXPECT_EQ(r->layers[3].moe.experts[1].down_proj.scheme.bits, 8);
  EXPECT_EQ(r->layers[3].moe.shared_expert.up_proj.scheme.bits, 16);  // first match wins: '-:' before '+:'
  EXPECT_EQ(r->layers[2].moe.experts[1].down_proj.scheme.bits, 4);
  EXPECT_EQ(r->layers[0].moe.shared_expert.gate_proj.scheme.bits, 16);
}

TEST(Loader, DynamicRulesOnVllmFusedNames) {
  TinySpec sp = gptq_spec(4, 32);
  // users write these against vLLM's modules: qkv_proj, in_proj_qkvz, gate_up_proj, one FusedMoE 'experts',
  // and vLLM's own language_model.model. prefix
  sp.quantization_config["dynamic"] = {{"-:.*self_attn\\.qkv_proj", ojson::object()},
                                       {"+:.*linear_attn\\.in_proj_qkvz", {{"bits", 8}}},
                                       {"-:.*shared_expert\\.gate_up_proj", ojson::object()},
                                       {"+:language_model\\.model\\.layers\\.2\\.mlp\\.experts$", {{"bits", 8}}}};
  sp.scheme = [](const std::string& n) {
    auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
    if (has("q_proj") || has("k_proj") || has("v_proj")) return Scheme{16};
    if (has("in_proj_qkv") || has("in_proj_z")) return q(8);
    if (has("shared_expert.gate_proj") || has("shared_expert.up_proj")) return Scheme{16};
    if (has("layers.2.mlp.experts.")) return q(8);
    return q(4);
  };
  auto r = load_model_dir(write_tiny(fresh_dir("dynfused"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->layers[3].attn.k_proj.scheme.bits, 16);
  EXPECT_EQ(r->layers[3].attn.o_proj.scheme.bits, 4);
  EXPECT_EQ(r->layers[0].gdn.in_proj_z.scheme.bits, 8);
  EXPECT_EQ(r->layers[0].gdn.out_proj.scheme.bits, 4);
  EXPECT_EQ(r->layers[1].moe.shared_expert.up_proj.scheme.bits, 16);
  EXPECT_EQ(r->layers[1].moe.shared_expert.down_proj.scheme.bits, 4);
  EXPECT_EQ(r->layers[2].moe.experts[3].down_proj.scheme.bits, 8);
  EXPECT_EQ(r->layers[1].moe.experts[3].down_proj.scheme.bits, 4);
}

TEST(Loader, DynamicRuleMatchingNothing) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"-:.*shared_expert\\..*", ojson::object()},
                                       {"+:model\\.layers\\.0\\.mlp\\.experts", {{"bits", 8}}}};  // wrong prefix
  sp.scheme = [](const std::string& n) { return n.find("shared_expert.") != std::string::npos ? Scheme{16} : q(4); };
  expect_error(load_model_dir(write_tiny(fresh_dir("dynnone"), sp)).status(),
               "dynamic rule '+:model\\.layers\\.0\\.mlp\\.experts' matches no module");
}

TEST(Loader, DynamicNegativeButStoredQuantized) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"-:.*\\.o_proj", ojson::object()}};
  expect_error(load_model_dir(write_tiny(fresh_dir("dynneg"), sp)).status(),
               "layers.3.self_attn.o_proj: stored quantized ('model.language_model.layers.3.self_attn.o_proj.qweight') but "
               "dynamic '-:.*\\.o_proj' says unquantized");
}

TEST(Loader, DynamicRulesInPythonSyntax) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"-:(?P<shared>.*shared_expert\\..*)\\Z", ojson::object()},
                                       {"+:(?i).*\\.LAYERS\\.3\\..*", {{"bits", 8}}}};
  sp.scheme = [](const std::string& n) {
    if (n.find("shared_expert.") != std::string::npos) return Scheme{16};
    return n.find(".layers.3.") != std::string::npos ? q(8) : q(4);
  };
  auto r = load_model_dir(write_tiny(fresh_dir("dynpy"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->layers[3].attn.q_proj.scheme.bits, 8);
  EXPECT_EQ(r->layers[1].moe.shared_expert.up_proj.scheme.bits, 16);

  sp.quantization_config["dynamic"] = {{"+:.*(unclosed", {{"bits", 8}}}};
  expect_error(load_model_dir(write_tiny(fresh_dir("dynbadre"), sp)).status(),
               "dynamic rule '+:.*(unclosed': invalid regular expression");
}

TEST(Loader, MixedFusedShardsLoadWithWarning) {
  TinySpec sp = gptq_spec(4, 32);
  sp.quantization_config["dynamic"] = {{"-:.*self_attn\\.k_proj", ojson::object()}};
  sp.scheme = [](const std::string& n) { return n.find("self_attn.k_proj") != std::string::npos ? Scheme{16} : q(4); };
  auto r = load_model_dir(write_tiny(fresh_dir("mixedfused"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("1 fused module(s) mix quantized and unquantized shards"), std::string::npos);
  EXPECT_NE(r->warnings[0].find("vLLM fuses them into qkv_proj"), std::string::npos) << r->warnings[0];
}

TEST(Loader, QuantizedLmHead) {
  TinySpec sp = gptq_spec(4, 32);
  sp.lm_head = q(4);
  sp.quantization_config["lm_head"] = true;
  auto r = load_model_dir(write_tiny(fresh_dir("lmq"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->lm_head.scheme.bits, 4);
  EXPECT_EQ(r->lm_head.qweight.shape, (std::vector<int64_t>{D::H / 8, D::V}));
  sp.quantization_config["lm_head"] = false;
  expect_error(load_model_dir(write_tiny(fresh_dir("lmq2"), sp)).status(),
               "lm_head: stored quantized ('lm_head.qweight') but lm_head: false says unquantized");
}

TEST(Loader, HuggingFaceCacheAndIndexWithoutShards) {
  const std::string hub = fresh_dir("hub");
  const std::string snap = hub + "/models--Org--Tiny/snapshots/abc123";
  fs::create_directories(snap);
  fs::create_directories(hub + "/models--Org--Tiny/refs");
  StWriter::write_file(hub + "/models--Org--Tiny/refs/main", "abc123\n");
  write_tiny(snap, TinySpec{});
  ::setenv("HF_HUB_CACHE", hub.c_str(), 1);
  auto r = load_model("Org/Tiny");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->path, snap);
  expect_error(load_model("Org/Nope").status(), "model 'Org/Nope' not found");
  ::unsetenv("HF_HUB_CACHE");

  // config.json + index, shards not downloaded: config-only when allowed
  const std::string dir = fresh_dir("index_only");
  write_json(dir + "/config.json", tiny_config(TinySpec{}));
  write_json(dir + "/model.safetensors.index.json", {{"weight_map", {{"lm_head.weight", "model-00001-of-00001.safetensors"}}}});
  LoadOptions o;
  o.allow_config_only = true;
  auto c = load_model_dir(dir, o);
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_TRUE(c->config_only);
}

TEST(Loader, AutoRoundExtraConfig) {
  TinySpec sp;
  sp.quantization_config = {{"quant_method", "auto-round"},
                            {"packing_format", "auto_round:auto_gptq"},
                            {"bits", 4},
                            {"group_size", 32},
                            {"sym", true},
                            {"data_type", "int"},
                            {"block_name_to_quantize", "model.language_model.layers"},
                            {"extra_config",
                             {{"model.language_model.layers.3.self_attn.o_proj", {{"bits", 16}, {"data_type", "float"}}},
                              {"model.language_model.layers.0.linear_attn.in_proj_ba", {{"bits", 16}}},
                              {".*shared_expert\\..*", {{"bits", 16}}},
                              {"model.language_model.layers.1.mlp.experts.0.down_proj", {{"bits", 8}}}}}};
  sp.scheme = [](const std::string& n) {
    Scheme s = q(4);
    s.g_idx = false;  // auto_round:auto_gptq writes no g_idx
    if (n.find("layers.3.self_attn.o_proj") != std::string::npos || n.find("shared_expert.") != std::string::npos)
      return Scheme{16};
    if (n.find("layers.1.mlp.experts.0.down_proj") != std::string::npos) s.bits = 8;
    return s;
  };
  auto r = load_model_dir(write_tiny(fresh_dir("autoround"), sp));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->quant_method, "auto-round");
  EXPECT_EQ(r->layers[3].attn.o_proj.scheme.bits, 16);
  EXPECT_EQ(r->layers[3].attn.q_proj.scheme.bits, 4);
  EXPECT_EQ(r->layers[3].attn.q_proj.scheme.method, "auto-round");
  EXPECT_FALSE(r->layers[3].attn.q_proj.g_idx.present());
  EXPECT_EQ(r->layers[2].moe.shared_expert.down_proj.scheme.bits, 16);
  EXPECT_EQ(r->layers[1].moe.experts[0].down_proj.scheme.bits, 8);
  EXPECT_EQ(r->layers[1].moe.experts[1].down_proj.scheme.bits, 4);
  EXPECT_EQ(r->lm_head.scheme.bits, 16);
  EXPECT_TRUE(r->warnings.empty()) << r->warnings.front();  // every extra_config key matched

  // the same checkpoint without the bits-16 entry for o_proj: int4 expected, only .weight present
  sp.quantization_config["extra_config"].erase("model.language_model.layers.3.self_attn.o_proj");
  sp.quantization_config["block_name_to_quantize"] = {"model.language_model.layers"};
  expect_error(load_model_dir(write_tiny(fresh_dir("autoround_bad"), sp)).status(),
               "layers.3.self_attn.o_proj: global says int4 g32 sym (auto-round v1) but the checkpoint has only");
}

TEST(Loader, UnsupportedQuantMethodAndModelType) {
  TinySpec sp;
  sp.quantization_config = {{"quant_method", "awq"}, {"bits", 4}};
  expect_error(load_model_dir(write_tiny(fresh_dir("awq"), sp)).status(), "quant_method 'awq' is not supported");
  const std::string dir = fresh_dir("llama");
  write_json(dir + "/config.json", {{"model_type", "llama"}, {"hidden_size", 8}});
  expect_error(load_model_dir(dir).status(), "model_type 'llama' is not supported");
}

TEST(Loader, UnindexedExtraShardHoldsMtp) {
  TinySpec sp;
  const std::string dir = fresh_dir("extra_shard");
  write_json(dir + "/config.json", tiny_config(sp));
  StWriter all = tiny_tensors(sp), main, extra;
  ojson wm = ojson::object();
  for (const auto& n : all.names()) {
    StWriter& dst = n.rfind("mtp.", 0) == 0 ? extra : main;
    const StTensor& t = all.at(n);
    dst.add(n, t.dtype, t.shape).data = t.data;
    if (n.rfind("mtp.", 0) != 0) wm[n] = "model-00001-of-00001.safetensors";
  }
  main.write(dir + "/model-00001-of-00001.safetensors");
  extra.write(dir + "/model_extra_tensors.safetensors");
  write_json(dir + "/model.safetensors.index.json", {{"weight_map", wm}});
  auto r = load_model_dir(dir);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_TRUE(r->mtp.present);
  EXPECT_TRUE(r->mtp.fc.present());
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("model_extra_tensors.safetensors"), std::string::npos);
}

TEST(Loader, ConfigOnlyEstimatesFromSchemes) {
  TinySpec sp = gptq_spec(4, 32);
  const std::string dir = fresh_dir("config_only");
  write_json(dir + "/config.json", tiny_config(sp));
  EXPECT_EQ(load_model_dir(dir).status().code(), ErrorCode::kNotFound);  // weights required by default
  LoadOptions o;
  o.allow_config_only = true;
  auto r = load_model_dir(dir, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_TRUE(r->config_only);
  const LinearWeight& w = r->layers[0].moe.experts[0].gate_proj;
  EXPECT_FALSE(w.present());
  // int4 g32 [N=32, K=64]: qweight K/8*N*4 + qzeros 2*N/8*4 + scales 2*N*2 + g_idx K*4
  EXPECT_EQ(w.stored_bytes(), 8u * 32 * 4 + 2 * 4 * 4 + 2 * 32 * 2 + 64 * 4);
  EXPECT_EQ(r->layers[0].gdn.in_proj_a.stored_bytes(), static_cast<size_t>(D::HV * D::H * 2));  // bf16
  EXPECT_TRUE(r->mtp.present);
  EXPECT_GT(r->vision_tensors.size(), 10u);
}

TEST(Config, LayerTypesRopeAndGeneration) {
  TinySpec sp;
  ojson cfg = tiny_config(sp);
  cfg["text_config"].erase("rope_parameters");
  cfg["text_config"]["layer_types"] = {"full_attention", "linear_attention", "linear_attention", "full_attention"};
  cfg["rope_scaling"] = {{"type", "mrope"}, {"rope_theta", 5000}, {"mrope_section", {2, 1, 1}}, {"mrope_interleaved", false}};
  const std::string dir = fresh_dir("cfg");
  write_json(dir + "/config.json", cfg);
  write_json(dir + "/generation_config.json", {{"eos_token_id", {7, 5}}, {"temperature", 0.6}, {"top_k", 20}, {"top_p", 0.95}});
  StWriter::write_file(dir + "/tokenizer.json", "{}");
  StWriter::write_file(dir + "/preprocessor_config.json", "{\"patch_size\": 16}");
  LoadOptions o;
  o.allow_config_only = true;
  auto r = load_model_dir(dir, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->config.layer_types[0], LayerKind::kFullAttention);
  EXPECT_EQ(r->config.layer_types[1], LayerKind::kLinearAttention);
  EXPECT_DOUBLE_EQ(r->config.rope.theta, 5000);
  EXPECT_FALSE(r->config.rope.mrope_interleaved);
  EXPECT_EQ(r->config.rope.type, "default");
  EXPECT_EQ(r->generation.eos_token_ids, (std::vector<int64_t>{7, 5}));
  EXPECT_DOUBLE_EQ(*r->generation.temperature, 0.6);
  EXPECT_EQ(*r->generation.top_k, 20);
  EXPECT_EQ(r->tokenizer_files, std::vector<std::string>{"tokenizer.json"});
  EXPECT_EQ(r->extra_files.count("preprocessor_config.json"), 1u);

  cfg["text_config"]["layer_types"] = {"full_attention"};
  write_json(dir + "/config.json", cfg);
  expect_error(load_model_dir(dir, o).status(), "'layer_types' must list num_hidden_layers (4) entries");
  cfg["text_config"].erase("layer_types");
  cfg["rope_scaling"]["mrope_section"] = {2, 2, 2};
  write_json(dir + "/config.json", cfg);
  expect_error(load_model_dir(dir, o).status(), "mrope_section sums to 6 but rotary_dim/2 is 4");
  cfg["text_config"]["hidden_size"] = "big";
  write_json(dir + "/config.json", cfg);
  expect_error(load_model_dir(dir, o).status(), "'hidden_size' must be an integer");
  StWriter::write_file(dir + "/config.json", "{\"model_type\": ");
  expect_error(load_model_dir(dir, o).status(), "config.json: not valid JSON");
}

// Every numeric config field set to hostile values: a clean error or a sane model, never a crash,
// hang or giant allocation (config-only estimation walks every layer and expert).
TEST(Config, FuzzNumericFields) {
  const ojson base = tiny_config(TinySpec{});
  const std::string dir = fresh_dir("cfg_fuzz");
  LoadOptions o;
  o.allow_config_only = true;
  const std::vector<ojson> values = {0, -1, 1, 3, 1ll << 40, 2147483648ll, 1.5, "7", nullptr, ojson::array(), ojson::object(),
                                     100000};
  int errors = 0, loaded = 0;
  for (const char* section : {"text_config", "vision_config"}) {
    for (auto it = base[section].begin(); it != base[section].end(); ++it) {
      if (!it.value().is_number()) continue;
      for (const auto& v : values) {
        ojson cfg = base;
        cfg[section][it.key()] = v;
        write_json(dir + "/config.json", cfg);
        auto r = load_model_dir(dir, o);
        if (r.is_ok()) {
          ++loaded;
          EXPECT_EQ(r->layers.size(), static_cast<size_t>(r->config.num_layers));
        } else {
          ++errors;
          EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
          EXPECT_NE(r.status().message().find("config.json"), std::string::npos)
              << section << "." << it.key() << " = " << v.dump() << ": " << r.status().message();
        }
      }
    }
  }
  EXPECT_GT(errors, 50);
  EXPECT_GT(loaded, 10);
}

// Header tampering of a GPTQ desc_act checkpoint (dtypes swapped, shapes permuted or shrunk with
// matching offsets): the loader reports an error or a consistent model, never crashes.
TEST(Loader, FuzzTamperedHeaders) {
  TinySpec sp;
  sp.scheme = [](const std::string&) { return q(4, 32, false, true); };
  sp.quantization_config = gptq_config(4, 32, false, true);
  const StWriter w = tiny_tensors(sp);
  const std::string dir = fresh_dir("hdr_fuzz");
  write_json(dir + "/config.json", tiny_config(sp));
  std::mt19937 rng(7);
  int errors = 0;
  for (int it = 0; it < 300; ++it) {
    ojson h = w.header();
    const std::string& name = w.names()[rng() % w.names().size()];
    ojson& e = h[name];
    switch (rng() % 4) {
      case 0: e["dtype"] = std::vector<std::string>{"BF16", "F16", "I32", "F32", "I16"}[rng() % 5]; break;
      case 1: {
        auto shape = e["shape"].get<std::vector<int64_t>>();
        std::reverse(shape.begin(), shape.end());
        e["shape"] = shape;
        break;
      }
      case 2: e["shape"] = {e["data_offsets"][1].get<int64_t>() - e["data_offsets"][0].get<int64_t>()}; e["dtype"] = "U8"; break;
      default: h.erase(name); break;
    }
    StWriter::write_file(dir + "/model.safetensors", w.bytes(h));
    auto r = load_model_dir(dir);
    if (!r.is_ok()) {
      ++errors;
      EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
    }
  }
  EXPECT_GT(errors, 100);
}

}  // namespace
}  // namespace ds::model
