// The CPU Qwen3.5 graph against an independent double-precision forward, and its invariance to
// batching and chunking (DESIGN.md §3 "Step plan").
#include <gtest/gtest.h>

#include "deltaserve/model/qwen35.h"
#include "tests/runtime/reference_forward.h"

namespace ds {
namespace {

using model::Qwen35Model;
using model::SeqStep;
using model::StepPlan;

constexpr int kBlock = 4;

std::unique_ptr<Qwen35Model> make_model(const test::SyntheticModel& m, bool chunked = false) {
  model::ModelOptions opt;
  opt.cache.block_size = kBlock;
  opt.cache.num_kv_blocks = 64;
  opt.cache.num_state_slots = 4;
  opt.max_step_tokens = 256;
  opt.max_step_seqs = 4;
  opt.chunked_gdn_prefill = chunked;
  auto r = model::create_cpu_model(m.desc, opt);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? std::move(r).value() : nullptr;
}

std::vector<int32_t> prompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(rng() % 96);
  return v;
}

// Sequence s uses KV blocks [16 s, 16 s + 16) and state slot s.
SeqStep step_of(int s, const std::vector<int32_t>& ids, int64_t begin, int64_t n) {
  SeqStep st;
  st.seq_id = s;
  st.token_ids.assign(ids.begin() + begin, ids.begin() + begin + n);
  st.start_pos = begin;
  for (int b = 0; b < (begin + n + kBlock - 1) / kBlock; ++b) st.block_table.push_back(16 * s + b);
  st.state_slot = s;
  st.all_logits = true;
  st.return_logits = true;
  return st;
}

// Runs one sequence in chunks of `chunk` tokens; returns all logits rows.
std::vector<float> run_chunked(Qwen35Model& model, int s, const std::vector<int32_t>& ids, int64_t chunk) {
  std::vector<float> all;
  for (int64_t b = 0; b < static_cast<int64_t>(ids.size()); b += chunk) {
    StepPlan plan;
    plan.seqs.push_back(step_of(s, ids, b, std::min<int64_t>(chunk, static_cast<int64_t>(ids.size()) - b)));
    auto out = model.forward(plan);
    EXPECT_TRUE(out.is_ok()) << out.status().message();
    all.insert(all.end(), out->logits.begin(), out->logits.end());
  }
  return all;
}

struct Named {
  const char* name;
  test::SyntheticSpec spec;
};

std::vector<Named> specs() {
  std::vector<Named> v;
  v.push_back({"dense f32", {}});
  test::SyntheticSpec s;
  s.dense = DType::kBF16;
  s.tied = true;
  v.push_back({"dense bf16 tied", s});
  s = {};
  s.moe = true;
  v.push_back({"moe f32", s});
  s = {};
  s.bits = 4;
  s.act_order = true;
  v.push_back({"dense gptq int4 act-order", s});
  s = {};
  s.moe = true;
  s.bits = 8;
  s.sym = false;
  v.push_back({"moe gptq int8 asym", s});
  s = {};
  s.moe = true;
  s.bits = 4;
  v.push_back({"moe gptq int4", s});
  return v;
}

TEST(CpuQwen35, MatchesDoublePrecisionReference) {
  for (const auto& nm : specs()) {
    auto m = test::make_synthetic(nm.spec);
    auto model = make_model(*m);
    ASSERT_TRUE(model);
    const auto ids = prompt(19, 7);
    const auto ref = test::reference_forward(*m, ids);
    const auto got = run_chunked(*model, 0, ids, 64);
    double worst = 0;
    for (size_t t = 0; t < ids.size(); ++t)
      worst = std::max(worst, test::max_abs_diff(got.data() + t * 96, ref[t].data(), 96));
    EXPECT_LE(worst, 1e-4) << nm.name;
    std::printf("[ reference ] %-28s max |dlogit| %.3g\n", nm.name, worst);
  }
}

TEST(CpuQwen35, BatchingAndChunkingInvariance) {
  test::SyntheticSpec spec;
  spec.moe = true;
  spec.bits = 4;
  auto m = test::make_synthetic(spec);
  auto model = make_model(*m);
  ASSERT_TRUE(model);
  const std::vector<std::vector<int32_t>> seqs = {prompt(21, 1), prompt(9, 2), prompt(14, 3)};
  std::vector<std::vector<float>> alone;
  for (int s = 0; s < 3; ++s) alone.push_back(run_chunked(*model, s, seqs[static_cast<size_t>(s)], 64));
  double worst = 0;
  // Chunked prefill of any size.
  for (int64_t chunk : {1, 2, 5, 8}) {
    for (int s = 0; s < 3; ++s) {
      const auto got = run_chunked(*model, s, seqs[static_cast<size_t>(s)], chunk);
      worst = std::max(worst, test::max_abs_diff(got.data(), alone[static_cast<size_t>(s)].data(), got.size()));
    }
  }
  // All three in one step, then a mixed step pattern: staggered chunks of different sizes.
  StepPlan plan;
  for (int s = 0; s < 3; ++s) plan.seqs.push_back(step_of(s, seqs[static_cast<size_t>(s)], 0, static_cast<int64_t>(seqs[static_cast<size_t>(s)].size())));
  auto out = model->forward(plan);
  ASSERT_TRUE(out.is_ok()) << out.status().message();
  for (int s = 0; s < 3; ++s)
    worst = std::max(worst, test::max_abs_diff(out->logits.data() + out->row_offset[static_cast<size_t>(s)] * 96,
                                               alone[static_cast<size_t>(s)].data(), alone[static_cast<size_t>(s)].size()));
  std::vector<int64_t> done(3, 0);
  std::vector<std::vector<float>> mixed(3);
  const int64_t sizes[3] = {7, 1, 3};
  while (done[0] < 21 || done[1] < 9 || done[2] < 14) {
    StepPlan p;
    std::vector<int> who;
    for (int s = 0; s < 3; ++s) {
      const int64_t len = static_cast<int64_t>(seqs[static_cast<size_t>(s)].size());
      if (done[static_cast<size_t>(s)] >= len) continue;
      const int64_t n = std::min(sizes[s], len - done[static_cast<size_t>(s)]);
      p.seqs.push_back(step_of(s, seqs[static_cast<size_t>(s)], done[static_cast<size_t>(s)], n));
      done[static_cast<size_t>(s)] += n;
      who.push_back(s);
    }
    auto o = model->forward(p);
    ASSERT_TRUE(o.is_ok());
    for (size_t i = 0; i < who.size(); ++i) {
      const int64_t r0 = o->row_offset[i], r1 = i + 1 < who.size() ? o->row_offset[i + 1] : static_cast<int64_t>(o->logits.size() / 96);
      mixed[static_cast<size_t>(who[i])].insert(mixed[static_cast<size_t>(who[i])].end(), o->logits.begin() + r0 * 96, o->logits.begin() + r1 * 96);
    }
  }
  for (int s = 0; s < 3; ++s)
    worst = std::max(worst, test::max_abs_diff(mixed[static_cast<size_t>(s)].data(), alone[static_cast<size_t>(s)].data(),
                                               alone[static_cast<size_t>(s)].size()));
  std::printf("[ invariance ] max |dlogit| batched/chunked vs alone: %.3g\n", worst);
  EXPECT_LE(worst, 1e-5);
}

TEST(CpuQwen35, ChunkedGdnPrefillMatchesRecurrence) {
  test::SyntheticSpec spec;
  auto m = test::make_synthetic(spec);
  auto rec = make_model(*m, false), chk = make_model(*m, true);
  ASSERT_TRUE(rec && chk);
  const auto ids = prompt(150, 5);  // > 2 chunks of 64
  const auto a = run_chunked(*rec, 0, ids, 150), b = run_chunked(*chk, 0, ids, 150);
  const double d = test::max_abs_diff(a.data(), b.data(), a.size());
  std::printf("[ gdn chunked ] max |dlogit| chunked vs recurrent: %.3g\n", d);
  EXPECT_LE(d, 1e-4);
}

TEST(CpuQwen35, ExplicitMropePositions) {
  auto m = test::make_synthetic({});
  auto model = make_model(*m);
  ASSERT_TRUE(model);
  const auto ids = prompt(12, 4);
  const auto text = run_chunked(*model, 0, ids, 12);
  StepPlan p;
  p.seqs.push_back(step_of(0, ids, 0, 12));
  for (int64_t i = 0; i < 12; ++i) p.seqs[0].mrope_positions.insert(p.seqs[0].mrope_positions.end(), {i, i, i});
  auto same = model->forward(p);
  ASSERT_TRUE(same.is_ok());
  EXPECT_EQ(same->logits, text);  // text positions spelled out: identical
  // Image-like grid positions on the h / w rows change the rotary angles and so the logits.
  for (int64_t i = 4; i < 8; ++i) {
    p.seqs[0].mrope_positions[static_cast<size_t>(3 * i + 1)] = 4 + (i - 4) / 2;
    p.seqs[0].mrope_positions[static_cast<size_t>(3 * i + 2)] = 4 + (i - 4) % 2;
  }
  auto grid = model->forward(p);
  ASSERT_TRUE(grid.is_ok());
  EXPECT_GT(test::max_abs_diff(grid->logits.data() + 5 * 96, text.data() + 5 * 96, 96), 1e-4);
  EXPECT_EQ(std::vector<float>(grid->logits.begin(), grid->logits.begin() + 4 * 96),
            std::vector<float>(text.begin(), text.begin() + 4 * 96));
  p.seqs[0].mrope_positions.resize(5);
  EXPECT_EQ(model->forward(p).status().code(), ErrorCode::kInvalidArgument);
}

TEST(CpuQwen35, RejectsBadPlans) {
  auto m = test::make_synthetic({});
  auto model = make_model(*m);
  ASSERT_TRUE(model);
  const auto ids = prompt(9, 1);
  StepPlan p;
  p.seqs.push_back(step_of(0, ids, 0, 9));
  p.seqs[0].block_table.resize(1);
  EXPECT_EQ(model->forward(p).status().code(), ErrorCode::kInvalidArgument);
  p.seqs[0] = step_of(0, ids, 0, 9);
  p.seqs[0].state_slot = 9;
  EXPECT_EQ(model->forward(p).status().code(), ErrorCode::kInvalidArgument);
  p.seqs[0] = step_of(0, ids, 0, 9);
  p.seqs[0].token_ids[2] = 96;
  EXPECT_EQ(model->forward(p).status().code(), ErrorCode::kInvalidArgument);
  p.seqs[0] = step_of(0, ids, 0, 9);
  EXPECT_TRUE(model->forward(p).is_ok());
}

}  // namespace
}  // namespace ds
