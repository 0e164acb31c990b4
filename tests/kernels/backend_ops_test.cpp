// Every op of the Backend table, on the optimised CPU backend (each ISA this machine has) and on the
// GPU backend under emulation (kernels/emu: warp 32 under the in-order, reverse and random
// schedules, warp 64 under two), against the reference backend (scalar kernels, plain loops), over
// a sweep of shapes: odd sizes, one token, several sequences of different lengths, resumed
// sequences, scattered KV blocks (ggml's test-backend-ops pattern). The emulated runs of one warp
// size must also agree with each other byte for byte: a kernel whose result depends on the
// schedule has a race (a missing barrier).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/backend/reference_backend.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/runtime/test_util.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;

struct Candidate {
  std::shared_ptr<Backend> be;
  std::string label;
  bool emulated = false;
  emu::Options emu;
  bool quantized = true;  // prepares GPTQ weights (the GPU backend does not yet: issue 12)
};

std::vector<Candidate> candidates() {
  std::vector<Candidate> v;
  for (auto isa : {kernels::CpuIsa::kScalar, kernels::CpuIsa::kAvx2, kernels::CpuIsa::kAvx512})
    if (kernels::cpu_isa_supported(isa)) {
      Candidate c;
      c.be = std::make_shared<backend::CpuBackend>(isa);
      c.label = c.be->name();
      v.push_back(c);
    }
  const std::pair<int, emu::Schedule> runs[] = {{32, emu::Schedule::kInOrder}, {32, emu::Schedule::kReverse},
                                                {32, emu::Schedule::kRandom}, {64, emu::Schedule::kInOrder},
                                                {64, emu::Schedule::kRandom}};
  for (const auto& [warp, sched] : runs) {
    auto be = backend::gpu::make_gpu_backend(0, {DType::kF32});
    EXPECT_TRUE(be.is_ok()) << be.status().message();
    if (!be.is_ok()) continue;
    Candidate c;
    c.be = *be;
    c.label = "emulated GPU, warp " + std::to_string(warp) + ", " + emu::schedule_name(sched);
    c.emulated = true;
    c.emu.warp_size = warp;
    c.emu.schedule = sched;
    c.emu.seed = 11;
    c.quantized = false;
    v.push_back(c);
  }
  return v;
}

// A step of several sequences: lengths n[i] new tokens after start[i] cached ones; sequence i owns
// slot i and blocks scattered backwards through the pool. prefix() is the step that computed the
// cached tokens of the resumed sequences, so nothing reads memory no op wrote.
struct Step {
  std::vector<int64_t> start, n;
  int block_size = 4;
  int blocks_per_seq() const {
    int w = 1;
    for (size_t i = 0; i < n.size(); ++i) w = std::max<int>(w, static_cast<int>((start[i] + n[i] + block_size - 1) / block_size));
    return w;
  }
  int num_blocks() const { return blocks_per_seq() * static_cast<int>(n.size()) + 3; }
  bool resumed() const { return std::any_of(start.begin(), start.end(), [](int64_t x) { return x > 0; }); }
  backend::StepMeta meta(bool prefix = false) const {
    backend::StepMeta m;
    m.cu_seqlens = {0};
    const int width = blocks_per_seq();
    m.blocks_per_seq = width;
    for (size_t i = 0; i < n.size(); ++i) {
      if (prefix && start[i] == 0) continue;
      const int64_t s0 = prefix ? 0 : start[i], len = prefix ? start[i] : n[i];
      for (int64_t t = 0; t < len; ++t) {
        m.token_ids.push_back(static_cast<int32_t>((7 * t + i) % 50));
        for (int r = 0; r < 3; ++r) m.positions.push_back(s0 + t + r * (t % 2));
      }
      m.cu_seqlens.push_back(m.cu_seqlens.back() + static_cast<int32_t>(len));
      m.start_pos.push_back(s0);
      m.state_slots.push_back(static_cast<int32_t>(i));
      for (int b = 0; b < width; ++b) m.block_tables.push_back(num_blocks() - 1 - (b * static_cast<int>(n.size()) + static_cast<int>(i)));
      if (s0 == 0) m.reset_slots.push_back(static_cast<int32_t>(i));
    }
    for (int32_t r = 0; r < m.cu_seqlens.back(); r += 2) m.logit_rows.push_back(r);
    return m;
  }
  int64_t tokens(bool prefix = false) const {
    int64_t t = 0;
    for (size_t i = 0; i < n.size(); ++i) t += prefix ? start[i] : n[i];
    return t;
  }
};

std::vector<Step> steps() {
  return {{{0}, {1}}, {{0}, {13}}, {{5}, {1}}, {{0, 9, 3}, {7, 1, 19}}, {{0, 0}, {1, 1}}};
}

struct Buf {
  std::vector<float> v;
  int64_t rows, cols;
  Act act() { return test::host_act(v.data(), rows, cols); }
};
Buf rnd(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.0f) {
  return {test::randn(static_cast<size_t>(rows * cols), seed, scale), rows, cols};
}

using Inputs = std::function<std::vector<Buf>(int64_t tokens)>;
using Op = std::function<void(Backend&, std::vector<Buf>&)>;

// Runs `op` on the reference and on every candidate with the same inputs (after the prefix step of
// resumed sequences), and compares every buffer `op` may write.
void compare(const char* what, const Step& step, const backend::CacheSpec& cs, const Inputs& inputs, const Op& op,
             double tol, bool quantized = false) {
  auto run = [&](Backend& be) {
    EXPECT_TRUE(be.allocate_cache(cs).is_ok());
    EXPECT_TRUE(be.reserve_step({256, 8, 64, 64}).is_ok());
    if (step.resumed()) {
      std::vector<Buf> pre = inputs(step.tokens(true));
      EXPECT_TRUE(be.plan(step.meta(true)).is_ok());
      be.reset_states();
      op(be, pre);
    }
    std::vector<Buf> io = inputs(step.tokens());
    EXPECT_TRUE(be.plan(step.meta()).is_ok());
    be.reset_states();
    op(be, io);
    be.synchronize();
    return io;
  };
  auto ref_be = backend::make_reference_backend();
  const auto want = run(*ref_be);
  std::map<int, std::vector<Buf>> first_of_warp;  // emulated outputs, per warp size
  for (auto& c : candidates()) {
    if (quantized && !c.quantized) continue;
    std::vector<Buf> got;
    if (c.emulated) {
      emu::ScopedOptions so(c.emu);
      got = run(*c.be);
    } else {
      got = run(*c.be);
    }
    for (size_t b = 0; b < want.size(); ++b)
      EXPECT_LE(test::max_abs_diff(got[b].v.data(), want[b].v.data(), want[b].v.size()), tol)
          << what << " on " << c.label << " buffer " << b << " tokens " << step.tokens();
    if (!c.emulated) continue;
    auto [it, fresh] = first_of_warp.emplace(c.emu.warp_size, got);
    if (fresh) continue;
    for (size_t b = 0; b < got.size(); ++b)
      EXPECT_EQ(0, std::memcmp(got[b].v.data(), it->second[b].v.data(), got[b].v.size() * sizeof(float)))
          << what << ": " << c.label << " differs from another schedule in buffer " << b << " (a race)";
  }
}

TEST(BackendOps, NormsRopeSplitAndElementwise) {
  for (const Step& st : steps()) {
    backend::CacheSpec none;
    compare("rms_norm", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 37, 1), rnd(1, 37, 2), rnd(T, 37, 3)}; },
            [](Backend& be, std::vector<Buf>& b) { be.rms_norm(b[0].act(), b[1].v.data(), 1e-6f, true, b[2].act()); }, 1e-5);
    compare("gated_rms_norm", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 24, 1), rnd(T, 24, 2), rnd(1, 24, 3), rnd(T, 24, 4)}; },
            [](Backend& be, std::vector<Buf>& b) { be.gated_rms_norm(b[0].act(), b[1].act(), b[2].v.data(), 1e-6f, b[3].act()); }, 1e-5);
    compare("l2_norm_heads", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 3 * 16, 1)}; },
            [](Backend& be, std::vector<Buf>& b) { be.l2_norm_heads(b[0].act().cols_view(16, 32), 16, 1e-6f, 0.25f); }, 1e-6);
    const int32_t section[3] = {4, 2, 2};
    compare("rope_mrope", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 3 * 32, 1)}; },
            [&](Backend& be, std::vector<Buf>& b) { be.rope_mrope(b[0].act(), 3, 32, 16, 1e7, section); }, 1e-5);
    compare("split_query_gate", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 2 * 2 * 8, 1), rnd(T, 16, 0), rnd(T, 16, 0)}; },
            [](Backend& be, std::vector<Buf>& b) { be.split_query_gate(b[0].act(), 2, 8, b[1].act(), b[2].act()); }, 0);
    compare("silu_mul/sigmoid_gate/add/add_sigmoid_gated", st, none,
            [&](int64_t T) { return std::vector<Buf>{rnd(T, 19, 1), rnd(T, 19, 2), rnd(T, 19, 3), rnd(T, 1, 4)}; }, [](Backend& be, std::vector<Buf>& b) {
              be.silu_mul(b[0].act(), b[1].act(), b[2].act());
              be.sigmoid_gate(b[2].act(), b[1].act());
              be.add(b[0].act(), b[2].act());
              be.add_sigmoid_gated(b[1].act(), b[0].act(), b[3].act());
            }, 1e-5);
    compare("gather_logit_rows", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 11, 1), rnd((T + 1) / 2, 11, 0)}; },
            [](Backend& be, std::vector<Buf>& b) { be.gather_logit_rows(b[0].act(), 0, b[1].act()); }, 0);
  }
}

TEST(BackendOps, AttentionOverPagedCache) {
  for (const Step& st : steps()) {
    for (int hd : {8, 32}) {
      backend::CacheSpec cs;
      cs.num_attn_layers = 2;
      cs.num_kv_blocks = st.num_blocks();
      cs.block_size = st.block_size;
      cs.kv_heads = 2;
      cs.head_dim = hd;
      compare("attention", st, cs, [&](int64_t T) { return std::vector<Buf>{rnd(T, 6 * hd, 1), rnd(T, 2 * hd, 2), rnd(T, 2 * hd, 3), rnd(T, 6 * hd, 0)}; },
              [&](Backend& be, std::vector<Buf>& b) {
                be.attention(1, b[0].act(), b[1].act(), b[2].act(), 6, 2, hd, 0.3f, b[3].act());
              }, 2e-6);
    }
  }
}

TEST(BackendOps, GatedDeltaNetConvGatesAndRecurrence) {
  for (const Step& st : steps()) {
    const int Hk = 2, Hv = 4, dk = 16, dv = 8, K = 4;
    const int64_t C = 2 * Hk * dk + Hv * dv;
    backend::CacheSpec cs;
    cs.num_gdn_layers = 2;
    cs.num_state_slots = 4;
    cs.v_heads = Hv;
    cs.k_dim = dk;
    cs.v_dim = dv;
    cs.conv_kernel = K;
    cs.conv_dim = C;
    compare("conv1d_causal", st, cs, [&](int64_t T) { return std::vector<Buf>{rnd(T, C, 1), rnd(C, K, 2, 0.5f), rnd(1, C, 3), rnd(T, C, 0)}; },
            [&](Backend& be, std::vector<Buf>& b) {
              be.conv1d_causal(1, b[0].act(), b[1].v.data(), b[2].v.data(), K, b[3].act());
            }, 1e-5);
    compare("gdn_gates", st, cs, [&](int64_t T) { return std::vector<Buf>{rnd(T, Hv, 1), rnd(T, Hv, 2), rnd(1, Hv, 3, 0.3f), rnd(1, Hv, 4), rnd(T, Hv, 0), rnd(T, Hv, 0)}; },
            [&](Backend& be, std::vector<Buf>& b) {
              be.gdn_gates(b[0].act(), b[1].act(), b[2].v.data(), b[3].v.data(), b[4].act(), b[5].act());
            }, 1e-6);
    for (bool chunked : {false, true}) {
      // q, k l2-normalised (as the model feeds them), g a log decay < 0, beta in (0, 1).
      auto inputs = [&](int64_t T) {
        Buf qkv = rnd(T, C, 5);
        for (int64_t t = 0; t < T; ++t) kernels::l2_norm(qkv.v.data() + t * C, 2 * Hk, dk, dk, 1e-6f, 1.0f);
        Buf g = rnd(T, Hv, 6, 0.3f), beta = rnd(T, Hv, 7);
        for (auto& x : g.v) x = -std::fabs(x);
        for (auto& x : beta.v) x = 1.0f / (1.0f + std::exp(-x));
        return std::vector<Buf>{qkv, g, beta, rnd(T, Hv * dv, 0)};
      };
      compare(chunked ? "gdn_prefill" : "gdn_decode", st, cs, inputs,
              [&](Backend& be, std::vector<Buf>& b) {
                const Act x = b[0].act();
                const Act q = x.cols_view(0, Hk * dk), k = x.cols_view(Hk * dk, Hk * dk), v = x.cols_view(2 * Hk * dk, Hv * dv);
                if (chunked) be.gdn_prefill(1, q, k, v, b[1].act(), b[2].act(), Hk, Hv, dk, dv, b[3].act());
                else be.gdn_decode(1, q, k, v, b[1].act(), b[2].act(), Hk, Hv, dk, dv, b[3].act());
              }, 2e-5);
    }
  }
}

TEST(BackendOps, LinearRouterExpertsAndSampling) {
  const auto gq = test::make_gptq(40, 64, 4, 32, false, false, true, 3);
  backend::WeightSource src;
  src.name = "w";
  src.n = gq.N;
  src.k = gq.K;
  src.bits = 4;
  src.group_size = 32;
  src.sym = false;
  src.qweight = gq.qweight.data();
  src.qzeros = gq.qzeros.data();
  src.scales = gq.scales.data();
  src.scale_groups = gq.G;
  src.g_idx = gq.g_idx.data();
  for (const Step& st : steps()) {
    backend::CacheSpec none;
    compare("linear gptq int4 act-order asym", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, 64, 1), rnd(T, 40, 0)}; },
            [&](Backend& be, std::vector<Buf>& b) {
              auto w = be.prepare_weight(src);
              ASSERT_TRUE(w.is_ok()) << w.status().message();
              be.linear(**w, b[0].act(), b[1].act());
            }, 1e-4, /*quantized=*/true);
    const int E = 6, top_k = 2;
    compare("moe_route + moe_experts", st, none, [&](int64_t T) { return std::vector<Buf>{rnd(T, E, 1), rnd(T, 64, 2), rnd(T, top_k, 0), rnd(T, 64, 0)}; },
            [&](Backend& be, std::vector<Buf>& b) {
              std::vector<std::unique_ptr<backend::PreparedWeight>> keep;
              std::vector<const backend::PreparedWeight*> g, u, d;
              std::vector<std::vector<float>> ws;
              for (int e = 0; e < 3 * E; ++e) ws.push_back(test::randn(40 * 64, 100 + static_cast<uint32_t>(e), 0.2f));
              for (int e = 0; e < 3 * E; ++e) {
                backend::WeightSource s;
                s.name = "expert";
                s.n = e % 3 == 2 ? 64 : 40;
                s.k = e % 3 == 2 ? 40 : 64;
                s.weight_dtype = DType::kF32;
                s.weight = ws[static_cast<size_t>(e)].data();
                keep.push_back(std::move(be.prepare_weight(s).value()));
                (e % 3 == 0 ? g : e % 3 == 1 ? u : d).push_back(keep.back().get());
              }
              EXPECT_TRUE(be.prepare_experts(g.data(), u.data(), d.data(), E).is_ok());
              std::vector<int32_t> ids(static_cast<size_t>(b[0].rows * top_k));
              be.moe_route(b[0].act(), top_k, true, ids.data(), b[2].act());
              be.moe_experts(b[1].act(), ids.data(), b[2].act(), top_k, E, g.data(), u.data(), d.data(), b[3].act());
            }, 1e-4);
  }
  // Sampling and target logprobs: identical ids and logprobs on every backend.
  const int64_t V = 300, R = 5;
  Buf logits = rnd(R, V, 9, 3.0f);
  std::vector<int32_t> hist = {3, 3, 7, 250};
  std::vector<backend::SamplingRow> rows(R);
  for (int64_t r = 0; r < R; ++r) {
    rows[r].temperature = r == 0 ? 0.0 : 0.5 + 0.2 * r;
    rows[r].top_k = r == 2 ? 20 : 0;
    rows[r].top_p = r == 3 ? 0.8 : 1.0;
    rows[r].min_p = r == 4 ? 0.05 : 0.0;
    rows[r].repetition_penalty = 1.3;
    rows[r].output_ids = hist.data();
    rows[r].n_output = static_cast<int64_t>(hist.size());
    rows[r].uniform = 0.1 + 0.17 * static_cast<double>(r);
    rows[r].logprobs = static_cast<int>(r);
  }
  const std::vector<int32_t> targets = {5, -1, 299, 0, 17}, top = {0, 0, 3, 5, 1};
  auto run = [&](Backend& be) {
    std::vector<backend::SampleResult> s(R);
    std::vector<backend::PositionLogprobs> lp(R);
    EXPECT_TRUE(be.reserve_step({256, 8, 64, 64}).is_ok());
    be.sample(logits.act(), rows.data(), s.data());
    be.target_logprobs(logits.act(), targets.data(), top.data(), lp.data());
    std::vector<float> flat;
    for (int64_t r = 0; r < R; ++r) {
      flat.push_back(static_cast<float>(s[r].token));
      if (s[r].logprobs) flat.push_back(s[r].logprobs->chosen.logprob);
      flat.push_back(lp[r].chosen.logprob);
      for (const auto& t : lp[r].top) flat.insert(flat.end(), {static_cast<float>(t.token_id), t.logprob});
    }
    return flat;
  };
  const auto want = run(*backend::make_reference_backend());
  for (auto& c : candidates()) {
    if (c.emulated) {
      emu::ScopedOptions so(c.emu);
      EXPECT_EQ(run(*c.be), want) << c.label;
    } else {
      EXPECT_EQ(run(*c.be), want) << c.label;
    }
  }
}

}  // namespace
}  // namespace ds
