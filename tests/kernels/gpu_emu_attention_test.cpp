// Paged attention on the GPU backend under emulation against the reference backend, beyond the
// shared op sweep: one token, a long resumed context that the decode kernel splits, many
// sequences of mixed lengths (prefill + decode in one step), all-decode batches, block tables with
// holes (scattered ids, unused blocks), GQA ratios 1, 2, 8 and 16, head_dim up to 256, f32 / bf16 /
// f16, warp sizes 32 and 64, each under three schedules that must give identical bytes.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/backend/reference_backend.h"
#include "deltaserve/core/dtype.h"
#include "kernels/emu/emu.h"
#include "kernels/gpu/ops_attention.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/kernels/gpu_emu_check.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;

struct Case {
  std::string name;
  std::vector<int64_t> start, n;  // per sequence: cached tokens, new tokens
  int heads, kv_heads, head_dim, block_size;
};

// The blocks of every sequence drawn from a shuffled pool twice the size needed: ids scattered,
// some never used, -1 past each sequence's end.
struct Layout {
  int blocks_per_seq = 0, num_blocks = 0;
  std::vector<int32_t> tables;
  explicit Layout(const Case& c) {
    std::vector<int> need;
    for (size_t s = 0; s < c.n.size(); ++s) {
      need.push_back(static_cast<int>((c.start[s] + c.n[s] + c.block_size - 1) / c.block_size));
      blocks_per_seq = std::max(blocks_per_seq, need.back() + 1);
    }
    num_blocks = 2 * std::accumulate(need.begin(), need.end(), 0) + 5;
    std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(11));
    size_t next = 0;
    for (size_t s = 0; s < c.n.size(); ++s)
      for (int b = 0; b < blocks_per_seq; ++b) tables.push_back(b < need[s] ? ids[next++] : -1);
  }
};

// prefix: the step that caches the resumed sequences' first start[s] tokens.
backend::StepMeta make_meta(const Case& c, const Layout& lay, bool prefix) {
  backend::StepMeta m;
  m.cu_seqlens = {0};
  m.blocks_per_seq = lay.blocks_per_seq;
  for (size_t s = 0; s < c.n.size(); ++s) {
    if (prefix && c.start[s] == 0) continue;
    const int64_t s0 = prefix ? 0 : c.start[s], len = prefix ? c.start[s] : c.n[s];
    for (int64_t t = 0; t < len; ++t) {
      m.token_ids.push_back(1);
      for (int r = 0; r < 3; ++r) m.positions.push_back(s0 + t);
    }
    m.cu_seqlens.push_back(m.cu_seqlens.back() + static_cast<int32_t>(len));
    m.start_pos.push_back(s0);
    m.state_slots.push_back(static_cast<int32_t>(s));
    for (int b = 0; b < lay.blocks_per_seq; ++b)
      m.block_tables.push_back(lay.tables[s * static_cast<size_t>(lay.blocks_per_seq) + static_cast<size_t>(b)]);
  }
  return m;
}

// Random values already representable in dtype, so both backends see the same inputs.
std::vector<float> rnd(size_t n, uint32_t seed, DType dt) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(rng);
    if (dt == DType::kBF16) x = bf16_to_f32(f32_to_bf16(x));
    if (dt == DType::kF16) x = f16_to_f32(f32_to_f16(x));
  }
  return v;
}

// Runs the prefix step (if any) and the step on `be` with inputs representable in `values`;
// returns both steps' outputs as fp32.
std::vector<float> run(Backend& be, const Case& c, DType values) {
  const DType dt = be.activation_dtype();
  const Layout lay(c);
  backend::CacheSpec cs;
  cs.num_attn_layers = 2;
  cs.num_kv_blocks = lay.num_blocks;
  cs.block_size = c.block_size;
  cs.kv_heads = c.kv_heads;
  cs.head_dim = c.head_dim;
  EXPECT_TRUE(be.allocate_cache(cs).is_ok());
  EXPECT_TRUE(be.reserve_step({1024, 16, lay.blocks_per_seq, 16}).is_ok());
  const size_t esz = dtype_size(dt);
  const int64_t qc = int64_t{c.heads} * c.head_dim, kc = int64_t{c.kv_heads} * c.head_dim;
  std::vector<float> outs;
  for (bool prefix : {true, false}) {
    const backend::StepMeta m = make_meta(c, lay, prefix);
    const int64_t T = m.num_tokens();
    if (T == 0) continue;
    EXPECT_TRUE(be.plan(m).is_ok());
    // q and out padded (ld > cols) and k/v read as column views of one [T][2*kc] buffer, as the model does.
    const int64_t q_ld = qc + 3, kv_ld = 2 * kc;
    std::vector<float> hq = rnd(static_cast<size_t>(T * q_ld), prefix ? 1 : 2, values);
    std::vector<float> hkv = rnd(static_cast<size_t>(T * kv_ld), prefix ? 3 : 4, values);
    auto put = [&](const std::vector<float>& h) {
      auto buf = be.alloc(h.size() * esz, "test").value();
      std::vector<uint16_t> b16(h.size());
      for (size_t i = 0; i < h.size(); ++i) b16[i] = dt == DType::kBF16 ? f32_to_bf16(h[i]) : f32_to_f16(h[i]);
      be.upload(buf->data(), dt == DType::kF32 ? static_cast<const void*>(h.data()) : b16.data(), h.size() * esz);
      return buf;
    };
    auto dq = put(hq), dkv = put(hkv), dout = put(std::vector<float>(static_cast<size_t>(T * q_ld), 0.0f));
    const Act q{dq->data(), dt, T, qc, q_ld}, kv{dkv->data(), dt, T, 2 * kc, kv_ld};
    const Act out{dout->data(), dt, T, qc, q_ld};
    be.attention(1, q, kv.cols_view(0, kc), kv.cols_view(kc, kc), c.heads, c.kv_heads, c.head_dim,
                 1.0f / std::sqrt(static_cast<float>(c.head_dim)), out);
    std::vector<uint16_t> b16(static_cast<size_t>(T * q_ld));
    std::vector<float> o(static_cast<size_t>(T * q_ld));
    be.download(dt == DType::kF32 ? static_cast<void*>(o.data()) : b16.data(), dout->data(), o.size() * esz);
    be.synchronize();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < qc; ++i) {
        const size_t at = static_cast<size_t>(t * q_ld + i);
        outs.push_back(dt == DType::kF32 ? o[at] : dt == DType::kBF16 ? bf16_to_f32(b16[at]) : f16_to_f32(b16[at]));
      }
  }
  return outs;
}

void check_case(const Case& c, DType dt, double atol, double rtol) {
  test::check_emulated(c.name, dt, atol, rtol, 5, [&](Backend& be) { return run(be, c, dt); });
}

const double kF32Tol = 2e-5;

TEST(GpuEmuAttention, OneToken) {
  check_case({"one token", {0}, {1}, 4, 2, 16, 4}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuAttention, LongContextDecodeSplits) {
  // 700 cached + 1 new: the decode kernel splits the context (kAttnDecodeMinKeysPerSplit apart).
  ASSERT_GT(gpu::attention_decode_splits(1, 8, 1, 16, 701, size_t{1} << 30), 2);
  check_case({"700+1", {700}, {1}, 8, 1, 16, 16}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuAttention, MixedPrefillAndDecode) {
  check_case({"mixed", {0, 9, 3, 40, 0}, {7, 1, 19, 1, 33}, 4, 2, 16, 4}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"mixed gqa1", {5, 0}, {17, 2}, 3, 3, 24, 8}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuAttention, AllDecodeMixedLengths) {
  check_case({"decode batch", {5, 0, 33, 300, 17}, {1, 1, 1, 1, 1}, 16, 2, 32, 4}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"decode gqa16", {40, 3}, {1, 1}, 16, 1, 8, 16}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuAttention, HeadDim256) {
  check_case({"hd256 prefill", {0, 4}, {18, 3}, 8, 1, 256, 16}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"hd256 decode", {20, 0}, {1, 1}, 4, 2, 256, 16}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuAttention, HalfPrecisionActivations) {
  // Peers' tolerance for bf16 paged attention (vLLM test_triton_unified_attention): atol 1.5e-2, rtol 1e-2.
  const Case mixed{"mixed 16-bit", {0, 12, 300}, {9, 1, 1}, 4, 2, 32, 8};
  const Case decode{"decode 16-bit", {0, 12, 300}, {1, 1, 1}, 4, 2, 32, 8};
  for (const Case& c : {mixed, decode}) {
    check_case(c, DType::kBF16, 1.5e-2, 1e-2);
    check_case(c, DType::kF16, 2e-3, 2e-3);
  }
}

}  // namespace
}  // namespace ds
