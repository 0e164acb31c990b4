// The host shards the model prepares (src/model/shard.cpp) against what `inspect -tp N` plans
// (plan_memory, per-rank bytes by model_walk's splits): on every fixture at TP 2, each Linear's shard
// holds exactly the bytes the plan counts for one rank, and every rank's shards together hold the
// whole weight (column shards tile the outputs; row shards tile the inputs). Plus the shard math on
// small hand-made GPTQ weights: packed columns, act-order rows keeping every group's scales.
#include <gtest/gtest.h>

#include <cstring>

#include "deltaserve/model/loader.h"
#include "deltaserve/model/memory_plan.h"
#include "deltaserve/model/model_walk.h"
#include "src/model/shard.h"
#include "tests/runtime/fixture_list.h"

namespace ds::model {
namespace {

size_t shard_bytes(const ShardedWeight& w, const backend::WeightSource& full, const LinearWeight& lw) {
  // Bytes this rank holds: its copies, plus what still points into the checkpoint (a contiguous
  // dense column shard, and the g_idx a column shard keeps whole).
  size_t b = w.weight.size() + w.scales.size() + w.bias.size() + 4 * (w.qweight.size() + w.qzeros.size() + w.g_idx.size());
  if (full.bits >= 16 && w.weight.empty()) b += static_cast<size_t>(w.src.n * w.src.k) * dtype_size(full.weight_dtype);
  if (full.bits < 16 && full.g_idx && w.g_idx.empty()) b += lw.g_idx.nbytes;
  if (full.bias && w.bias.empty() && w.src.bias) b += lw.bias.nbytes;
  return b;
}

Result<std::unique_ptr<ShardedWeight>> shard(const LinearRef& r, const ModelConfig& c, int rank, int tp) {
  const backend::WeightSource full = weight_source(*r.w);
  switch (r.split) {
    case TpSplit::kColumn:
    case TpSplit::kVocab: return shard_column(full, column_spans(full.n, {}, rank, tp));
    case TpSplit::kKvHeads: return shard_column(full, kv_head_spans(c.num_kv_heads, c.head_dim, rank, tp));
    case TpSplit::kRow: return shard_row(full, rank, tp);
    default: return shard_column(full, {{0, full.n}});
  }
}

class TpShardFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TpShardFixture, ShardsHoldWhatInspectPlansPerRank) {
  auto desc = load_model_dir(test::fixtures_dir() + "/models/" + GetParam());
  ASSERT_TRUE(desc.is_ok()) << desc.status().message();
  const int tp = 2;
  if (!check_tp_config(desc->config, tp).is_ok()) GTEST_SKIP() << "TP 2 does not divide this fixture's heads";
  bool refused = false;
  size_t linears = 0;
  visit_linears(*desc, [&](const LinearRef& r) {
    if (r.component == Component::kMtp || !r.w->present()) return;
    if (!check_quant_shard(*r.w, r.split, tp).is_ok()) {
      refused = true;
      return;
    }
    const uint64_t planned = linear_bytes_per_rank(*r.w, r.split, tp, desc->config.num_kv_heads);
    for (int rank = 0; rank < tp; ++rank) {
      auto s = shard(r, desc->config, rank, tp);
      ASSERT_TRUE(s.is_ok()) << r.w->name << ": " << s.status().message();
      const size_t got = shard_bytes(**s, weight_source(*r.w), *r.w);
      // The plan rounds a split up to whole bytes; a row shard's bias stays on rank 0 only.
      EXPECT_NEAR(static_cast<double>(got), static_cast<double>(planned), r.w->bias.nbytes + 8.0)
          << r.w->name << " rank " << rank;
    }
    ++linears;
  });
  if (refused) {
    EXPECT_FALSE(plan_memory(*desc, MemoryOptions{.tensor_parallel_size = tp}).is_ok());
  } else {
    EXPECT_GT(linears, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(All, TpShardFixture, ::testing::ValuesIn(test::fixture_names()), [](const auto& info) {
  std::string s = info.param;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

// A 4-bit weight [n=16][k=64], group 16, with codes c(n, k) = (n + 3k) % 16 and scale s(g, n).
struct Gptq {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  backend::WeightSource src;
  Gptq(bool act_order) {
    const int n = 16, k = 64, G = 4;
    qweight.assign(k / 8 * n, 0);
    for (int kk = 0; kk < k; ++kk)
      for (int nn = 0; nn < n; ++nn) qweight[kk / 8 * n + nn] |= ((nn + 3 * kk) % 16) << (4 * (kk % 8));
    qzeros.assign(G * n / 8, 0x77777777);
    for (int g = 0; g < G; ++g)
      for (int nn = 0; nn < n; ++nn) scales.push_back(static_cast<uint16_t>(0x3c00 + g * 16 + nn));
    for (int kk = 0; kk < k; ++kk) g_idx.push_back(act_order ? (kk * 7) % G : kk / 16);
    src.name = "w";
    src.n = n;
    src.k = k;
    src.bits = 4;
    src.group_size = 16;
    src.sym = false;
    src.qweight = qweight.data();
    src.qzeros = qzeros.data();
    src.scales = scales.data();
    src.scales_dtype = DType::kF16;
    src.scale_groups = G;
    src.g_idx = g_idx.data();
  }
};

int code(const backend::WeightSource& s, int n, int k) { return (s.qweight[k / 8 * s.n + n] >> (4 * (k % 8))) & 15; }

TEST(TpShard, ColumnShardsKeepCodesScalesAndZerosOfTheirOutputs) {
  Gptq w(false);
  auto s = shard_column(w.src, {{8, 8}});  // outputs 8..15: one packed zero word per group
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  const backend::WeightSource& c = (*s)->src;
  EXPECT_EQ(c.n, 8);
  for (int k = 0; k < 64; ++k)
    for (int n = 0; n < 8; ++n) ASSERT_EQ(code(c, n, k), (n + 8 + 3 * k) % 16);
  for (int g = 0; g < 4; ++g)
    for (int n = 0; n < 8; ++n) EXPECT_EQ(static_cast<const uint16_t*>(c.scales)[g * 8 + n], 0x3c00 + g * 16 + n + 8);
  EXPECT_EQ(c.qzeros[0], 0x77777777);
  EXPECT_FALSE(shard_column(w.src, {{4, 8}}).is_ok()) << "a shard that splits a packed zero word";
}

TEST(TpShard, RowShardsKeepTheirGroupsOrEveryGroupUnderActOrder) {
  Gptq plain(false);
  auto r1 = shard_row(plain.src, 1, 2);  // inputs 32..63: groups 2 and 3, renumbered 0 and 1
  ASSERT_TRUE(r1.is_ok()) << r1.status().message();
  const backend::WeightSource& p = (*r1)->src;
  EXPECT_EQ(p.k, 32);
  EXPECT_EQ(p.scale_groups, 2);
  EXPECT_EQ(static_cast<const uint16_t*>(p.scales)[0], 0x3c00 + 2 * 16);
  for (int k = 0; k < 32; ++k) {
    EXPECT_EQ(p.g_idx[k], k / 16);
    for (int n = 0; n < 16; ++n) ASSERT_EQ(code(p, n, k), (n + 3 * (k + 32)) % 16);
  }
  Gptq act(true);
  auto r0 = shard_row(act.src, 0, 2);
  ASSERT_TRUE(r0.is_ok()) << r0.status().message();
  const backend::WeightSource& a = (*r0)->src;
  EXPECT_EQ(a.scale_groups, 4) << "act-order: the slice reads groups anywhere";
  for (int k = 0; k < 32; ++k) EXPECT_EQ(a.g_idx[k], (k * 7) % 4);
  EXPECT_EQ(std::memcmp(a.scales, act.scales.data(), act.scales.size() * 2), 0);
}

}  // namespace
}  // namespace ds::model
