// The Gated DeltaNet ops of the GPU backend under emulation (conv1d_causal, gdn_decode, gdn_prefill,
// reset_states) against the reference backend, beyond the shared op sweep: one token, odd lengths
// around the 64-token chunk (1, 7, 63, 64, 65, 200), several sequences in one step on scattered
// state slots, resumed sequences (state from an earlier step), dk = dv = 128 with Hk = 2, Hv = 4
// and small odd head dims, f32 / bf16 / f16, warp sizes 32 and 64, each under three schedules that
// must give identical bytes. A final one-token step reads back every slot's state through its
// outputs. A kernel-level test also compares the chunked kernel's final state with the CPU
// recurrence for every V-tile width.
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
#include "deltaserve/kernels/cpu.h"
#include "kernels/emu/emu.h"
#include "kernels/gpu/ops_gdn.h"
#include "src/backend/gpu/gpu_backend.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;

struct Case {
  std::string name;
  std::vector<int64_t> start, n;  // per sequence: tokens of an earlier step, tokens of this step
  int Hk, Hv, dk, dv;
  bool decode_op;  // this step through gdn_decode (else gdn_prefill)
};

constexpr int kConvK = 4;

float round_to(DType dt, float x) {
  if (dt == DType::kBF16) return bf16_to_f32(f32_to_bf16(x));
  if (dt == DType::kF16) return f16_to_f32(f32_to_f16(x));
  return x;
}

// Device buffers of one backend, uploaded from fp32 host values (activations in its dtype).
struct Uploader {
  Backend& be;
  std::vector<std::unique_ptr<backend::DeviceBuffer>> keep;
  void* put(const std::vector<float>& h, DType dt) {
    auto buf = be.alloc(std::max<size_t>(h.size(), 1) * dtype_size(dt), "test").value();
    std::vector<uint16_t> b16(h.size());
    for (size_t i = 0; i < h.size(); ++i) b16[i] = dt == DType::kBF16 ? f32_to_bf16(h[i]) : f32_to_f16(h[i]);
    be.upload(buf->data(), dt == DType::kF32 ? static_cast<const void*>(h.data()) : b16.data(), h.size() * dtype_size(dt));
    keep.push_back(std::move(buf));
    return keep.back()->data();
  }
  std::vector<float> get(const void* p, size_t n, DType dt) {
    std::vector<float> f(n);
    std::vector<uint16_t> b16(n);
    be.download(dt == DType::kF32 ? static_cast<void*>(f.data()) : b16.data(), p, n * dtype_size(dt));
    be.synchronize();
    if (dt != DType::kF32)
      for (size_t i = 0; i < n; ++i) f[i] = dt == DType::kBF16 ? bf16_to_f32(b16[i]) : f16_to_f32(b16[i]);
    return f;
  }
};

// One step: per sequence `len[s]` tokens, slots `slot[s]`, resetting `reset`.
backend::StepMeta make_meta(const std::vector<int64_t>& len, const std::vector<int64_t>& start,
                            const std::vector<int32_t>& slot, const std::vector<int32_t>& reset) {
  backend::StepMeta m;
  m.cu_seqlens = {0};
  m.blocks_per_seq = 1;
  for (size_t s = 0; s < len.size(); ++s) {
    for (int64_t t = 0; t < len[s]; ++t) {
      m.token_ids.push_back(1);
      for (int r = 0; r < 3; ++r) m.positions.push_back(start[s] + t);
    }
    m.cu_seqlens.push_back(m.cu_seqlens.back() + static_cast<int32_t>(len[s]));
    m.start_pos.push_back(start[s]);
    m.state_slots.push_back(slot[s]);
    m.block_tables.push_back(-1);
  }
  m.reset_slots = reset;
  return m;
}

// Runs the steps of `c` on `be` and returns the compared outputs (conv y and GDN o of each step).
std::vector<float> run(Backend& be, const Case& c) {
  const DType dt = be.activation_dtype();
  const int S = static_cast<int>(c.n.size());
  const int64_t qk = int64_t{c.Hk} * c.dk, vw = int64_t{c.Hv} * c.dv, C = 2 * qk + vw;
  backend::CacheSpec cs;
  cs.num_gdn_layers = 2;
  cs.num_state_slots = S + 3;
  cs.v_heads = c.Hv;
  cs.k_dim = c.dk;
  cs.v_dim = c.dv;
  cs.conv_kernel = kConvK;
  cs.conv_dim = C;
  EXPECT_TRUE(be.allocate_cache(cs).is_ok());
  EXPECT_TRUE(be.reserve_step({512, 16, 1, 16}).is_ok());
  // Sequence s lives in slot S + 2 - s: not its index, slots 0..2 unused.
  std::vector<int32_t> slot(static_cast<size_t>(S));
  for (int s = 0; s < S; ++s) slot[static_cast<size_t>(s)] = S + 2 - s;

  Uploader up{be, {}};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(C * kConvK)), bias(static_cast<size_t>(C));
  for (auto& x : w) x = 0.5f * nd(rng);
  for (auto& x : bias) x = 0.1f * nd(rng);
  auto* dw = static_cast<const float*>(up.put(w, DType::kF32));
  auto* dbias = static_cast<const float*>(up.put(bias, DType::kF32));

  std::vector<float> outs;
  // 0: three tokens into every slot without a reset (dirties them; not compared); 1: the earlier
  // tokens of resumed sequences (their slots reset); 2: the case's step (fresh sequences' slots
  // reset); 3: one token per sequence, through gdn_decode.
  const std::vector<int64_t> zeros(static_cast<size_t>(S), 0), ones(static_cast<size_t>(S), 1);
  for (int step = 0; step < 4; ++step) {
    std::vector<int64_t> len, start;
    std::vector<int32_t> slots, reset;
    for (int s = 0; s < S; ++s) {
      const size_t i = static_cast<size_t>(s);
      const int64_t l = step == 0 ? 3 : step == 1 ? c.start[i] : step == 2 ? c.n[i] : 1;
      const int64_t p0 = step <= 1 ? 0 : step == 2 ? c.start[i] : c.start[i] + c.n[i];
      if (l == 0) continue;
      len.push_back(l);
      start.push_back(p0);
      slots.push_back(slot[i]);
      if (step != 0 && p0 == 0) reset.push_back(slot[i]);
    }
    if (len.empty()) continue;
    const backend::StepMeta m = make_meta(len, start, slots, reset);
    const int64_t T = m.num_tokens();
    EXPECT_TRUE(be.plan(m).is_ok());
    be.reset_states();
    // conv1d over x [T][C] (padded rows), layer 1.
    const int64_t xld = C + 5;
    std::vector<float> x(static_cast<size_t>(T * xld));
    for (auto& v : x) v = round_to(dt, nd(rng));
    void* dx = up.put(x, dt);
    void* dy = up.put(std::vector<float>(static_cast<size_t>(T * xld), 0.0f), dt);
    be.conv1d_causal(1, {dx, dt, T, C, xld}, dw, step == 2 ? nullptr : dbias, kConvK, {dy, dt, T, C, xld});
    // GDN inputs: q, k l2-normalised per key head (q scaled), as the model feeds them; q|k|v as
    // column views of one row as the model's conv output.
    std::vector<float> in(static_cast<size_t>(T * C)), g(static_cast<size_t>(T * c.Hv)), beta(g.size());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < C; ++j) in[static_cast<size_t>(t * C + j)] = nd(rng);
      for (int64_t h = 0; h < 2 * c.Hk; ++h) {
        float* r = &in[static_cast<size_t>(t * C + h * c.dk)];
        double ss = 0.0;
        for (int a = 0; a < c.dk; ++a) ss += double{r[a]} * r[a];
        const float sc = static_cast<float>(1.0 / std::sqrt(ss + 1e-6)) *
                         (h < c.Hk ? 1.0f / std::sqrt(static_cast<float>(c.dk)) : 1.0f);
        for (int a = 0; a < c.dk; ++a) r[a] *= sc;
      }
      for (int64_t j = 0; j < C; ++j) in[static_cast<size_t>(t * C + j)] = round_to(dt, in[static_cast<size_t>(t * C + j)]);
    }
    for (auto& v : g) v = -0.02f - 0.6f * ud(rng);
    for (auto& v : beta) v = 0.05f + 0.9f * ud(rng);
    void* din = up.put(in, dt);
    void* dg = up.put(g, DType::kF32);
    void* dbeta = up.put(beta, DType::kF32);
    void* dout = up.put(std::vector<float>(static_cast<size_t>(T * vw), 0.0f), dt);
    const Act a_in{din, dt, T, C, C};
    const Act q = a_in.cols_view(0, qk), k = a_in.cols_view(qk, qk), v = a_in.cols_view(2 * qk, vw);
    const Act ag{dg, DType::kF32, T, c.Hv, c.Hv}, ab{dbeta, DType::kF32, T, c.Hv, c.Hv};
    const Act o{dout, dt, T, vw, vw};
    if (step == 3 || (step == 2 && c.decode_op))
      be.gdn_decode(1, q, k, v, ag, ab, c.Hk, c.Hv, c.dk, c.dv, o);
    else
      be.gdn_prefill(1, q, k, v, ag, ab, c.Hk, c.Hv, c.dk, c.dv, o);
    if (step == 0) continue;
    const std::vector<float> y = up.get(dy, static_cast<size_t>(T * xld), dt);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < C; ++j) outs.push_back(y[static_cast<size_t>(t * xld + j)]);
    const std::vector<float> oo = up.get(dout, static_cast<size_t>(T * vw), dt);
    outs.insert(outs.end(), oo.begin(), oo.end());
  }
  return outs;
}

void check_case(const Case& c, DType dt, double atol, double rtol) {
  auto ref = backend::make_reference_backend();
  const std::vector<float> want = run(*ref, c);
  for (int warp : {32, 64}) {
    std::vector<float> first;
    for (auto sched : {emu::Schedule::kInOrder, emu::Schedule::kReverse, emu::Schedule::kRandom}) {
      emu::Options opt;
      opt.schedule = sched;
      opt.warp_size = warp;
      opt.seed = 9;
      emu::ScopedOptions scoped(opt);
      backend::gpu::GpuOptions go;
      go.activation_dtype = dt;
      auto gpu = backend::gpu::make_gpu_backend(0, go);
      ASSERT_TRUE(gpu.is_ok()) << gpu.status().message();
      const std::vector<float> got = run(*gpu.value(), c);
      ASSERT_EQ(got.size(), want.size());
      double worst = 0.0;
      size_t bad = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(double{got[i]} - want[i]), tol = atol + rtol * std::fabs(want[i]);
        worst = std::max(worst, err);
        if (!(err <= tol)) ++bad;
      }
      EXPECT_EQ(bad, 0u) << c.name << " " << dtype_name(dt) << " warp " << warp << " " << emu::schedule_name(sched)
                         << ": max error " << worst;
      if (first.empty()) first = got;
      else EXPECT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * sizeof(float)))
               << c.name << " warp " << warp << ": schedule " << emu::schedule_name(sched) << " changed the bytes";
    }
  }
}

// f32: the kernels reassociate the reference's sums (chunked form vs recurrence).
const double kF32Tol = 1e-4;

TEST(GpuEmuGdn, OneToken) {
  check_case({"one token decode", {0}, {1}, 1, 1, 8, 8, true}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"one token prefill", {0}, {1}, 1, 2, 8, 8, false}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuGdn, ChunkBoundaries) {
  check_case({"lengths 1 7 63 64 65 200", {0, 0, 0, 0, 0, 0}, {1, 7, 63, 64, 65, 200}, 1, 2, 16, 8, false},
             DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuGdn, ResumedSequences) {
  // Earlier tokens through the chunked form, then more of them (prefill) or one each (decode).
  check_case({"resumed prefill", {70, 0, 5, 130}, {65, 9, 64, 3}, 2, 4, 12, 10, false}, DType::kF32, kF32Tol,
             kF32Tol);
  check_case({"resumed decode", {70, 0, 5, 1}, {1, 1, 1, 1}, 2, 4, 12, 10, true}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"resumed multi-token decode", {3, 0}, {5, 2}, 1, 3, 9, 5, true}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuGdn, OddHeadDims) {
  check_case({"dk 5 dv 7", {0, 3}, {66, 2}, 1, 3, 5, 7, false}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"dk 33 dv 17", {0, 3}, {1, 65}, 3, 3, 33, 17, false}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"dk 70 decode", {4, 0}, {1, 1}, 1, 2, 70, 3, true}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuGdn, QwenHeadShape) {
  // dk = dv = 128, Hk = 2, Hv = 4 (value heads 0, 1 read key head 0): float4 state rows.
  check_case({"128 prefill", {0, 64, 0}, {130, 65, 1}, 2, 4, 128, 128, false}, DType::kF32, kF32Tol, kF32Tol);
  check_case({"128 decode", {0, 64, 130}, {1, 1, 1}, 2, 4, 128, 128, true}, DType::kF32, kF32Tol, kF32Tol);
}

TEST(GpuEmuGdn, HalfPrecisionActivations) {
  // Outputs rounded to the activation dtype once (the state stays fp32): about one ulp.
  const Case prefill{"16-bit prefill", {0, 66}, {70, 3}, 2, 4, 32, 32, false};
  const Case decode{"16-bit decode", {0, 66}, {1, 1}, 2, 4, 32, 32, true};
  for (const Case& c : {prefill, decode}) {
    check_case(c, DType::kBF16, 2e-2, 1e-2);
    check_case(c, DType::kF16, 2e-3, 2e-3);
  }
}

// The chunked kernel alone: outputs and final states of every V-tile width (chosen by the shared
// memory allowed) against the CPU recurrence, state bytes included.
TEST(GpuEmuGdn, ChunkedKernelStateEveryTile) {
  const int Hk = 1, Hv = 2, dk = 20, dv = 36;
  const std::vector<int32_t> cu = {0, 1, 65, 200}, slots = {2, 0, 1};
  const int S = 3, T = cu.back();
  const int64_t slot_floats = int64_t{Hv} * dk * dv + 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(T * Hk * dk)), k(q.size()), v(static_cast<size_t>(T * Hv * dv));
  std::vector<float> g(static_cast<size_t>(T * Hv)), beta(g.size()), state0(static_cast<size_t>(slot_floats * S));
  for (auto* a : {&q, &k}) {
    for (auto& x : *a) x = nd(rng);
    kernels::l2_norm(a->data(), T, dk, dk, 1e-6f, 1.0f);
  }
  for (auto& x : v) x = nd(rng);
  for (size_t i = 0; i < g.size(); ++i) g[i] = -0.05f - 0.3f * std::fabs(nd(rng)), beta[i] = 0.5f + 0.1f * nd(rng);
  for (auto& x : state0) x = 0.1f * nd(rng);
  std::vector<float> want_o(v.size()), want_s = state0;
  for (int s = 0; s < S; ++s)
    for (int h = 0; h < Hv; ++h) {
      const int64_t t0 = cu[static_cast<size_t>(s)], n = cu[static_cast<size_t>(s) + 1] - t0;
      kernels::cpu_kernels(kernels::CpuIsa::kScalar)
          .gdn_recurrent(want_s.data() + slots[static_cast<size_t>(s)] * slot_floats + int64_t{h} * dv * dk, dk, dv, n,
                         q.data() + t0 * dk, k.data() + t0 * dk, dk, v.data() + t0 * Hv * dv + h * dv, Hv * dv,
                         g.data() + t0 * Hv + h, beta.data() + t0 * Hv + h, Hv, want_o.data() + t0 * Hv * dv + h * dv,
                         Hv * dv);
    }
  // V tiles of 32, 16, 8 and 4 rows: the widest that fits is chosen.
  for (int tile : {32, 16, 8, 4}) {
    const size_t smem = gpu::gdn_chunked_smem_bytes(dk, tile);
    ASSERT_LT(smem, gpu::gdn_chunked_smem_bytes(dk, 2 * tile));
    std::vector<float> o(v.size()), st = state0;
    gpu::GdnLayer p;
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.ldq = dk, p.ldk = dk, p.ldv = Hv * dv;
    p.g = g.data(), p.beta = beta.data(), p.ldg = Hv, p.ldbeta = Hv, p.o = o.data(), p.ldo = Hv * dv;
    p.Hk = Hk, p.Hv = Hv, p.dk = dk, p.dv = dv, p.state = st.data(), p.slot_floats = slot_floats;
    ASSERT_TRUE(gpu::gdn_chunked(p, {cu.data(), slots.data(), S, 135}, smem, nullptr)) << tile;
    for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], want_o[i], 1e-4 * (1 + std::fabs(want_o[i]))) << i;
    for (size_t i = 0; i < st.size(); ++i) ASSERT_NEAR(st[i], want_s[i], 1e-4 * (1 + std::fabs(want_s[i]))) << i;
  }
  // Too little shared memory for any tile: nothing launched, the caller runs the recurrence.
  std::vector<float> st = state0;
  gpu::GdnLayer p;
  p.Hk = Hk, p.Hv = Hv, p.dk = dk, p.dv = dv, p.state = st.data();
  EXPECT_FALSE(gpu::gdn_chunked(p, {cu.data(), slots.data(), S, 135}, gpu::gdn_chunked_smem_bytes(dk, 4) - 4, nullptr));
}

}  // namespace
}  // namespace ds
