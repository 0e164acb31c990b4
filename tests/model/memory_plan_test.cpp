// Memory plan and inspect report on the real seed configs (tests/data/qwen35-configs), with realistic
// quantization blocks added here. Expected figures are computed in the test from the architecture
// (qwen35-arch.md §1) with plain formulas, not by calling the code under test.
#include <gtest/gtest.h>

#include <cstdlib>

#include "deltaserve/model/inspect.h"
#include "tests/model/tiny_checkpoint.h"

namespace ds::model {
namespace {

using namespace ds::testing;

std::string seed_dir() {
  if (const char* d = std::getenv("DS_SHARED_DATA")) return std::string(d) + "/qwen35-configs";
  return std::string(DS_SOURCE_DIR) + "/tests/data/qwen35-configs";
}

ojson read_seed(const std::string& file) {
  std::ifstream in(seed_dir() + "/" + file);
  EXPECT_TRUE(in.good()) << "seed config missing: " << seed_dir() << "/" << file;
  std::stringstream ss;
  ss << in.rdbuf();
  return ojson::parse(ss.str());
}

ojson inspect_config(const std::string& name, const ojson& cfg, MemoryOptions mem, bool modules = false,
                     Status* error = nullptr) {
  const std::string dir = fresh_dir(name);
  write_json(dir + "/config.json", cfg);
  InspectOptions o;
  o.load.allow_config_only = true;
  o.memory = mem;
  o.list_modules = modules;
  auto r = inspect_model(dir, o);
  if (error) *error = r.status();
  if (!r.is_ok()) {
    EXPECT_TRUE(error) << r.status().message();
    return {};
  }
  return *r;
}

const ojson& component(const ojson& report, const std::string& name) {
  for (const auto& c : report["components"])
    if (c["component"] == name) return c;
  static const ojson kNone = {{"bytes", 0}, {"bytes_per_rank", 0}};
  ADD_FAILURE() << "no component " << name;
  return kNone;
}

// GPTQ tensors of one [N, K] Linear: qweight, qzeros, scales, g_idx.
struct Gptq {
  uint64_t qweight, qzeros, scales, g_idx;
  uint64_t total() const { return qweight + qzeros + scales + g_idx; }
};
Gptq gptq(uint64_t n, uint64_t k, uint64_t bits, uint64_t gs) {
  const uint64_t pf = 32 / bits, g = k / gs;
  return {k / pf * n * 4, g * (n / pf) * 4, g * n * 2, k * 4};
}
uint64_t column(const Gptq& x, uint64_t tp) { return (x.qweight + x.qzeros + x.scales) / tp + x.g_idx; }
uint64_t row(const Gptq& x, uint64_t tp) { return (x.qweight + x.g_idx) / tp + (x.scales + x.qzeros) / tp; }

TEST(MemoryPlan, Qwen35_35B_Bf16ConfigOnly) {
  ojson cfg = read_seed("Qwen3.5-35B-A3B.config.reconstructed.json");
  MemoryOptions mem;
  const ojson r = inspect_config("m35", cfg, mem);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["source"], "config-only");
  EXPECT_EQ(r["weight_prefix"], "model.language_model.");
  EXPECT_EQ(r["layers"]["pattern"], "[L L L F] x 10");
  EXPECT_EQ(r["dims"]["conv_dim"], 8192);
  const uint64_t H = 2048, E = 256, I = 512, L = 40, V = 248320;
  EXPECT_EQ(component(r, "routed_experts")["bytes"].get<uint64_t>(), L * E * 3 * I * H * 2);
  EXPECT_EQ(component(r, "embeddings")["bytes"].get<uint64_t>(), V * H * 2);
  EXPECT_EQ(component(r, "lm_head")["bytes"].get<uint64_t>(), V * H * 2);
  // vision: Qwen3-VL ViT 27 x 1152 (ffn 4304) + merger, ~0.45B params in bf16
  const uint64_t vision = component(r, "vision")["bytes"].get<uint64_t>();
  EXPECT_GT(vision, 0.40e9 * 2);
  EXPECT_LT(vision, 0.48e9 * 2);
  // KV per token at TP1: 2 (K,V) x 2 kv heads x 256 x 2 B x 10 attention layers
  EXPECT_EQ(r["memory"]["kv_bytes_per_token"].get<uint64_t>(), 2u * 2 * 256 * 2 * 10);
  // GDN state: 30 layers x (conv 8192 x 3 x 2 B + ssm 32 x 128 x 128 x 4 B)
  EXPECT_EQ(r["memory"]["gdn_state_bytes_per_seq"].get<uint64_t>(), 30u * (8192 * 3 * 2 + 32 * 128 * 128 * 4));
  // about 35B parameters in bf16, MTP not counted
  const double params = r["memory"]["weights_bytes"].get<double>() / 2;
  EXPECT_GT(params, 34.0e9);
  EXPECT_LT(params, 36.5e9);
}

TEST(MemoryPlan, Qwen35_35B_Int8ExpertsOnlyAtTp4) {
  ojson cfg = read_seed("Qwen3.5-35B-A3B.config.reconstructed.json");
  // the btbtyler09 GPTQ-8bit layout: only routed experts quantized, int8 g32
  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 8}, {"group_size", 32}, {"sym", true},
                                {"desc_act", false}, {"checkpoint_format", "gptq"},
                                {"dynamic", {{"-:.*self_attn.*", ojson::object()},
                                             {"-:.*linear_attn.*", ojson::object()},
                                             {"-:.*shared_expert.*", ojson::object()}}}};
  MemoryOptions mem;
  mem.tensor_parallel_size = 4;
  const ojson r = inspect_config("m35q8", cfg, mem);
  ASSERT_FALSE(r.is_null());
  const uint64_t H = 2048, E = 256, I = 512, L = 40;
  const Gptq gu = gptq(I, H, 8, 32), dn = gptq(H, I, 8, 32);
  const ojson& re = component(r, "routed_experts");
  EXPECT_EQ(re["bytes"].get<uint64_t>(), L * E * (2 * gu.total() + dn.total()));
  EXPECT_EQ(re["bytes_per_rank"].get<uint64_t>(), L * E * (2 * column(gu, 4) + row(dn, 4)));
  EXPECT_EQ(re["formats"], ojson::array({"int8 g32 sym (gptq v1)"}));
  EXPECT_EQ(component(r, "attention")["formats"], ojson::array({"bf16"}));
  EXPECT_EQ(component(r, "shared_experts")["formats"], ojson::array({"bf16"}));
  // kv heads 2 < TP 4: one replicated head per rank
  EXPECT_EQ(r["memory"]["kv_heads_per_rank"], 1);
  EXPECT_EQ(r["memory"]["kv_bytes_per_token"].get<uint64_t>(), 2u * 1 * 256 * 2 * 10);
}

// The seeds' case: Qwen3.5-122B-A10B GPTQ int4 g32 on 4 x 32 GB MI100 at TP=4, 32k context.
TEST(MemoryPlan, Qwen35_122B_Int4OnFourMi100) {
  ojson cfg = read_seed("Qwen3.5-35B-A3B.config.reconstructed.json");
  ojson& t = cfg["text_config"];
  t.erase("layer_types");  // full_attention_interval 4 then gives [L L L F] x 12
  t["hidden_size"] = 3072;
  t["num_hidden_layers"] = 48;
  t["num_attention_heads"] = 32;
  t["num_key_value_heads"] = 2;
  t["linear_num_value_heads"] = 64;
  t["moe_intermediate_size"] = 1024;
  t["shared_expert_intermediate_size"] = 1024;
  cfg["vision_config"]["out_hidden_size"] = 3072;
  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}, {"sym", true},
                                {"desc_act", false}, {"checkpoint_format", "gptq"},
                                {"dynamic", {{"-:.*linear_attn\\..*", ojson::object()},
                                             {"-:.*shared_expert.*", ojson::object()}}}};
  MemoryOptions mem;
  mem.tensor_parallel_size = 4;
  mem.max_model_len = 32768;
  mem.gpu_memory_gib = 32;
  mem.gpu_memory_utilization = 0.9;
  mem.include_vision = false;
  const ojson r = inspect_config("m122", cfg, mem);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["layers"]["pattern"], "[L L L F] x 12");
  const uint64_t H = 3072, V = 248320, E = 256, I = 1024, ISH = 1024, TP = 4;
  const uint64_t n_attn = 12, n_gdn = 36, hd = 256, nh = 32, hv = 64, conv = 2 * 16 * 128 + hv * 128, vd = hv * 128;

  const Gptq gu = gptq(I, H, 4, 32), dn = gptq(H, I, 4, 32);
  const uint64_t routed = 48 * E * (2 * column(gu, TP) + row(dn, TP));
  const Gptq q = gptq(2 * nh * hd, H, 4, 32), kv = gptq(2 * hd, H, 4, 32), o = gptq(H, nh * hd, 4, 32);
  const uint64_t kv_rank = (kv.qweight + kv.qzeros + kv.scales) / 2 + kv.g_idx;  // 1 of 2 kv heads
  const uint64_t attention = n_attn * (column(q, TP) + 2 * kv_rank + row(o, TP) + 2 * hd * 2);  // + q_norm, k_norm
  // in_proj_a/b are replicated (a few KB per layer; tensor-parallel.md §0.2)
  const uint64_t gdn = n_gdn * ((conv * H + vd * H + H * vd) * 2 / TP + 2 * hv * H * 2 + conv * 4 * 2 / TP + hv * 4 / TP +
                                hv * 2 / TP + 128 * 2);
  const uint64_t shared = 48 * (3 * ISH * H * 2 / TP + H * 2);
  const uint64_t router = 48 * E * H * 2;
  const uint64_t norms = 48 * 2 * H * 2 + H * 2;
  const uint64_t embed = V * H * 2 / TP, lm_head = V * H * 2 / TP;
  EXPECT_EQ(component(r, "routed_experts")["bytes_per_rank"].get<uint64_t>(), routed);
  EXPECT_EQ(component(r, "attention")["bytes_per_rank"].get<uint64_t>(), attention);
  EXPECT_EQ(component(r, "gdn")["bytes_per_rank"].get<uint64_t>(), gdn);
  EXPECT_EQ(component(r, "shared_experts")["bytes_per_rank"].get<uint64_t>(), shared);
  EXPECT_EQ(component(r, "router")["bytes_per_rank"].get<uint64_t>(), router);
  EXPECT_EQ(component(r, "norms")["bytes_per_rank"].get<uint64_t>(), norms);
  const uint64_t weights = routed + attention + gdn + shared + router + norms + embed + lm_head;
  const ojson& m = r["memory"];
  EXPECT_EQ(m["weights_bytes_per_rank"].get<uint64_t>(), weights);
  EXPECT_GT(weights, 17.0 * (1ull << 30));  // ~63 GiB of int4 experts over 4 ranks, plus the rest
  EXPECT_LT(weights, 20.0 * (1ull << 30));

  const uint64_t kv_per_token = 2 * 1 * hd * 2 * n_attn;  // 12 KiB
  const uint64_t state = n_gdn * (conv / TP * 3 * 2 + hv / TP * 128 * 128 * 4);
  EXPECT_EQ(m["kv_bytes_per_token"].get<uint64_t>(), kv_per_token);
  EXPECT_EQ(m["gdn_state_bytes_per_seq"].get<uint64_t>(), state);
  EXPECT_EQ(m["reserve"]["logits_bytes"].get<uint64_t>(), 256 * V * 4);
  EXPECT_EQ(m["reserve"]["runtime_overhead_bytes"].get<uint64_t>(), 1ull << 30);
  const uint64_t reserve = m["reserve"]["total_bytes"].get<uint64_t>();
  EXPECT_EQ(reserve, m["reserve"]["activation_bytes"].get<uint64_t>() + 256 * V * 4 + (1ull << 30));
  const int64_t budget = static_cast<int64_t>(0.9 * 32 * (1ull << 30));
  const int64_t cache = budget - static_cast<int64_t>(weights + reserve);
  const ojson& f = m["fit"];
  EXPECT_EQ(f["cache_bytes"].get<int64_t>(), cache);
  // 256 sequences of GDN state (36 x 1.02 MiB each) alone exceed the cache: no KV tokens left, and the
  // report says to lower --max-num-seqs
  EXPECT_GT(256 * static_cast<int64_t>(state), cache);
  EXPECT_EQ(f["kv_tokens"].get<int64_t>(), 0);
  const int64_t max_seqs = cache / static_cast<int64_t>(state + 32768 * kv_per_token);
  EXPECT_NE(m["notes"].dump().find("use --max-num-seqs " + std::to_string(max_seqs) + " or less"), std::string::npos)
      << m["notes"].dump();
  EXPECT_EQ(f["max_seqs_at_max_model_len"].get<int64_t>(), cache / static_cast<int64_t>(state + 32768 * kv_per_token));
  EXPECT_TRUE(f["fits"].get<bool>());
  EXPECT_GE(f["max_seqs_at_max_model_len"].get<int64_t>(), 10);  // 32k contexts for a handful of users

  mem.max_num_seqs = 16;
  const ojson r16 = inspect_config("m122s16", cfg, mem);
  const ojson& f16 = r16["memory"]["fit"];
  EXPECT_EQ(f16["kv_tokens"].get<int64_t>(), (cache + static_cast<int64_t>(256 - 16) * V * 4 - 16 * static_cast<int64_t>(state)) /
                                                 static_cast<int64_t>(kv_per_token));
  EXPECT_GT(f16["kv_tokens"].get<int64_t>(), 16 * 32768);

  // the same model does not fit on one 32 GB GPU
  mem.tensor_parallel_size = 1;
  const ojson r1 = inspect_config("m122tp1", cfg, mem);
  EXPECT_FALSE(r1["memory"]["fit"]["fits"].get<bool>());
  EXPECT_LT(r1["memory"]["fit"]["cache_bytes"].get<int64_t>(), 0);
}

TEST(MemoryPlan, Reap25bPrunedExperts) {
  ojson cfg = read_seed("reap-25b-a3b__config.json");
  MemoryOptions mem;
  mem.include_vision = false;
  const ojson r = inspect_config("reap", cfg, mem);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["model_type"], "qwen3_5_moe_text");
  EXPECT_EQ(r["weight_prefix"], "model.language_model.");  // ConditionalGeneration naming, as in its index
  EXPECT_EQ(r["dtype"], "float16");
  EXPECT_EQ(component(r, "routed_experts")["bytes"].get<uint64_t>(), 40ull * 180 * 3 * 512 * 2048 * 2);
  EXPECT_EQ(component(r, "routed_experts")["formats"], ojson::array({"f16"}));
  // the index's metadata total_size (50,182,743,296 B) is the model without MTP and vision, all in fp16;
  // the config-only estimate assumes A_log in fp32 as transformers saves it (30 GDN layers x 32 heads x 2 B more)
  EXPECT_EQ(r["memory"]["weights_bytes"].get<uint64_t>(), 50182743296ull + 30 * 32 * 2);
}

// Qwen3.6-27B (dense, 64 layers, 24/4 heads, GDN 16/48): its shipped compressed-tensors AWQ config is
// refused clearly; as seed 002 (GPTQ int4 g128, everything but in_proj_b/a) it fits 4 x 32 GB at TP4.
TEST(MemoryPlan, Qwen36_27B_Dense) {
  ojson cfg = read_seed("Qwen3.6-27B-heretic-W4A16-AWQ__fantasylord_config.json");
  MemoryOptions mem;
  Status err;
  inspect_config("q27awq", cfg, mem, false, &err);
  EXPECT_EQ(err.code(), ErrorCode::kUnsupported);
  EXPECT_NE(err.message().find("quant_method 'compressed-tensors' is not supported"), std::string::npos) << err.message();

  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}, {"sym", true},
                                {"desc_act", false}};
  mem.tensor_parallel_size = 4;
  mem.max_model_len = 32768;
  mem.gpu_memory_gib = 32;
  const ojson r = inspect_config("q27", cfg, mem);
  ASSERT_FALSE(r.is_null());
  const uint64_t H = 5120, I = 17408, TP = 4, L = 64, hd = 256;
  const Gptq gate = gptq(I, H, 4, 128), down = gptq(H, I, 4, 128);
  EXPECT_EQ(component(r, "dense_mlp")["bytes"].get<uint64_t>(), L * (2 * gate.total() + down.total()));
  EXPECT_EQ(component(r, "dense_mlp")["bytes_per_rank"].get<uint64_t>(), L * (2 * column(gate, TP) + row(down, TP)));
  EXPECT_EQ(component(r, "gdn")["formats"], ojson::array({"bf16", "int4 g128 sym (gptq v1)"}));
  // kv heads 4 = TP: one head per rank; 16 attention layers
  EXPECT_EQ(r["memory"]["kv_bytes_per_token"].get<uint64_t>(), 2 * 1 * hd * 2 * 16);
  // 48 GDN layers x (10240/4 x 3 x 2 B + 12 x 128 x 128 x 4 B)
  EXPECT_EQ(r["memory"]["gdn_state_bytes_per_seq"].get<uint64_t>(), 48u * (10240 / 4 * 3 * 2 + 12 * 128 * 128 * 4));
  const double params_b = r["memory"]["weights_bytes"].get<double>();
  EXPECT_GT(params_b, 15e9);  // ~27B params at ~4.3 bits for the MLP/attention, bf16 embeddings and GDN gates
  EXPECT_LT(params_b, 22e9);
  EXPECT_TRUE(r["memory"]["fit"]["fits"].get<bool>());
  mem.tensor_parallel_size = 3;
  inspect_config("q27tp3", cfg, mem, false, &err);
  EXPECT_NE(err.message().find("tensor-parallel-size 3 and num_key_value_heads 4: neither divides the other"),
            std::string::npos)
      << err.message();
}

TEST(MemoryPlan, InvalidTensorParallelSizes) {
  ojson cfg = read_seed("Qwen3.5-35B-A3B.config.reconstructed.json");
  MemoryOptions mem;
  mem.tensor_parallel_size = 3;
  Status err;
  inspect_config("tp3", cfg, mem, false, &err);
  EXPECT_NE(err.message().find("tensor-parallel-size 3 does not divide num_attention_heads (16)"), std::string::npos)
      << err.message();
  // int4 g128 experts: I / 8 = 64 per rank cannot hold whole groups of 128 in the row-split down_proj
  cfg["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}, {"sym", true}};
  mem.tensor_parallel_size = 8;
  inspect_config("tp8", cfg, mem, false, &err);
  EXPECT_NE(err.message().find("mlp.experts.0.down_proj: the input size is not aligned with the quantized weight shape: "
                               "512/8 per rank does not hold whole groups (int4, group size 128)"),
            std::string::npos)
      << err.message();
  mem.tensor_parallel_size = 4;
  inspect_config("tp4", cfg, mem, false, &err);
  EXPECT_TRUE(err.is_ok()) << err.message();
}

// Bytes estimated from config.json alone equal the bytes of a real checkpoint with the same scheme.
TEST(MemoryPlan, ConfigOnlyEstimateMatchesWeights) {
  TinySpec sp;
  sp.multimodal = false;
  // channelwise int4: the row-split modules keep their full scales on every rank
  sp.scheme = [](const std::string&) { return Scheme{4, -1, true, false, true}; };
  sp.quantization_config = gptq_config(4, -1);
  const std::string dir = write_tiny(fresh_dir("estimate"), sp);
  InspectOptions o;
  o.memory.tensor_parallel_size = 2;
  o.memory.include_mtp = true;
  o.list_modules = true;
  auto real = inspect_model(dir, o);
  ASSERT_TRUE(real.is_ok()) << real.status().message();
  o.load.config_only = true;
  auto est = inspect_model(dir, o);
  ASSERT_TRUE(est.is_ok()) << est.status().message();
  EXPECT_EQ((*real)["source"], "weights");
  EXPECT_EQ((*est)["source"], "config-only");
  EXPECT_EQ((*real)["components"], (*est)["components"]);
  EXPECT_EQ((*real)["memory"]["weights_bytes_per_rank"], (*est)["memory"]["weights_bytes_per_rank"]);
  ASSERT_EQ((*real)["modules"].size(), (*est)["modules"].size());
  for (size_t i = 0; i < (*real)["modules"].size(); ++i) EXPECT_EQ((*real)["modules"][i], (*est)["modules"][i]);
  const std::string text = render_inspect_text(*real);
  EXPECT_NE(text.find("memory per GPU at TP=2"), std::string::npos);
  EXPECT_NE(text.find("routed_experts"), std::string::npos);
}

}  // namespace
}  // namespace ds::model
