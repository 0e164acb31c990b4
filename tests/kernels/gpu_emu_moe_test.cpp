// Dense linear, MoE router and MoE experts of the GPU backend under emulation against the
// reference backend (fp64-accumulated linears) and the CPU router, beyond the shared op sweep:
// GEMV (M <= 8) and tiled shapes with odd sizes, bias, strided views, f32/bf16/f16 weights and
// activations; routers with ties, 512 experts and top-k 16; experts with one token, many tokens and
// uneven expert loads. Every case runs at warp 32 and 64 under three schedules that must give
// identical bytes.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/backend/reference_backend.h"
#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/kernels/gpu_emu_check.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;
using test::as_bytes;
using test::Dev;

float round_to(DType dt, float x) {
  if (dt == DType::kBF16) return bf16_to_f32(f32_to_bf16(x));
  if (dt == DType::kF16) return f16_to_f32(f32_to_f16(x));
  return x;
}

std::vector<float> rnd(size_t n, uint32_t seed, DType dt, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(dt, d(rng));
  return v;
}

// Runs `body` on the reference backend and on the emulated GPU backend (activations `act`) at
// warp 32 and 64 under three schedules; compares to the reference within atol + rtol * |want| and
// the schedules' bytes with each other.
void check(const std::string& name, DType act, double atol, double rtol,
           const std::function<std::vector<float>(Backend&)>& body) {
  test::check_emulated(name, act, atol, rtol, 7, [&](Backend& be) {
    EXPECT_TRUE(be.reserve_step({64, 8, 4, 8}).is_ok());
    return body(be);
  });
}

backend::WeightSource dense_source(const std::vector<uint8_t>& w, DType wt, int64_t n, int64_t k,
                                   const std::vector<float>* bias) {
  backend::WeightSource s;
  s.name = "w";
  s.n = n;
  s.k = k;
  s.weight_dtype = wt;
  s.weight = w.data();
  if (bias) {
    s.bias_dtype = DType::kF32;
    s.bias = bias->data();
  }
  return s;
}

void linear_case(int64_t M, int64_t N, int64_t K, DType act, DType wt, bool with_bias, bool y_f32 = false) {
  const std::vector<float> x = rnd(static_cast<size_t>(M * (K + 3)), 1, act);
  const auto w = as_bytes(rnd(static_cast<size_t>(N * K), 2, wt, 0.2f), wt);
  const std::vector<float> bias = rnd(static_cast<size_t>(N), 3, DType::kF32);
  const std::string name = "linear " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " w " +
                           dtype_name(wt) + (with_bias ? " bias" : "") + (y_f32 ? " y f32" : "");
  // fp32 output: accumulation-order error only; 16-bit: one rounding of the output.
  const double tol = act == DType::kF32 || y_f32 ? 1e-5 : act == DType::kBF16 ? 8e-3 : 1e-3;
  check(name, act, tol, tol, [&](Backend& be) {
    const DType dt = be.activation_dtype();
    Dev d{be, {}};
    auto pw = be.prepare_weight(dense_source(w, wt, N, K, with_bias ? &bias : nullptr)).value();
    const Act xa = d.put(x, dt, M, K, K + 3);  // a strided view, as the model's column views
    const Act ya = d.put(std::vector<float>(static_cast<size_t>(M * (N + 1)), 0.0f), y_f32 ? DType::kF32 : dt, M, N, N + 1);
    be.linear(*pw, xa, ya);
    return d.get(ya);
  });
}

TEST(GpuEmuLinear, GemvShapes) {
  for (int64_t M : {1, 3, 8}) linear_case(M, 37, 70, DType::kF32, DType::kF32, M == 3);
  linear_case(2, 130, 33, DType::kF32, DType::kBF16, true);
  linear_case(5, 19, 200, DType::kBF16, DType::kBF16, false);
  linear_case(8, 21, 64, DType::kF16, DType::kF16, true);
}

TEST(GpuEmuLinear, TiledShapes) {
  linear_case(9, 67, 45, DType::kF32, DType::kF32, true);
  linear_case(70, 129, 33, DType::kF32, DType::kBF16, false);
  linear_case(33, 64, 96, DType::kBF16, DType::kBF16, true);
  linear_case(40, 50, 31, DType::kF16, DType::kF16, false);
}

TEST(GpuEmuLinear, Fp32OutputOf16BitActivations) {  // the router's logits
  linear_case(3, 40, 64, DType::kBF16, DType::kBF16, false, true);
  linear_case(20, 24, 48, DType::kF16, DType::kF16, false, true);
}

TEST(GpuEmuLinear, SharedInput) {
  const int64_t M = 12, K = 40;
  const std::vector<float> x = rnd(static_cast<size_t>(M * K), 4, DType::kF32);
  const auto w1 = as_bytes(rnd(30 * K, 5, DType::kBF16, 0.2f), DType::kBF16);
  const auto w2 = as_bytes(rnd(17 * K, 6, DType::kBF16, 0.2f), DType::kBF16);
  check("linear_shared_input", DType::kF32, 1e-5, 1e-5, [&](Backend& be) {
    Dev d{be, {}};
    auto p1 = be.prepare_weight(dense_source(w1, DType::kBF16, 30, K, nullptr)).value();
    auto p2 = be.prepare_weight(dense_source(w2, DType::kBF16, 17, K, nullptr)).value();
    const Act xa = d.put(x, DType::kF32, M, K, K);
    const Act y[2] = {d.put(std::vector<float>(M * 30, 0.0f), DType::kF32, M, 30, 30),
                      d.put(std::vector<float>(M * 17, 0.0f), DType::kF32, M, 17, 17)};
    const backend::PreparedWeight* w[2] = {p1.get(), p2.get()};
    be.linear_shared_input(xa, w, y, 2);
    std::vector<float> out = d.get(y[0]), b = d.get(y[1]);
    out.insert(out.end(), b.begin(), b.end());
    return out;
  });
}

// Router: ids must equal the CPU's exactly (ties included), weights within fp32 rounding.
void route_case(int64_t T, int E, int top_k, bool renorm, bool ties) {
  std::vector<float> logits = rnd(static_cast<size_t>(T * E), 9, DType::kF32, 2.0f);
  if (ties)  // many equal logits: the lower id must win, as partial_sort's comparator says
    for (auto& v : logits) v = std::round(v);
  const std::string name = "route T=" + std::to_string(T) + " E=" + std::to_string(E) + " k=" + std::to_string(top_k);
  check(name, DType::kF32, 1e-6, 1e-6, [&](Backend& be) {
    Dev d{be, {}};
    const Act la = d.put(logits, DType::kF32, T, E, E);
    const Act wa = d.put(std::vector<float>(static_cast<size_t>(T * (top_k + 1)), 0.0f), DType::kF32, T, top_k, top_k + 1);
    auto ids_buf = be.alloc(static_cast<size_t>(T * top_k) * 4, "ids").value();
    be.moe_route(la, top_k, renorm, static_cast<int32_t*>(ids_buf->data()), wa);
    std::vector<int32_t> ids(static_cast<size_t>(T * top_k));
    be.download(ids.data(), ids_buf->data(), ids.size() * 4);
    std::vector<float> out = d.get(wa);
    for (int32_t i : ids) out.push_back(static_cast<float>(i));  // exact: the tolerance is below 1
    return out;
  });
}

TEST(GpuEmuMoe, Route) {
  route_case(1, 8, 2, true, false);
  route_case(7, 64, 8, true, true);
  route_case(5, 512, 16, false, true);
  route_case(3, 130, 4, false, false);
}

void experts_case(int64_t T, int E, int top_k, int64_t H, int64_t I, DType act, DType wt, bool skewed) {
  const std::vector<float> x = rnd(static_cast<size_t>(T * H), 11, act);
  std::vector<float> logits = rnd(static_cast<size_t>(T * E), 12, DType::kF32, 2.0f);
  if (skewed)  // most tokens pick experts 0..top_k-1: one expert spans several row tiles
    for (int64_t t = 0; t < T; ++t)
      for (int e = 0; e < top_k; ++e) logits[static_cast<size_t>(t * E + e)] += 10.0f + static_cast<float>(e);
  std::vector<std::vector<uint8_t>> wg, wu, wd;
  for (int e = 0; e < E; ++e) {
    wg.push_back(as_bytes(rnd(static_cast<size_t>(I * H), 100 + e, wt, 0.3f), wt));
    wu.push_back(as_bytes(rnd(static_cast<size_t>(I * H), 200 + e, wt, 0.3f), wt));
    wd.push_back(as_bytes(rnd(static_cast<size_t>(H * I), 300 + e, wt, 0.3f), wt));
  }
  const std::string name = "experts T=" + std::to_string(T) + " E=" + std::to_string(E) + " k=" + std::to_string(top_k);
  const double tol = act == DType::kF32 ? 2e-5 : act == DType::kBF16 ? 1e-2 : 2e-3;
  check(name, act, tol, tol, [&](Backend& be) {
    Dev d{be, {}};
    std::vector<std::unique_ptr<backend::PreparedWeight>> owned;
    std::vector<const backend::PreparedWeight*> g, u, dn;
    for (int e = 0; e < E; ++e) {
      owned.push_back(be.prepare_weight(dense_source(wg[static_cast<size_t>(e)], wt, I, H, nullptr)).value());
      g.push_back(owned.back().get());
      owned.push_back(be.prepare_weight(dense_source(wu[static_cast<size_t>(e)], wt, I, H, nullptr)).value());
      u.push_back(owned.back().get());
      owned.push_back(be.prepare_weight(dense_source(wd[static_cast<size_t>(e)], wt, H, I, nullptr)).value());
      dn.push_back(owned.back().get());
    }
    return run_moe_layer(d, x, logits, T, H, E, top_k, g, u, dn);
  });
}

TEST(GpuEmuMoe, ExpertsOneToken) { experts_case(1, 8, 2, 24, 20, DType::kF32, DType::kF32, false); }

TEST(GpuEmuMoe, ExpertsManyTokens) {
  experts_case(37, 16, 4, 33, 18, DType::kF32, DType::kBF16, false);
  experts_case(45, 6, 2, 16, 40, DType::kF32, DType::kF32, true);  // 45 rows on experts 0, 1: two tiles each
}

TEST(GpuEmuMoe, ExpertsHalfActivations) {
  experts_case(9, 8, 3, 32, 24, DType::kBF16, DType::kBF16, false);
  experts_case(6, 8, 2, 20, 12, DType::kF16, DType::kF16, false);
}

}  // namespace
}  // namespace ds
