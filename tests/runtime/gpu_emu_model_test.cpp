// The whole Qwen3.5 graph on the GPU backend under emulation (every op a kernels/gpu kernel), on the
// dense fixture (moe-bf16) and the GPTQ/AutoRound fixtures (the quantized GEMM with 16-bit
// activations, the portable GPTQ kernel with fp32): logits at every position of every reference
// prompt against the CPU backend, greedy continuations, and the same bytes under two schedules. fp32 activations are held to the CPU's
// accuracy. With 16-bit activations (how a GPU serves) a random-weight MoE diverges where the
// router's k-th and (k+1)-th logits nearly tie (a flipped expert changes that token, and through
// the GDN state every later one), so fp16 logits are held to a 16-bit bound up to the first
// position whose router margin (on the CPU, in fp32) is below the 16-bit noise.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/engine/sequence_runner.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/runtime/fixture_list.h"
#include "tests/runtime/margin_probe.h"

namespace ds {
namespace {

using test::fixtures_dir;
using test::MarginProbe;

struct ModelRun {
  std::vector<std::vector<float>> logits;  // per prompt, [len][V]
  std::vector<std::vector<int32_t>> greedy;
  std::vector<std::vector<float>> margin;  // per prompt and position (MarginProbe runs only)
};

ModelRun run_model(const model::ModelDesc& desc, std::shared_ptr<backend::Backend> be, const nlohmann::json& prompts,
                   int max_prompts = 3) {
  model::ModelOptions opt;
  opt.cache = engine::runner_cache_config(128);
  opt.max_step_tokens = 64;
  opt.max_step_seqs = 1;
  auto m = model::Qwen35Model::create(desc, std::move(be), dist::single_rank(), opt);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  ModelRun r;
  if (!m.is_ok()) return r;
  int n = 0;
  for (const auto& p : prompts) {
    if (n++ == max_prompts) break;  // a few prompts keep the emulated run short
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    engine::SequenceRunner runner(**m);
    const int seq = runner.start().value();
    auto l = runner.feed(seq, ids, true, 64);
    EXPECT_TRUE(l.is_ok()) << l.status().message();
    if (!l.is_ok()) return r;
    r.logits.push_back(std::move(*l));
    if (auto* probe = dynamic_cast<MarginProbe*>(&(*m)->backend())) r.margin.push_back(probe->margin);
    engine::SamplingParams greedy;
    greedy.temperature = 0.0;
    auto g = engine::generate(**m, ids, 8, greedy, {}, 64);
    EXPECT_TRUE(g.is_ok());
    if (g.is_ok()) r.greedy.push_back(g->tokens);
  }
  return r;
}

double max_diff(const ModelRun& a, const ModelRun& b) {
  double worst = 0;
  for (size_t p = 0; p < a.logits.size() && p < b.logits.size(); ++p)
    for (size_t i = 0; i < a.logits[p].size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(a.logits[p][i]) - b.logits[p][i]));
  return worst;
}

TEST(GpuEmuModel, MoeBf16FixtureMatchesCpuBackend) {
  const std::string name = "moe-bf16";
  nlohmann::json doc;
  std::ifstream(fixtures_dir() + "/reference/" + name + "/prompts.json") >> doc;
  auto desc = model::load_model_dir(fixtures_dir() + "/models/" + name);
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  const ModelRun cpu = run_model(*desc, std::make_shared<MarginProbe>(), doc["prompts"]);
  ASSERT_FALSE(cpu.logits.empty());
  ModelRun first;
  for (auto [dt, sched] : {std::pair{DType::kF32, emu::Schedule::kInOrder}, {DType::kF32, emu::Schedule::kRandom},
                           {DType::kBF16, emu::Schedule::kRandom}, {DType::kF16, emu::Schedule::kRandom}}) {
    emu::Options o;
    o.schedule = sched;
    o.seed = 5;
    emu::ScopedOptions so(o);
    auto be = backend::gpu::make_gpu_backend(0, {dt});
    ASSERT_TRUE(be.is_ok()) << be.status().message();
    const ModelRun gpu = run_model(*desc, *be, doc["prompts"]);
    ASSERT_EQ(gpu.logits.size(), cpu.logits.size());
    const double d = max_diff(gpu, cpu);
    std::printf("[ emulated GPU ] %s %s activations, %s schedule: max |dlogit| vs CPU backend %.3g\n", name.c_str(),
                dtype_name(dt), emu::schedule_name(sched), d);
    if (dt == DType::kF32) {
      EXPECT_LE(d, 5e-4);
      EXPECT_EQ(gpu.greedy, cpu.greedy);
      if (first.logits.empty()) {
        first = gpu;
      } else {
        for (size_t p = 0; p < gpu.logits.size(); ++p)
          EXPECT_EQ(0, std::memcmp(gpu.logits[p].data(), first.logits[p].data(), gpu.logits[p].size() * sizeof(float)))
              << "prompt " << p << " differs between schedules";
      }
    } else {
      // Up to the first near-tie of the router. fp16 (11 significant bits) is held to 0.1; bf16
      // (8 bits) still flips experts at margins of a few hundredths on this random-weight model
      // (0.8-1.4 seen), so its figure is reported and only required to be finite.
      const double tie = dt == DType::kBF16 ? 0.02 : 0.01, bound = dt == DType::kBF16 ? 1e9 : 0.1;
      for (size_t p = 0; p < cpu.logits.size(); ++p) {
        const size_t V = cpu.logits[p].size() / cpu.margin[p].size();
        size_t upto = 0;
        while (upto < cpu.margin[p].size() && cpu.margin[p][upto] >= tie) ++upto;
        double worst = 0;
        for (size_t i = 0; i < upto * V; ++i)
          worst = std::max(worst, std::fabs(static_cast<double>(gpu.logits[p][i]) - cpu.logits[p][i]));
        std::printf("  prompt %zu: max |dlogit| %.3g over the %zu positions before the first router margin < %.2g\n", p,
                    worst, upto, tie);
        EXPECT_LE(worst, bound) << "prompt " << p;
      }
    }
  }
}

// A dense GPTQ int4 fixture through the portable GPTQ kernel (what fp32 activations use): two
// schedules, the CPU backend's accuracy and identical bytes.
TEST(GpuEmuModel, DenseGptqInt4FixtureMatchesCpuBackend) {
  const std::string name = "dense-gptq-int4";
  nlohmann::json doc;
  std::ifstream(fixtures_dir() + "/reference/" + name + "/prompts.json") >> doc;
  auto desc = model::load_model_dir(fixtures_dir() + "/models/" + name);
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  const ModelRun cpu = run_model(*desc, std::make_shared<backend::CpuBackend>(), doc["prompts"]);
  ASSERT_FALSE(cpu.logits.empty());
  ModelRun first;
  for (auto sched : {emu::Schedule::kInOrder, emu::Schedule::kRandom}) {
    emu::Options o;
    o.schedule = sched;
    o.seed = 9;
    emu::ScopedOptions so(o);
    auto be = backend::gpu::make_gpu_backend(0, {DType::kF32});
    ASSERT_TRUE(be.is_ok()) << be.status().message();
    const ModelRun gpu = run_model(*desc, *be, doc["prompts"]);
    ASSERT_EQ(gpu.logits.size(), cpu.logits.size());
    const double d = max_diff(gpu, cpu);
    std::printf("[ emulated GPU ] %s F32 activations, %s schedule: max |dlogit| vs CPU backend %.3g\n", name.c_str(),
                emu::schedule_name(sched), d);
    EXPECT_LE(d, 5e-4);
    EXPECT_EQ(gpu.greedy, cpu.greedy);
    if (first.logits.empty()) {
      first = gpu;
      continue;
    }
    for (size_t p = 0; p < gpu.logits.size(); ++p)
      EXPECT_EQ(0, std::memcmp(gpu.logits[p].data(), first.logits[p].data(), gpu.logits[p].size() * sizeof(float)))
          << "prompt " << p << " differs between schedules";
  }
}

// The GPTQ/AutoRound fixtures through the quantized GEMM (kernels/gpu/qgemm.cu) with fp16
// activations, one prompt each (an emulated model run takes tens of seconds): INT4 and INT8, sym
// and asym, act-order, dense and MoE experts (the grouped launches), at warp 32 (mma.sync layout)
// and 64 (MFMA layout). Held to the 16-bit bound of the dense fixture, for MoE up to the first
// near-tie of a router. moe-gptq-int4 is not run here: its real 248k-token vocabulary makes each
// emulated run take about a minute (the lm_head), and with hidden size 32 it amplifies 16-bit
// rounding (0.15-0.39 in fp16 over three prompts, 5-12 in bf16, the same at warp 32 and 64); its
// expert shapes are checked op by op in tests/kernels/gpu_emu_qmoe_test.cpp.
void quant_fixture_case(const std::string& name, int warp, int prompts = 1) {
  const DType dt = DType::kF16;
  nlohmann::json doc;
  std::ifstream(fixtures_dir() + "/reference/" + name + "/prompts.json") >> doc;
  auto desc = model::load_model_dir(fixtures_dir() + "/models/" + name);
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  auto probe = std::make_shared<MarginProbe>();
  const ModelRun cpu = run_model(*desc, probe, doc["prompts"], prompts);
  ASSERT_FALSE(cpu.logits.empty());
  emu::Options o;
  o.schedule = emu::Schedule::kRandom;
  o.seed = 3;
  o.warp_size = warp;
  emu::ScopedOptions so(o);
  auto be = backend::gpu::make_gpu_backend(0, {dt});
  ASSERT_TRUE(be.is_ok()) << be.status().message();
  const ModelRun gpu = run_model(*desc, *be, doc["prompts"], prompts);
  ASSERT_EQ(gpu.logits.size(), cpu.logits.size());
  const size_t V = doc["vocab_size"].get<size_t>();
  for (size_t p = 0; p < cpu.logits.size(); ++p) {
    const bool moe = !cpu.margin.empty() && !cpu.margin[p].empty();
    size_t upto = moe ? 0 : cpu.logits[p].size() / V;
    while (moe && upto < cpu.margin[p].size() && cpu.margin[p][upto] >= 0.01) ++upto;
    double worst = 0;
    for (size_t i = 0; i < upto * V; ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(gpu.logits[p][i]) - cpu.logits[p][i]));
    std::printf("[ emulated GPU ] %s %s activations, warp %d, prompt %zu: max |dlogit| vs CPU backend %.3g over %zu "
                "positions%s\n",
                name.c_str(), dtype_name(dt), warp, p, worst, upto, moe ? " (before the first router margin < 0.01)" : "");
    EXPECT_LE(worst, 0.1) << name << " prompt " << p;
  }
}

TEST(GpuEmuModel, QuantizedDenseFixturesMatchCpuBackend) {
  quant_fixture_case("dense-gptq-int4", 64);
  quant_fixture_case("dense-gptq-asym", 64);
  quant_fixture_case("dense-gptq-desc-act", 32);
}

TEST(GpuEmuModel, QuantizedMoeFixturesMatchCpuBackend) {
  quant_fixture_case("moe-gptq-int8", 64, 3);  // its first prompt nears a tie at position 1
  quant_fixture_case("moe-autoround-int4", 32);
}

}  // namespace
}  // namespace ds
