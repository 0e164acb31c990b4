// Backend ops against independent double-precision references, every ISA against the scalar
// oracle, and batching invariance (a token's output bit-identical alone or in a batch).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/kernels/cpu.h"
#include "tests/runtime/test_util.h"

namespace ds {
namespace {

using backend::CpuBackend;
using backend::WeightSource;
using kernels::CpuIsa;

std::vector<CpuIsa> isas() {
  std::vector<CpuIsa> v{CpuIsa::kScalar};
  for (CpuIsa i : {CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (kernels::cpu_isa_supported(i)) v.push_back(i);
  return v;
}

// y = x W^T in double, W [N][K].
std::vector<double> ref_linear(const std::vector<double>& W, int64_t N, int64_t K, const std::vector<float>& x,
                               int64_t m, std::vector<double>* mag) {
  std::vector<double> y(static_cast<size_t>(m * N));
  mag->assign(y.size(), 0.0);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = W[static_cast<size_t>(n * K + k)] * x[static_cast<size_t>(t * K + k)];
        s += p;
        a += std::fabs(p);
      }
      y[static_cast<size_t>(t * N + n)] = s;
      (*mag)[static_cast<size_t>(t * N + n)] = a;
    }
  return y;
}

void check_linear(const WeightSource& src, const std::vector<double>& W, const char* what) {
  const int64_t m = 7;
  const auto x = test::randn(static_cast<size_t>(m * src.k), 11);
  std::vector<double> mag;
  const auto ref = ref_linear(W, src.n, src.k, x, m, &mag);
  for (CpuIsa isa : isas()) {
    CpuBackend be(isa);
    auto w = be.prepare_weight(src);
    ASSERT_TRUE(w.is_ok()) << w.status().message();
    std::vector<float> y(static_cast<size_t>(m * src.n));
    be.linear(**w, test::host_act(x.data(), m, src.k), test::host_act(y.data(), m, src.n));
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], ref[i], 2e-6 * mag[i] + 1e-6) << what << " isa " << kernels::cpu_isa_name(isa) << " i " << i;
    // Batching invariance: each token alone gives bit-identical rows.
    for (int64_t t = 0; t < m; ++t) {
      std::vector<float> y1(static_cast<size_t>(src.n));
      be.linear(**w, test::host_act(x.data() + t * src.k, 1, src.k), test::host_act(y1.data(), 1, src.n));
      for (int64_t n = 0; n < src.n; ++n)
        ASSERT_EQ(y1[static_cast<size_t>(n)], y[static_cast<size_t>(t * src.n + n)]) << what << " token " << t;
    }
  }
}

TEST(CpuLinear, DenseFormatsMatchReference) {
  for (auto [N, K] : {std::pair<int64_t, int64_t>{37, 70}, {64, 128}, {5, 300}}) {
    const auto wf = test::randn(static_cast<size_t>(N * K), 3, 0.1f);
    std::vector<uint16_t> wb(wf.size()), wh(wf.size());
    std::vector<double> Wf(wf.size()), Wb(wf.size()), Wh(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) {
      wb[i] = f32_to_bf16(wf[i]);
      wh[i] = f32_to_f16(wf[i]);
      Wf[i] = wf[i];
      Wb[i] = bf16_to_f32(wb[i]);
      Wh[i] = f16_to_f32(wh[i]);
    }
    WeightSource s;
    s.name = "dense";
    s.n = N;
    s.k = K;
    s.weight_dtype = DType::kF32;
    s.weight = wf.data();
    check_linear(s, Wf, "f32");
    s.weight_dtype = DType::kBF16;
    s.weight = wb.data();
    check_linear(s, Wb, "bf16");
    s.weight_dtype = DType::kF16;
    s.weight = wh.data();
    check_linear(s, Wh, "f16");
  }
}

TEST(CpuLinear, GptqFormatsMatchDequantReference) {
  struct Case {
    int64_t N, K;
    int bits, gs;
    bool sym, v2, act;
  };
  const Case cases[] = {
      {48, 256, 4, 32, true, false, false},  {40, 96, 4, 32, false, false, false},
      {64, 256, 4, 128, false, true, false}, {48, 256, 4, 64, true, false, true},
      {24, 128, 4, -1, true, false, false},  {32, 192, 8, 32, true, false, false},
      {36, 128, 8, 64, false, false, true},  {16, 256, 8, 128, false, true, false},
      {72, 96, 4, 32, false, false, true},
  };
  uint32_t seed = 100;
  for (const Case& c : cases) {
    const auto t = test::make_gptq(c.N, c.K, c.bits, c.gs, c.sym, c.v2, c.act, seed++);
    WeightSource s;
    s.name = "gptq";
    s.n = c.N;
    s.k = c.K;
    s.bits = c.bits;
    s.group_size = c.gs;
    s.sym = c.sym;
    s.zeros_v2 = c.v2;
    s.qweight = t.qweight.data();
    s.qzeros = t.qzeros.data();
    s.scales = t.scales.data();
    s.scale_groups = t.G;
    s.g_idx = c.act || seed % 2 ? t.g_idx.data() : nullptr;
    const std::string what = "bits " + std::to_string(c.bits) + " gs " + std::to_string(c.gs) +
                             (c.sym ? " sym" : " asym") + (c.v2 ? " v2" : " v1") + (c.act ? " act" : "");
    check_linear(s, t.W, what.c_str());
  }
}

TEST(CpuLinear, RejectsBadInput) {
  CpuBackend be(CpuIsa::kScalar);
  WeightSource s;
  s.name = "bad";
  s.n = 8;
  s.k = 8;
  s.bits = 3;
  EXPECT_EQ(be.prepare_weight(s).status().code(), ErrorCode::kUnsupported);
  s.bits = 4;
  EXPECT_EQ(be.prepare_weight(s).status().code(), ErrorCode::kInvalidArgument);
  const auto t = test::make_gptq(16, 64, 4, 32, true, false, false, 1);
  std::vector<int32_t> gi(t.g_idx);
  gi[3] = 99;
  s.k = 64;
  s.n = 16;
  s.qweight = t.qweight.data();
  s.scales = t.scales.data();
  s.scale_groups = t.G;
  s.g_idx = gi.data();
  EXPECT_EQ(be.prepare_weight(s).status().code(), ErrorCode::kCorrupt);
}

// --- Gated delta rule ---

struct GdnInputs {
  int64_t T;
  int dk, dv;
  std::vector<float> q, k, v, g, beta;
};

GdnInputs make_gdn(int64_t T, int dk, int dv, uint32_t seed) {
  GdnInputs in{T, dk, dv, test::randn(static_cast<size_t>(T * dk), seed), test::randn(static_cast<size_t>(T * dk), seed + 1),
               test::randn(static_cast<size_t>(T * dv), seed + 2), {}, {}};
  kernels::l2_norm(in.q.data(), T, dk, dk, 1e-6f, 1.0f / std::sqrt(static_cast<float>(dk)));
  kernels::l2_norm(in.k.data(), T, dk, dk, 1e-6f, 1.0f);
  std::mt19937 rng(seed + 3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    in.g.push_back(-2.0f * u(rng));
    in.beta.push_back(u(rng));
  }
  return in;
}

// The recurrence exactly as written in qwen35-arch.md §3.4, state S[i][j] (K x V) in double.
std::vector<double> ref_gdn(const GdnInputs& in, std::vector<double>* S) {
  std::vector<double> o(static_cast<size_t>(in.T * in.dv));
  for (int64_t t = 0; t < in.T; ++t) {
    const double a = std::exp(static_cast<double>(in.g[static_cast<size_t>(t)]));
    for (auto& s : *S) s *= a;
    std::vector<double> u(static_cast<size_t>(in.dv));
    for (int j = 0; j < in.dv; ++j) {
      double sk = 0;
      for (int i = 0; i < in.dk; ++i) sk += (*S)[static_cast<size_t>(i * in.dv + j)] * in.k[static_cast<size_t>(t * in.dk + i)];
      u[static_cast<size_t>(j)] = in.beta[static_cast<size_t>(t)] * (in.v[static_cast<size_t>(t * in.dv + j)] - sk);
    }
    for (int i = 0; i < in.dk; ++i)
      for (int j = 0; j < in.dv; ++j) (*S)[static_cast<size_t>(i * in.dv + j)] += in.k[static_cast<size_t>(t * in.dk + i)] * u[static_cast<size_t>(j)];
    for (int j = 0; j < in.dv; ++j) {
      double s = 0;
      for (int i = 0; i < in.dk; ++i) s += (*S)[static_cast<size_t>(i * in.dv + j)] * in.q[static_cast<size_t>(t * in.dk + i)];
      o[static_cast<size_t>(t * in.dv + j)] = s;
    }
  }
  return o;
}

TEST(CpuGdn, RecurrentAndChunkedMatchReference) {
  for (auto [T, dk, dv] : {std::tuple<int64_t, int, int>{150, 32, 48}, {70, 128, 128}, {5, 24, 16}}) {
    const auto in = make_gdn(T, dk, dv, static_cast<uint32_t>(T));
    // A non-zero incoming state, as after an earlier chunk.
    const auto s0 = test::randn(static_cast<size_t>(dk * dv), 9, 0.3f);
    std::vector<double> Sref(s0.size());
    std::vector<float> Sf(s0.size());  // [dv][dk]
    for (int i = 0; i < dk; ++i)
      for (int j = 0; j < dv; ++j) {
        Sref[static_cast<size_t>(i * dv + j)] = s0[static_cast<size_t>(i * dv + j)];
        Sf[static_cast<size_t>(j * dk + i)] = s0[static_cast<size_t>(i * dv + j)];
      }
    const auto oref = ref_gdn(in, &Sref);
    auto check_state = [&](const std::vector<float>& S, double tol, const char* what) {
      for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j)
          ASSERT_NEAR(S[static_cast<size_t>(j * dk + i)], Sref[static_cast<size_t>(i * dv + j)], tol) << what;
    };
    for (CpuIsa isa : isas()) {
      std::vector<float> S = Sf, o(static_cast<size_t>(T * dv));
      kernels::cpu_kernels(isa).gdn_recurrent(S.data(), dk, dv, T, in.q.data(), in.k.data(), dk, in.v.data(), dv,
                                              in.g.data(), in.beta.data(), 1, o.data(), dv);
      EXPECT_LE(test::max_abs_diff(o.data(), oref.data(), o.size()), 2e-5) << kernels::cpu_isa_name(isa);
      check_state(S, 2e-5, kernels::cpu_isa_name(isa));
      // Splitting the tokens over two calls continues the same state.
      std::vector<float> S2 = Sf, o2(o.size());
      const int64_t a = T / 3;
      kernels::cpu_kernels(isa).gdn_recurrent(S2.data(), dk, dv, a, in.q.data(), in.k.data(), dk, in.v.data(), dv,
                                              in.g.data(), in.beta.data(), 1, o2.data(), dv);
      kernels::cpu_kernels(isa).gdn_recurrent(S2.data(), dk, dv, T - a, in.q.data() + a * dk, in.k.data() + a * dk, dk,
                                              in.v.data() + a * dv, dv, in.g.data() + a, in.beta.data() + a, 1,
                                              o2.data() + a * dv, dv);
      EXPECT_EQ(o, o2);
    }
    std::vector<float> S = Sf, o(static_cast<size_t>(T * dv));
    std::vector<float> scratch(static_cast<size_t>(kernels::gdn_chunked_scratch_floats(64, dk, dv)));
    kernels::gdn_chunked(S.data(), dk, dv, T, 64, in.q.data(), in.k.data(), dk, in.v.data(), dv, in.g.data(),
                         in.beta.data(), 1, o.data(), dv, scratch.data());
    EXPECT_LE(test::max_abs_diff(o.data(), oref.data(), o.size()), 1e-4) << "chunked T " << T;
    check_state(S, 1e-4, "chunked");
  }
}

// --- Paged attention ---

TEST(CpuAttention, PagedMatchesContiguousReference) {
  for (int hd : {64, 40}) {
    const int nh = 4, nkv = 2, bs = 4, L = 23, a = 9;
    const auto q = test::randn(static_cast<size_t>(L * nh * hd), 1);
    const auto k = test::randn(static_cast<size_t>(L * nkv * hd), 2);
    const auto v = test::randn(static_cast<size_t>(L * nkv * hd), 3);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // Reference: plain causal GQA softmax in double.
    std::vector<double> ref(static_cast<size_t>(L * nh * hd));
    for (int t = 0; t < L; ++t)
      for (int h = 0; h < nh; ++h) {
        const int kh = h / (nh / nkv);
        std::vector<double> p(static_cast<size_t>(t + 1));
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[static_cast<size_t>((t * nh + h) * hd + i)] * k[static_cast<size_t>((j * nkv + kh) * hd + i)];
          p[static_cast<size_t>(j)] = d * scale;
          mx = std::max(mx, p[static_cast<size_t>(j)]);
        }
        for (auto& x : p) sum += (x = std::exp(x - mx));
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (int j = 0; j <= t; ++j) o += p[static_cast<size_t>(j)] / sum * v[static_cast<size_t>((j * nkv + kh) * hd + i)];
          ref[static_cast<size_t>((t * nh + h) * hd + i)] = o;
        }
      }
    const int num_blocks = 12;
    std::vector<int32_t> table = {7, 2, 11, 0, 5, 9};  // scattered blocks
    for (CpuIsa isa : isas()) {
      CpuBackend be(isa);
      backend::CacheSpec cs;
      cs.num_attn_layers = 1;
      cs.num_kv_blocks = num_blocks;
      cs.block_size = bs;
      cs.kv_heads = nkv;
      cs.head_dim = hd;
      ASSERT_TRUE(be.allocate_cache(cs).is_ok());
      ASSERT_TRUE(be.reserve_step({L, 1, 6, 1}).is_ok());
      std::vector<float> out(static_cast<size_t>(L * nh * hd));
      // Prefill the first a tokens, then the rest in one more step.
      auto run = [&](int64_t start, int64_t n) {
        ASSERT_TRUE(be.plan(test::one_seq_meta(start, n, table)).is_ok());
        be.attention(0, test::host_act(q.data() + start * nh * hd, n, nh * hd),
                     test::host_act(k.data() + start * nkv * hd, n, nkv * hd),
                     test::host_act(v.data() + start * nkv * hd, n, nkv * hd), nh, nkv, hd, scale,
                     test::host_act(out.data() + start * nh * hd, n, nh * hd));
      };
      run(0, a);
      run(a, L - a);
      EXPECT_LE(test::max_abs_diff(out.data(), ref.data(), out.size()), 1e-5) << kernels::cpu_isa_name(isa) << " hd " << hd;
    }
  }
}

// --- Small ops ---

TEST(CpuOps, NormsMatchReference) {
  const int64_t rows = 3, dim = 37;
  const auto x = test::randn(static_cast<size_t>(rows * dim), 5), w = test::randn(static_cast<size_t>(dim), 6, 0.2f),
             z = test::randn(static_cast<size_t>(rows * dim), 7);
  std::vector<float> a(x.size()), b(x.size()), c(x.size());
  kernels::rms_norm(x.data(), w.data(), rows, dim, 1e-6f, true, a.data());
  kernels::rms_norm(x.data(), w.data(), rows, dim, 1e-6f, false, b.data());
  kernels::gated_rms_norm(x.data(), z.data(), w.data(), rows, dim, 1e-6f, c.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[static_cast<size_t>(r * dim + i)]) * x[static_cast<size_t>(r * dim + i)];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
    for (int64_t i = 0; i < dim; ++i) {
      const size_t j = static_cast<size_t>(r * dim + i);
      const double n = x[j] * inv;
      EXPECT_NEAR(a[j], n * (1.0 + w[static_cast<size_t>(i)]), 1e-5);
      EXPECT_NEAR(b[j], n * w[static_cast<size_t>(i)], 1e-5);
      EXPECT_NEAR(c[j], n * w[static_cast<size_t>(i)] * z[j] / (1.0 + std::exp(-static_cast<double>(z[j]))), 1e-5);
    }
  }
}

TEST(CpuOps, MropeMatchesReference) {
  const int heads = 2, hd = 16, rot = 8;
  const int32_t section[3] = {2, 1, 1};
  const int64_t pos[6] = {5, 7, 9, 300, 300, 300};
  auto x = test::randn(static_cast<size_t>(2 * heads * hd), 8);
  const auto x0 = x;
  kernels::rope_mrope(x.data(), 2, heads, hd, heads * hd, rot, 10000.0, section, pos);
  // Frequencies j = 0..3: rows t, h, w, t (j=1 < 3*1 -> h; j=2 < 3*1 -> w; j=3 -> t).
  const int rows[4] = {0, 1, 2, 0};
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd; ++i) {
        const size_t b = static_cast<size_t>((t * heads + h) * hd);
        double want = x0[b + static_cast<size_t>(i)];
        if (i < rot) {
          const int j = i % (rot / 2);
          const double ang = static_cast<double>(pos[t * 3 + rows[j]]) * std::pow(10000.0, -2.0 * j / rot);
          const double a = x0[b + static_cast<size_t>(j)], c = x0[b + static_cast<size_t>(j + rot / 2)];
          want = i < rot / 2 ? a * std::cos(ang) - c * std::sin(ang) : c * std::cos(ang) + a * std::sin(ang);
        }
        EXPECT_NEAR(x[b + static_cast<size_t>(i)], want, 2e-4) << t << " " << h << " " << i;
      }
}

TEST(CpuOps, ConvCausalMatchesReferenceAcrossSplits) {
  const int64_t T = 9, C = 5;
  const int K = 4;
  const auto x = test::randn(static_cast<size_t>(T * C), 1), w = test::randn(static_cast<size_t>(C * K), 2);
  std::vector<float> state(static_cast<size_t>((K - 1) * C), 0.0f), y(static_cast<size_t>(T * C));
  kernels::conv1d_causal_silu(x.data(), C, T, C, K, w.data(), nullptr, state.data(), y.data(), C);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int j = 0; j < K; ++j) {
        const int64_t src = t - (K - 1) + j;
        if (src >= 0) acc += static_cast<double>(w[static_cast<size_t>(c * K + j)]) * x[static_cast<size_t>(src * C + c)];
      }
      EXPECT_NEAR(y[static_cast<size_t>(t * C + c)], acc / (1 + std::exp(-acc)), 1e-5);
    }
  // Token by token with the carried state gives the same outputs.
  std::vector<float> st2(state.size(), 0.0f), y2(y.size());
  for (int64_t t = 0; t < T; ++t)
    kernels::conv1d_causal_silu(x.data() + t * C, C, 1, C, K, w.data(), nullptr, st2.data(), y2.data() + t * C, C);
  EXPECT_EQ(y, y2);
  EXPECT_EQ(state, st2);
}

TEST(CpuOps, RouterSoftmaxTopkRenormalised) {
  const float logits[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  int32_t ids[3];
  float w[3];
  kernels::moe_route(logits, 5, 3, true, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(ids[2], 4);
  const double e1 = std::exp(2.0), e4 = std::exp(1.0);
  EXPECT_NEAR(w[0], e1 / (2 * e1 + e4), 1e-6);
  EXPECT_NEAR(w[2], e4 / (2 * e1 + e4), 1e-6);
  kernels::moe_route(logits, 5, 3, false, ids, w);
  double all = 0;
  for (float l : logits) all += std::exp(static_cast<double>(l));
  EXPECT_NEAR(w[0], e1 / all, 1e-6);
}

TEST(CpuOps, MoeExpertsMatchDenseReference) {
  const int64_t T = 5, H = 32, I = 16, E = 6;
  const int top_k = 2;
  std::vector<std::vector<float>> wg, wu, wd;
  std::vector<std::unique_ptr<backend::PreparedWeight>> keep;
  std::vector<const backend::PreparedWeight*> g, u, d;
  CpuBackend be(kernels::detect_cpu_isa());
  auto prep = [&](const std::vector<float>& w, int64_t n, int64_t k) {
    WeightSource s;
    s.name = "e";
    s.n = n;
    s.k = k;
    s.weight_dtype = DType::kF32;
    s.weight = w.data();
    keep.push_back(std::move(be.prepare_weight(s).value()));
    return keep.back().get();
  };
  for (int64_t e = 0; e < E; ++e) {
    wg.push_back(test::randn(static_cast<size_t>(I * H), 10 + static_cast<uint32_t>(e), 0.2f));
    wu.push_back(test::randn(static_cast<size_t>(I * H), 20 + static_cast<uint32_t>(e), 0.2f));
    wd.push_back(test::randn(static_cast<size_t>(H * I), 30 + static_cast<uint32_t>(e), 0.2f));
  }
  for (int64_t e = 0; e < E; ++e) {
    g.push_back(prep(wg[static_cast<size_t>(e)], I, H));
    u.push_back(prep(wu[static_cast<size_t>(e)], I, H));
    d.push_back(prep(wd[static_cast<size_t>(e)], H, I));
  }
  const auto x = test::randn(static_cast<size_t>(T * H), 4);
  const int32_t ids[T * top_k] = {0, 3, 3, 5, 1, 0, 3, 2, 5, 4};
  const float wts[T * top_k] = {0.6f, 0.4f, 0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f, 0.2f, 0.8f};
  std::vector<float> out(static_cast<size_t>(T * H));
  be.moe_experts(test::host_act(x.data(), T, H), ids, test::host_act(wts, T, top_k), top_k, static_cast<int>(g.size()), g.data(), u.data(), d.data(),
                 test::host_act(out.data(), T, H));
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> ref(static_cast<size_t>(H), 0.0);
    for (int s = 0; s < top_k; ++s) {
      const size_t e = static_cast<size_t>(ids[t * top_k + s]);
      std::vector<double> act(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) {
        double a = 0, b = 0;
        for (int64_t h = 0; h < H; ++h) {
          a += static_cast<double>(wg[e][static_cast<size_t>(i * H + h)]) * x[static_cast<size_t>(t * H + h)];
          b += static_cast<double>(wu[e][static_cast<size_t>(i * H + h)]) * x[static_cast<size_t>(t * H + h)];
        }
        act[static_cast<size_t>(i)] = a / (1 + std::exp(-a)) * b;
      }
      for (int64_t h = 0; h < H; ++h) {
        double y = 0;
        for (int64_t i = 0; i < I; ++i) y += static_cast<double>(wd[e][static_cast<size_t>(h * I + i)]) * act[static_cast<size_t>(i)];
        ref[static_cast<size_t>(h)] += wts[t * top_k + s] * y;
      }
    }
    EXPECT_LE(test::max_abs_diff(out.data() + t * H, ref.data(), static_cast<size_t>(H)), 1e-5) << "token " << t;
  }
}

}  // namespace
}  // namespace ds
