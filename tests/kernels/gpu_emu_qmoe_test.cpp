// GPTQ/AutoRound weights through the GPU backend under emulation (prepare_weight's repack, linear on
// the quantized GEMM, the grouped MoE experts) against the reference backend, which dequantises the
// same checkpoint tensors in fp64: INT4/INT8, sym/asym, act-order, odd shapes; experts with skewed
// routing where most experts get no token and one spans several row tiles. Each case at warp 32
// and 64 under three schedules (identical bytes per warp size).
#define DS_EMU 1
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/core/dtype.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/kernels/gpu_emu_check.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;
using test::Dev;

// A checkpoint Linear in GPTQ form with random codes, scales and zeros.
struct Gptq {
  int64_t n = 0, k = 0;
  int bits = 4, group_size = 32;
  bool sym = true, v2 = false;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  int64_t groups = 1;

  Gptq(int64_t n_, int64_t k_, int bits_, int gs, bool sym_, bool act_order, uint32_t seed)
      : n(n_), k(k_), bits(bits_), group_size(gs), sym(sym_) {
    std::mt19937 rng(seed);
    const int pf = 32 / bits;
    const int64_t g = gs > 0 ? gs : k;
    groups = (k + g - 1) / g;
    qweight.assign(static_cast<size_t>(k / pf * n), 0);
    for (auto& w : qweight) w = static_cast<int32_t>(rng());
    qzeros.assign(static_cast<size_t>(groups * (n / pf)), 0);
    for (auto& z : qzeros) z = static_cast<int32_t>(rng());
    scales.resize(static_cast<size_t>(groups * n));
    // weights of about the same size at either width (INT8 codes span 16x the range)
    const float unit = bits == 8 ? 1.0f / 16 : 1.0f;
    std::uniform_real_distribution<float> us(0.005f * unit, 0.03f * unit);
    for (auto& s : scales) s = f32_to_f16(us(rng));
    if (act_order) {
      std::vector<int32_t> order(static_cast<size_t>(k));
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      g_idx.resize(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) g_idx[static_cast<size_t>(order[static_cast<size_t>(i)])] = static_cast<int32_t>(i / g);
    }
  }
  backend::WeightSource source() const {
    backend::WeightSource s;
    s.name = "q";
    s.n = n;
    s.k = k;
    s.bits = bits;
    s.group_size = group_size;
    s.sym = sym;
    s.zeros_v2 = v2;
    s.qweight = qweight.data();
    s.qzeros = qzeros.data();
    s.scales_dtype = DType::kF16;
    s.scales = scales.data();
    s.scale_groups = groups;
    s.g_idx = g_idx.empty() ? nullptr : g_idx.data();
    return s;
  }
};

std::vector<float> rnd(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = f16_to_f32(f32_to_f16(d(rng)));  // exact in every activation type we test
  return v;
}

void run(const std::string& name, DType act, double tol, const test::OpRun& body) {
  test::check_emulated(name, act, tol, tol, 5, [&](Backend& be) {
    EXPECT_TRUE(be.reserve_step({128, 8, 4, 8}).is_ok());
    return body(be);
  });
}

void linear_case(int64_t M, const Gptq& w, DType act, const std::string& what) {
  const std::vector<float> x = rnd(static_cast<size_t>(M * (w.k + 2)), 1);
  // 16-bit activations: the weight rounded to them (one rounding per product) and the output's
  const double tol = act == DType::kF16 ? 4e-3 : 3e-2;
  run("quantized linear " + what, act, tol, [&](Backend& be) {
    Dev d{be, {}};
    auto pw = be.prepare_weight(w.source());
    EXPECT_TRUE(pw.is_ok()) << pw.status().message();
    if (!pw.is_ok()) return std::vector<float>{};
    const DType dt = be.activation_dtype();
    const Act xa = d.put(x, dt, M, w.k, w.k + 2);
    const Act ya = d.put(std::vector<float>(static_cast<size_t>(M * (w.n + 1)), 0.0f), dt, M, w.n, w.n + 1);
    be.linear(**pw, xa, ya);
    be.synchronize();
    return d.get(ya);
  });
}

TEST(GpuEmuQuant, LinearFormats) {
  linear_case(3, Gptq(96, 128, 4, 32, true, false, 1), DType::kF16, "int4 g32 sym 96x128");
  linear_case(9, Gptq(72, 200, 4, 64, false, false, 2), DType::kBF16, "int4 g64 asym 72x200");
  linear_case(20, Gptq(64, 96, 8, 32, true, false, 3), DType::kF16, "int8 g32 sym");
  linear_case(2, Gptq(68, 128, 8, -1, false, false, 4), DType::kF16, "int8 channelwise asym");
  linear_case(5, Gptq(64, 128, 4, 32, true, true, 5), DType::kF16, "int4 g32 act-order");
  linear_case(4, Gptq(40, 48, 4, 24, true, false, 6), DType::kF16, "int4 g24 (the portable kernel)");
}

TEST(GpuEmuQuant, LinearDecodeSplitsK) {
  // One column block and 2048 rows: the grid splits K (target 16 blocks) across more blocks than
  // the emulator keeps resident.
  linear_case(1, Gptq(64, 2048, 4, 128, true, false, 7), DType::kF16, "int4 64x2048 decode");
}

void experts_case(int64_t T, int E, int top_k, int64_t H, int64_t I, int bits, int gs, bool skewed, DType act) {
  const std::vector<float> x = rnd(static_cast<size_t>(T * H), 11);
  std::vector<float> logits = rnd(static_cast<size_t>(T * E), 12, 2.0f);
  if (skewed)  // every token picks experts 1 and 3 (then the others by chance): most experts idle
    for (int64_t t = 0; t < T; ++t) {
      logits[static_cast<size_t>(t * E + 1)] += 20.0f;
      logits[static_cast<size_t>(t * E + 3)] += 19.0f;
    }
  std::vector<Gptq> wg, wu, wd;
  for (int e = 0; e < E; ++e) {
    wg.emplace_back(I, H, bits, gs, true, false, 100 + e);
    wu.emplace_back(I, H, bits, gs, true, false, 200 + e);
    wd.emplace_back(H, I, bits, gs, true, false, 300 + e);
  }
  const std::string name = "quantized experts T=" + std::to_string(T) + " E=" + std::to_string(E) + " k=" +
                           std::to_string(top_k) + " H=" + std::to_string(H) + " I=" + std::to_string(I) + " int" +
                           std::to_string(bits);
  run(name, act, act == DType::kF16 ? 1e-2 : 4e-2, [&](Backend& be) {
    Dev d{be, {}};
    std::vector<std::unique_ptr<backend::PreparedWeight>> owned;
    std::vector<const backend::PreparedWeight*> g, u, dn;
    for (int e = 0; e < E; ++e) {
      for (auto* set : {&wg, &wu, &wd}) {
        owned.push_back(be.prepare_weight((*set)[static_cast<size_t>(e)].source()).value());
        (set == &wg ? g : set == &wu ? u : dn).push_back(owned.back().get());
      }
    }
    return run_moe_layer(d, x, logits, T, H, E, top_k, g, u, dn);
  });
}

TEST(GpuEmuQuant, ExpertsDecode) {
  experts_case(1, 8, 2, 32, 64, 4, 32, false, DType::kF16);    // moe-gptq-int4's shapes
  experts_case(2, 16, 4, 128, 64, 8, 32, false, DType::kBF16);
  experts_case(1, 8, 2, 512, 64, 4, 128, false, DType::kF16);  // gate + up split K four ways
}

TEST(GpuEmuQuant, ManyExpertsMostIdle) {
  experts_case(3, 64, 8, 64, 32, 4, 32, false, DType::kF16);  // 24 pairs over 64 experts
}

TEST(GpuEmuQuant, ExpertsInt8Prefill) {
  experts_case(42, 6, 2, 96, 24, 8, 128, false, DType::kBF16);
}

TEST(GpuEmuQuant, ExpertsSkewedPrefill) {
  experts_case(40, 12, 2, 64, 48, 4, 16, true, DType::kF16);  // 40 rows on experts 1 and 3: two tiles each
}

}  // namespace
}  // namespace ds
