// Decode steps as captured graphs on the emulated GPU: a scripted serving schedule (prefills, decode
// steps of 1-5 sequences padded to the captured sizes, mixed steps, contexts crossing KV blocks) runs
// on one model with graphs and one without, fed the same tokens; every step's logits and sampled ids
// must agree. A replay that read stale metadata (the captured step's tokens, positions or block
// tables) would be off by whole logits. Also: the emulated stream refuses what a capturing CUDA
// stream refuses, and a replay refuses a plan of another shape.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/runtime/fixture_list.h"

namespace ds {
namespace {

using model::SeqStep;
using model::StepPlan;

struct Seq {
  std::vector<int32_t> tokens;  // prompt, then every sampled token
  int64_t cached = 0;           // tokens already in the cache
  int slot = 0;
};

// One step of the script: which sequences, and how many of their pending tokens each feeds.
struct Step {
  std::vector<int> seqs;
};

struct Trace {
  std::vector<std::vector<float>> logits;  // per step: every sequence's last-row logits, concatenated
  std::vector<std::vector<int32_t>> sampled;
};

model::ModelOptions options(bool graphs, int64_t max_model_len = 128) {
  model::ModelOptions o;
  o.cache.block_size = 16;
  o.cache.num_kv_blocks = 48;
  o.cache.num_state_slots = 6;
  o.max_step_tokens = 96;
  o.max_step_seqs = 8;
  o.max_model_len = max_model_len;
  if (graphs) o.graph_batch_sizes = {1, 2, 4, 8};
  return o;
}

// Runs the script; `forced` (the other run's sampled ids) decides the fed tokens when given, so both
// runs see the same inputs whatever they sample.
Trace run_script(model::Qwen35Model& m, const std::vector<std::vector<int32_t>>& prompts,
                 const std::vector<Step>& script, const Trace* forced) {
  std::vector<Seq> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.push_back({prompts[i], 0, static_cast<int>(i)});
  kernels::SamplingRow greedy;
  greedy.temperature = 0.0;
  Trace t;
  for (size_t k = 0; k < script.size(); ++k) {
    StepPlan plan;
    for (int i : script[k].seqs) {
      Seq& s = seqs[static_cast<size_t>(i)];
      SeqStep st;
      st.seq_id = i;
      st.token_ids.assign(s.tokens.begin() + s.cached, s.tokens.end());
      st.start_pos = s.cached;
      st.state_slot = s.slot;
      const int64_t end = static_cast<int64_t>(s.tokens.size());
      for (int64_t b = 0; b < (end + 15) / 16; ++b) st.block_table.push_back(static_cast<int32_t>(i * 8 + b));
      st.return_logits = true;
      st.sampling = greedy;
      plan.seqs.push_back(std::move(st));
    }
    auto out = m.forward(plan);
    EXPECT_TRUE(out.is_ok()) << "step " << k << ": " << out.status().message();
    if (!out.is_ok()) return t;
    t.logits.push_back(out->logits);
    std::vector<int32_t> ids;
    for (size_t j = 0; j < plan.seqs.size(); ++j) {
      const int i = script[k].seqs[j];
      Seq& s = seqs[static_cast<size_t>(i)];
      s.cached = static_cast<int64_t>(s.tokens.size());
      ids.push_back(out->sampled[j].token);
      s.tokens.push_back(forced ? forced->sampled[k][j] : out->sampled[j].token);
    }
    t.sampled.push_back(ids);
  }
  return t;
}

std::vector<Step> serving_script() {
  std::vector<Step> s;
  s.push_back({{0, 1, 2}});                                    // prefill three prompts
  for (int i = 0; i < 5; ++i) s.push_back({{0, 1, 2}});        // decode, padded 3 -> 4
  s.push_back({{3, 4, 0, 1, 2}});                              // two prefills with three decodes: eager
  for (int i = 0; i < 5; ++i) s.push_back({{0, 1, 2, 3, 4}});  // padded 5 -> 8
  for (int i = 0; i < 20; ++i) s.push_back({{1}});             // one sequence past two block boundaries
  for (int i = 0; i < 3; ++i) s.push_back({{4, 2}});           // another size, other slots and blocks
  return s;
}

void expect_same_as_eager(const std::string& fixture, DType act, double tol, int64_t max_model_len = 128) {
  auto desc = model::load_model_dir(test::fixtures_dir() + "/models/" + fixture);
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  auto make = [&](bool graphs) {
    auto be = backend::gpu::make_gpu_backend(0, {act});
    EXPECT_TRUE(be.is_ok()) << be.status().message();
    return model::Qwen35Model::create(*desc, *be, dist::single_rank(), options(graphs, max_model_len));
  };
  auto eager = make(false);
  auto graphs = make(true);
  ASSERT_TRUE(eager.is_ok()) << eager.status().message();
  ASSERT_TRUE(graphs.is_ok()) << graphs.status().message();
  ASSERT_EQ((*graphs)->graph_sizes(), (std::vector<int>{1, 2, 4, 8}));
  // Two sizes captured up front (as serving does), the others on first use.
  const std::vector<std::vector<int32_t>> prompts = {
      {5, 17, 301, 44, 9},
      {7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23},
      {400, 2, 33},
      {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
       16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30},
      {99, 98, 97, 96, 95, 94, 93, 92, 91}};
  const auto script = serving_script();
  const Trace ref = run_script(**eager, prompts, script, nullptr);
  EXPECT_EQ((*eager)->graph_steps(), 0);
  const Trace got = run_script(**graphs, prompts, script, &ref);
  ASSERT_EQ(got.logits.size(), ref.logits.size());
  // Every decode-only step after a prefill ran as a graph: 5 + 5 + 20 + 3.
  EXPECT_EQ((*graphs)->graph_steps(), 33);
  double worst = 0;
  int mismatched = 0;
  for (size_t k = 0; k < ref.logits.size(); ++k) {
    ASSERT_EQ(got.logits[k].size(), ref.logits[k].size());
    for (size_t i = 0; i < ref.logits[k].size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(got.logits[k][i]) - ref.logits[k][i]));
    mismatched += got.sampled[k] != ref.sampled[k];
  }
  std::printf("[ emulated GPU ] %s %s, graphs for contexts up to %lld: graphs vs eager over %zu steps: "
              "max |dlogit| %.3g, %d steps sampled differently\n",
              fixture.c_str(), dtype_name(act), static_cast<long long>(max_model_len), ref.logits.size(), worst,
              mismatched);
  EXPECT_LE(worst, tol);
  EXPECT_EQ(mismatched, 0);
}

// fp32 activations: eager and graph differ only in the attention split count (sized for the graph's
// context bound), a reordering of fp32 sums.
TEST(GpuEmuGraph, DenseFp32ReplaysMatchEager) {
  expect_same_as_eager("moe-bf16", DType::kF32, 1e-4);
}

// Graphs serving contexts up to 4096: attention decode is launched with the splits that bound needs
// (16), most of them empty for these short sequences, and must still agree with the eager step (one split).
TEST(GpuEmuGraph, LongContextBoundSplitsAttention) { expect_same_as_eager("moe-bf16", DType::kF32, 1e-4, 4096); }

// The serving path: 16-bit activations through the quantized GEMM and MoE experts.
TEST(GpuEmuGraph, QuantizedBf16ReplaysMatchEager) {
  expect_same_as_eager("moe-gptq-int8", DType::kBF16, 0.05);
}

TEST(GpuEmuGraph, StartupCaptureAndCacheReallocation) {
  auto desc = model::load_model_dir(test::fixtures_dir() + "/models/dense-gptq-int4");
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  auto be = backend::gpu::make_gpu_backend(0, {DType::kF16});
  ASSERT_TRUE(be.is_ok());
  auto m = model::Qwen35Model::create(*desc, *be, dist::single_rank(), options(true));
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  auto n = (*m)->capture_graphs();
  ASSERT_TRUE(n.is_ok()) << n.status().message();
  EXPECT_EQ(*n, 4);
  // New pools: the graphs held the old addresses, so they are dropped and recaptured on use.
  model::CacheConfig c = (*m)->cache_config();
  c.num_kv_blocks = 40;
  c.num_state_slots = 5;
  ASSERT_TRUE((*m)->allocate_cache(c).is_ok());
  auto be2 = backend::gpu::make_gpu_backend(0, {DType::kF16});  // a backend serves one model
  ASSERT_TRUE(be2.is_ok());
  auto eager = model::Qwen35Model::create(*desc, *be2, dist::single_rank(), options(false));
  ASSERT_TRUE(eager.is_ok());
  ASSERT_TRUE((*eager)->allocate_cache(c).is_ok());
  const std::vector<std::vector<int32_t>> prompts = {{3, 1, 4, 1, 5, 9, 2, 6}, {2, 7, 1, 8, 2, 8}};
  std::vector<Step> script = {{{0, 1}}};
  for (int i = 0; i < 6; ++i) script.push_back({{0, 1}});
  const Trace ref = run_script(**eager, prompts, script, nullptr);
  const Trace got = run_script(**m, prompts, script, &ref);
  EXPECT_EQ((*m)->graph_steps(), 6);
  for (size_t k = 0; k < ref.sampled.size(); ++k) EXPECT_EQ(got.sampled[k], ref.sampled[k]) << "step " << k;
}

// What a capturing stream must not do fails under emulation as on CUDA; a replay checks the shape.
TEST(GpuEmuGraph, CaptureRefusesAllocationAndSynchronisation) {
  auto rt = backend::gpu::Runtime::open(0);
  ASSERT_TRUE(rt.is_ok());
  ASSERT_TRUE((*rt)->begin_capture().is_ok());
  EXPECT_FALSE((*rt)->begin_capture().is_ok());
  auto p = (*rt)->malloc(1024, "inside a capture");
  EXPECT_FALSE(p.is_ok());
  Status s = (*rt)->synchronize();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("capturing"), std::string::npos) << s.message();
  int host[4] = {0, 0, 0, 0};
  EXPECT_FALSE((*rt)->copy_d2h(host, host, sizeof host).is_ok());  // results leave after the graph
  auto buf = std::vector<int>(4, 0);
  int src[4] = {1, 2, 3, 4};
  ASSERT_TRUE((*rt)->copy_h2d(buf.data(), src, sizeof src).is_ok());
  EXPECT_EQ(buf[0], 0);  // recorded, not run
  auto g = (*rt)->end_capture();
  ASSERT_TRUE(g.is_ok());
  src[0] = 42;  // a graph's copy reads its source when it runs
  ASSERT_TRUE((*rt)->launch_graph(**g).is_ok());
  EXPECT_EQ(buf[0], 42);
  EXPECT_TRUE((*rt)->synchronize().is_ok());
}

TEST(GpuEmuGraph, ReplayRefusesAnotherShape) {
  auto be = backend::gpu::make_gpu_backend(0, {DType::kF32});
  ASSERT_TRUE(be.is_ok());
  backend::Backend& b = **be;
  backend::StepLimits lim{8, 4, 4, 8};
  ASSERT_TRUE(b.reserve_step(lim).is_ok());
  backend::StepMeta m;
  m.token_ids = {1, 2};
  m.positions = {3, 3, 3, 4, 4, 4};
  m.cu_seqlens = {0, 1, 2};
  m.start_pos = {3, 4};
  m.state_slots = {0, 1};
  m.blocks_per_seq = 1;
  m.block_tables = {0, 1};
  ASSERT_TRUE(b.plan(m).is_ok());
  ASSERT_TRUE(b.begin_capture().is_ok());
  auto g = b.end_capture();
  ASSERT_TRUE(g.is_ok());
  EXPECT_TRUE(b.replay(**g).is_ok());
  m.context_bound = 64;  // the same arrays, launches sized for another context bound
  ASSERT_TRUE(b.plan(m).is_ok());
  Status s = b.replay(**g);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("not the shape"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ds
