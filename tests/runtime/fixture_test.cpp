// Exactness against the Hugging Face fixtures (tests/fixtures/README.md): for every fixture present,
// max |dlogit| <= 1e-3 at every position of every reference prompt, identical 32-token greedy
// continuations (run incrementally with the KV / GDN caches), and perplexity within 1e-4 relative.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "tests/runtime/fixture_list.h"
#include "deltaserve/engine/sequence_runner.h"
#include "deltaserve/model/safetensors.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

using test::fixture_names;
using test::fixtures_dir;

const float* tensor(const model::SafetensorsFile& f, const std::string& name, int64_t* numel) {
  for (const auto& t : f.tensors())
    if (t.name == name) {
      *numel = t.numel();
      return static_cast<const float*>(t.data);
    }
  return nullptr;
}

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, MatchesReference) {
  const std::string name = GetParam();
  const std::string ref_dir = fixtures_dir() + "/reference/" + name;
  nlohmann::json doc;
  std::ifstream(ref_dir + "/prompts.json") >> doc;
  auto desc = model::load_model_dir(fixtures_dir() + "/models/" + name);
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  model::ModelOptions opt;
  opt.cache = engine::runner_cache_config(4096);
  opt.max_step_tokens = 512;
  opt.max_step_seqs = 1;
  auto created = model::create_cpu_model(*desc, opt);
  ASSERT_TRUE(created.is_ok()) << created.status().message();
  auto& model = **created;
  const int64_t V = model.vocab_size();
  ASSERT_EQ(V, doc["vocab_size"].get<int64_t>());
  auto lf = model::SafetensorsFile::open(ref_dir + "/" + doc["logits_file"].get<std::string>());
  ASSERT_TRUE(lf.is_ok()) << lf.status().message();
  const bool full = doc["logits_format"] == "full";
  double worst = 0;
  for (const auto& p : doc["prompts"]) {
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    const int idx = p["index"].get<int>();
    engine::SequenceRunner runner(model);
    const int seq = runner.start().value();
    auto logits = runner.feed(seq, ids, true, 512);
    ASSERT_TRUE(logits.is_ok()) << logits.status().message();
    const int64_t n = static_cast<int64_t>(ids.size());
    int64_t numel = 0;
    if (full) {
      const float* ref = tensor(**lf, "prompt" + std::to_string(idx) + ".logits", &numel);
      ASSERT_TRUE(ref && numel == n * V);
      for (int64_t i = 0; i < n * V; ++i) worst = std::max(worst, std::fabs(static_cast<double>((*logits)[static_cast<size_t>(i)]) - ref[i]));
    } else {
      const auto* tid = reinterpret_cast<const int32_t*>(tensor(**lf, "prompt" + std::to_string(idx) + ".topk_ids", &numel));
      const float* tl = tensor(**lf, "prompt" + std::to_string(idx) + ".topk_logits", &numel);
      const float* lse = tensor(**lf, "prompt" + std::to_string(idx) + ".logsumexp", &numel);
      ASSERT_TRUE(tid && tl && lse);
      const int64_t k = numel > 0 ? 20 : 0;
      for (int64_t t = 0; t < n; ++t) {
        const float* row = logits->data() + t * V;
        for (int64_t j = 0; j < k; ++j)
          worst = std::max(worst, std::fabs(static_cast<double>(row[tid[t * k + j]]) - tl[t * k + j]));
        double mx = row[0], s = 0;
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
        for (int64_t v = 0; v < V; ++v) s += std::exp(row[v] - mx);
        worst = std::max(worst, std::fabs(mx + std::log(s) - lse[t]));
      }
    }
    runner.release(seq);
    // Greedy continuation through the caches, one token per step.
    const auto want = p["greedy"].get<std::vector<int32_t>>();
    engine::SamplingParams greedy;
    greedy.temperature = 0.0;
    auto gen = engine::generate(model, ids, static_cast<int64_t>(want.size()), greedy, {}, 64);
    ASSERT_TRUE(gen.is_ok()) << gen.status().message();
    EXPECT_EQ(gen->tokens, want) << name << " prompt " << idx;
  }
  std::printf("[ fixture ] %-22s max |dlogit| %.3g over %zu prompts\n", name.c_str(), worst, doc["prompts"].size());
  EXPECT_LE(worst, 1e-3) << name;
  // Perplexity with the reference's window and stride.
  const auto& ppl = doc["ppl"];
  const auto ids = ppl["ids"].get<std::vector<int32_t>>();
  auto r = engine::perplexity(model, ids, ppl["window"].get<int64_t>(), ppl["stride"].get<int64_t>(), 512);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const double want = ppl["ppl"].get<double>();
  std::printf("[ fixture ] %-22s ppl %.6f reference %.6f rel %.2g (%lld scored)\n", name.c_str(), r->ppl(), want,
              std::fabs(r->ppl() - want) / want, static_cast<long long>(r->n_scored));
  EXPECT_EQ(r->n_scored, ppl["n_scored"].get<int64_t>());
  EXPECT_LE(std::fabs(r->ppl() - want) / want, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, Fixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Fixture);

}  // namespace
}  // namespace ds
