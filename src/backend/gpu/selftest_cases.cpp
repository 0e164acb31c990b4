// The selftest's cases, at full size (a Qwen3.5-35B-A3B layer at decode batch 64 and a 300-token
// prefill) or small (for the emulator). Each names the op, its shape and the cache it needs.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>

#include "src/backend/gpu/selftest_cases.h"

namespace ds::backend::gpu::selftest {

namespace {

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) {
    if (!s.empty()) s += 'x';
    s += std::to_string(x);
  }
  return s;
}

// Decode: `seqs` sequences of one new token after `ctx` cached; prefill: two fresh sequences.
Shape decode_shape(int seqs, int64_t ctx) {
  Shape s;
  for (int i = 0; i < seqs; ++i) {
    s.start.push_back(ctx + (i % 3));
    s.n.push_back(1);
  }
  return s;
}
Shape prefill_shape(int64_t len) { return {{0, 0, len / 3}, {len, len / 2 + 1, len / 3}}; }

// Dense bf16 weights (and optionally an embedding table) prepared on one backend; the host copies
// outlive the prepared ones (the CPU backend reads dense weights in place).
struct Weights {
  std::vector<std::vector<uint16_t>> host;
  std::vector<std::unique_ptr<PreparedWeight>> w;
  std::vector<const PreparedWeight*> ptr;
  EmbeddingTable table;
};

// The gate, up and down weights of `experts` MoE experts prepared as (gate, up, down) triples.
struct ExpertSets {
  std::vector<const PreparedWeight*> g, u, d;
};
ExpertSets expert_sets(const std::vector<const PreparedWeight*>& ptr, int experts) {
  ExpertSets s;
  for (int e = 0; e < experts; ++e) {
    s.g.push_back(ptr[static_cast<size_t>(3 * e)]);
    s.u.push_back(ptr[static_cast<size_t>(3 * e + 1)]);
    s.d.push_back(ptr[static_cast<size_t>(3 * e + 2)]);
  }
  return s;
}
// Gives them to prepare_experts; false if it refuses them.
bool prepare_expert_triples(Backend& be, const std::vector<const PreparedWeight*>& ptr, int experts) {
  if (experts == 0) return true;
  const ExpertSets s = expert_sets(ptr, experts);
  return be.prepare_experts(s.g.data(), s.u.data(), s.d.data(), experts).is_ok();
}

Setup dense_weights(std::vector<std::pair<int64_t, int64_t>> shapes, int64_t table_rows = 0, int64_t table_dim = 0,
                    int experts = 0) {
  return [=](Backend& be) -> std::shared_ptr<void> {
    auto st = std::make_shared<Weights>();
    uint32_t seed = 99;
    auto bf16_of = [&](int64_t n) {
      std::vector<uint16_t> h;
      for (float x : randn(static_cast<size_t>(n), seed++, 0.05f)) h.push_back(f32_to_bf16(x));
      return h;
    };
    for (const auto& [n, k] : shapes) {
      st->host.push_back(bf16_of(n * k));
      WeightSource src;
      src.name = "selftest weight";
      src.n = n;
      src.k = k;
      src.weight_dtype = DType::kBF16;
      src.weight = st->host.back().data();
      auto p = be.prepare_weight(src);
      if (!p.is_ok()) return nullptr;  // the case fails: no outputs
      st->w.push_back(std::move(p).value());
      st->ptr.push_back(st->w.back().get());
    }
    if (table_rows > 0) {
      st->host.push_back(bf16_of(table_rows * table_dim));
      for (auto& x : st->host.back()) x = f32_to_bf16(bf16_to_f32(x) * 20.0f);
      auto t = be.prepare_embedding({DType::kBF16, st->host.back().data(), table_rows, table_dim});
      if (!t.is_ok()) return nullptr;
      st->table = *t;
    }
    if (!prepare_expert_triples(be, st->ptr, experts)) return nullptr;
    return st;
  };
}
Weights& weights(void* st) { return *static_cast<Weights*>(st); }

// GPTQ weights [n][k] with random codes, zeros (v1: zero - 1 wrapped to the field) and scales,
// prepared on one backend: the layouts the quantized GEMM takes (and, with fp32 activations, the
// portable kernel).
struct GptqSpec {
  int bits = 4, group_size = 128;
  bool sym = true, act_order = false;
};
struct Gptq {
  std::vector<std::vector<int32_t>> qweight, qzeros, g_idx;
  std::vector<std::vector<uint16_t>> scales;
  std::vector<std::unique_ptr<PreparedWeight>> w;
  std::vector<const PreparedWeight*> ptr;
};
Gptq& gptq(void* st) { return *static_cast<Gptq*>(st); }
Setup gptq_weights(std::vector<std::pair<int64_t, int64_t>> shapes, GptqSpec spec, int experts = 0) {
  return [=](Backend& be) -> std::shared_ptr<void> {
    auto st = std::make_shared<Gptq>();
    std::mt19937 rng(123);
    const int pf = 32 / spec.bits;
    for (auto [n, k] : shapes) {
      const int64_t gs = spec.group_size > 0 ? spec.group_size : k, groups = (k + gs - 1) / gs;
      auto& qw = st->qweight.emplace_back();
      auto& qz = st->qzeros.emplace_back();
      auto& sc = st->scales.emplace_back();
      auto& gi = st->g_idx.emplace_back();
      for (int64_t i = 0; i < k / pf * n; ++i) qw.push_back(static_cast<int32_t>(rng()));
      for (int64_t i = 0; i < groups * n / pf; ++i) qz.push_back(static_cast<int32_t>(rng()));
      const float unit = spec.bits == 8 ? 1.0f / 16 : 1.0f;  // about the same weights at either width
      for (int64_t i = 0; i < groups * n; ++i)
        sc.push_back(f32_to_f16(unit * (0.002f + 0.004f * static_cast<float>(rng() % 1000) / 1000.0f)));
      if (spec.act_order) {  // as GPTQ writes it: group i holds the i-th gs columns of a permutation
        std::vector<int32_t> perm(static_cast<size_t>(k));
        for (int64_t i = 0; i < k; ++i) perm[static_cast<size_t>(i)] = static_cast<int32_t>(i);
        std::shuffle(perm.begin(), perm.end(), rng);
        gi.resize(static_cast<size_t>(k));
        for (int64_t i = 0; i < k; ++i) gi[static_cast<size_t>(perm[static_cast<size_t>(i)])] = static_cast<int32_t>(i / gs);
      }
      WeightSource src;
      src.name = "selftest gptq";
      src.n = n;
      src.k = k;
      src.bits = spec.bits;
      src.group_size = spec.group_size;
      src.sym = spec.sym;
      src.qweight = qw.data();
      src.qzeros = qz.data();
      src.scales = sc.data();
      src.scale_groups = groups;
      src.g_idx = gi.empty() ? nullptr : gi.data();
      auto p = be.prepare_weight(src);
      if (!p.is_ok()) return nullptr;
      st->w.push_back(std::move(p).value());
      st->ptr.push_back(st->w.back().get());
    }
    if (!prepare_expert_triples(be, st->ptr, experts)) return nullptr;
    return st;
  };
}
double gptq_bytes(int64_t n, int64_t k, GptqSpec spec) {
  const int64_t gs = spec.group_size > 0 ? spec.group_size : k;
  return static_cast<double>(n * k * spec.bits / 8 + (k + gs - 1) / gs * n * 2 * (spec.sym ? 1 : 2));
}

}  // namespace

std::vector<Case> make_cases(const SelftestOptions& o, DType a) {
  const bool sm = o.small;
  const int64_t H = sm ? 96 : 2048, I = sm ? 40 : 512;
  const int nh = sm ? 4 : 16, nkv = sm ? 2 : 2, hd = sm ? 32 : 256, rot = sm ? 16 : 64;
  const int Hk = sm ? 2 : 16, Hv = sm ? 4 : 32, dk = sm ? 16 : 128, dv = sm ? 16 : 128, K = 4;
  const int64_t C = 2 * Hk * dk + Hv * dv;
  const int B = sm ? 5 : 64;  // decode batch
  const int64_t ctx = o.decode_bench ? 32768 : sm ? 37 : 2000;
  const int attn_batch = o.decode_bench ? 8 : B;
  const int64_t P = sm ? 23 : 300;  // prefill length
  const size_t ab = dtype_size(a);
  std::vector<Case> cs;
  const Shape dec = decode_shape(B, sm ? 9 : 100), pre = prefill_shape(P);

  for (const auto& [label, st] : {std::pair<const char*, Shape>{"decode", dec}, {"prefill", pre}}) {
    const int64_t T = st.tokens(false);
    cs.push_back({"rms_norm", dims({T, H}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, H, s), f32(1, H, s + 1, 0.2f), out(act(t, H, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.rms_norm(x[0], x[1].as<float>(), 1e-6f, true, x[2]);
                  }, nullptr});
    cs.push_back({"gated_rms_norm", dims({T * Hv, dv}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t * Hv, dv, s), act(t * Hv, dv, s + 1), f32(1, dv, s + 2), out(act(t * Hv, dv, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.gated_rms_norm(x[0], x[1], x[2].as<float>(), 1e-6f, x[3]);
                  }, nullptr});
    cs.push_back({"l2_norm_heads", dims({T, 2 * Hk, dk}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{out(act(t, 2 * Hk * dk, s))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) { be.l2_norm_heads(x[0], dk, 1e-6f, 0.088f); }, nullptr});
    cs.push_back({"rope_mrope", dims({T, nh, hd}) + " rot " + std::to_string(rot), st, {},
                  [=](int64_t t, uint32_t s) { return std::vector<Tensor>{out(act(t, nh * hd, s))}; },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    const int32_t sec[3] = {sm ? 4 : 11, sm ? 2 : 11, sm ? 2 : 10};
                    be.rope_mrope(x[0], nh, hd, rot, 1e7, sec);
                  }, nullptr});
    cs.push_back({"split_query_gate", dims({T, nh, 2, hd}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, 2 * nh * hd, s), out(act(t, nh * hd, 0)), out(act(t, nh * hd, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) { be.split_query_gate(x[0], nh, hd, x[1], x[2]); }, nullptr});
    cs.push_back({"silu_mul+gates+add", dims({T, I}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{out(act(t, I, s)), out(act(t, I, s + 1)), out(act(t, I, 0)), act(t, 1, s + 3)};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.silu_mul(x[0], x[1], x[2]);
                    be.sigmoid_gate(x[2], x[1]);
                    be.add(x[0], x[2]);
                    be.add_sigmoid_gated(x[1], x[0], x[3]);
                  }, nullptr});
    cs.push_back({"gdn_gates", dims({T, Hv}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{f32(t, Hv, s), f32(t, Hv, s + 1), f32(1, Hv, s + 2, 0.3f), f32(1, Hv, s + 3),
                                               out(f32(t, Hv, 0)), out(f32(t, Hv, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.gdn_gates(x[0], x[1], x[2].as<float>(), x[3].as<float>(), x[4], x[5]);
                  }, nullptr});
    CacheSpec gdn;
    gdn.num_gdn_layers = 1;
    gdn.num_state_slots = static_cast<int>(st.n.size());
    gdn.v_heads = Hv;
    gdn.k_dim = dk;
    gdn.v_dim = dv;
    gdn.conv_kernel = K;
    gdn.conv_dim = C;
    const double state_bytes = 2.0 * static_cast<double>(st.n.size()) * Hv * dv * dk * 4;
    cs.push_back({std::string("conv1d_causal ") + label, dims({T, C}) + " k4", st, gdn, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, C, s), f32(C, K, s + 1, 0.5f), f32(1, C, s + 2), out(act(t, C, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.conv1d_causal(0, x[0], x[1].as<float>(), x[2].as<float>(), K, x[3]);
                  },
                  nullptr, 2.0 * static_cast<double>(st.n.size()) * (K - 1) * C * 4});
    for (bool chunked : {false, true}) {
      if (chunked != (st.tokens(false) > static_cast<int64_t>(st.n.size()))) continue;
      cs.push_back({chunked ? "gdn_prefill" : "gdn_decode", dims({T, Hv, dv, dk}), st, gdn, [=](int64_t t, uint32_t s) {
                      Tensor q = act(t, Hk * dk, s), k = act(t, Hk * dk, s + 1);
                      for (Tensor* x : {&q, &k})
                        for (int64_t r = 0; r < t * Hk; ++r) {
                          double n2 = 0;
                          for (int j = 0; j < dk; ++j) n2 += x->v[static_cast<size_t>(r * dk + j)] * x->v[static_cast<size_t>(r * dk + j)];
                          for (int j = 0; j < dk; ++j) x->v[static_cast<size_t>(r * dk + j)] /= static_cast<float>(std::sqrt(n2) + 1e-6);
                        }
                      Tensor g = f32(t, Hv, s + 2, 0.3f), beta = f32(t, Hv, s + 3);
                      for (auto& v : g.v) v = -std::fabs(v);
                      for (auto& v : beta.v) v = 1.0f / (1.0f + std::exp(-v));
                      return std::vector<Tensor>{q, k, act(t, Hv * dv, s + 4), g, beta, out(act(t, Hv * dv, 0))};
                    },
                    [=](Backend& be, const std::vector<Act>& x, void*) {
                      if (chunked) be.gdn_prefill(0, x[0], x[1], x[2], x[3], x[4], Hk, Hv, dk, dv, x[5]);
                      else be.gdn_decode(0, x[0], x[1], x[2], x[3], x[4], Hk, Hv, dk, dv, x[5]);
                    },
                    nullptr, state_bytes});
    }
    // Attention: decode over a long cached context, or a prefill.
    const Shape ast = label == std::string("decode") ? decode_shape(attn_batch, ctx) : st;
    CacheSpec kv;
    kv.num_attn_layers = 1;
    kv.block_size = ast.block_size;
    kv.num_kv_blocks = ast.blocks();
    kv.kv_heads = nkv;
    kv.head_dim = hd;
    const int64_t AT = ast.tokens(false);
    double ctx_bytes = 0;
    for (size_t i = 0; i < ast.n.size(); ++i) ctx_bytes += 2.0 * static_cast<double>(ast.start[i] + ast.n[i]) * nkv * hd * ab;
    cs.push_back({std::string("attention ") + label, dims({AT, nh, hd}) + " ctx " + std::to_string(ast.start[0] + ast.n[0]), ast, kv,
                  [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, nh * hd, s), act(t, nkv * hd, s + 1), act(t, nkv * hd, s + 2),
                                               out(act(t, nh * hd, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.attention(0, x[0], x[1], x[2], nh, nkv, hd, 1.0f / std::sqrt(static_cast<float>(hd)), x[3]);
                  },
                  nullptr, ctx_bytes});
    // Router and the linears.
    const int E = sm ? 8 : 256, top = sm ? 2 : 8;
    cs.push_back({"moe_route", dims({T, E}) + " top " + std::to_string(top), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{f32(t, E, s, 2.0f), out(Tensor{Kind::kI32, t, top, std::vector<float>(static_cast<size_t>(t * top)), false}),
                                               out(f32(t, top, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) { be.moe_route(x[0], top, true, x[1].as<int32_t>(), x[2]); }, nullptr});
    const int64_t N = sm ? 72 : 4096;
    cs.push_back({"linear bf16", dims({T, H}) + " -> " + std::to_string(N), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, H, s), out(act(t, N, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void* w) { be.linear(*weights(w).ptr[0], x[0], x[1]); },
                  dense_weights({{N, H}}), static_cast<double>(N * H * 2)});
    // Every GPTQ/AutoRound layout the quantized GEMM takes (the portable kernel under fp32).
    const GptqSpec q4{4, 128, true, false}, q4_act{4, 32, false, true}, q4_chan{4, -1, false, false},
        q8{8, 32, false, false}, q8_sym{8, 128, true, false};
    for (auto [spec, label] : {std::pair{q4, "int4 g128 sym"}, {q4_act, "int4 g32 asym act-order"},
                               {q4_chan, "int4 channelwise asym"}, {q8, "int8 g32 asym"}, {q8_sym, "int8 g128 sym"}}) {
      cs.push_back({std::string("linear gptq ") + label, dims({T, H}) + " -> " + std::to_string(N), st, {},
                    [=](int64_t t, uint32_t s) { return std::vector<Tensor>{act(t, H, s), out(act(t, N, 0))}; },
                    [=](Backend& be, const std::vector<Act>& x, void* w) { be.linear(*gptq(w).ptr[0], x[0], x[1]); },
                    gptq_weights({{N, H}}, spec), gptq_bytes(N, H, spec)});
    }
    // fp32 output under 16-bit activations: the router and lm_head.
    cs.push_back({"linear -> fp32", dims({T, H}) + " -> " + std::to_string(E), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, H, s), out(f32(t, E, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void* w) { be.linear(*weights(w).ptr[0], x[0], x[1]); },
                  dense_weights({{E, H}}), static_cast<double>(E * H * 2)});
    cs.push_back({"linear_shared_input", dims({T, H}) + " -> 3 outputs", st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, H, s), out(act(t, N, 0)), out(act(t, I, 0)), out(act(t, 7, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void* w) {
                    const Act ys[3] = {x[1], x[2], x[3]};
                    be.linear_shared_input(x[0], weights(w).ptr.data(), ys, 3);
                  },
                  dense_weights({{N, H}, {I, H}, {7, H}}), static_cast<double>((N + I + 7) * H * 2)});
    const int64_t V = sm ? 300 : 32000;
    cs.push_back({"embed", dims({T, H}) + " of " + std::to_string(V), st, {}, [=](int64_t t, uint32_t) {
                    return std::vector<Tensor>{out(act(t, H, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void* w) { be.embed(weights(w).table, x[0]); },
                  dense_weights({}, V, H)});
    cs.push_back({"gather_logit_rows", dims({T, H}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, H, s), out(act(t, H, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) { be.gather_logit_rows(x[0], 0, x[1]); }, nullptr});
    // The gates as the model feeds them: a and b in the activation type.
    cs.push_back({"gdn_gates (act in)", dims({T, Hv}), st, {}, [=](int64_t t, uint32_t s) {
                    return std::vector<Tensor>{act(t, Hv, s), act(t, Hv, s + 1), f32(1, Hv, s + 2, 0.3f), f32(1, Hv, s + 3),
                                               out(f32(t, Hv, 0)), out(f32(t, Hv, 0))};
                  },
                  [=](Backend& be, const std::vector<Act>& x, void*) {
                    be.gdn_gates(x[0], x[1], x[2].as<float>(), x[3].as<float>(), x[4], x[5]);
                  }, nullptr});
    // Experts, dense and GPTQ (16-bit activations: the grouped quantized GEMM): routed ids from the router.
    const int Ex = sm ? 6 : 16, tk = 2;
    const int64_t Ie = sm ? 24 : 256;
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int e = 0; e < Ex; ++e) shapes.insert(shapes.end(), {{Ie, H}, {Ie, H}, {H, Ie}});
    // ptrs: the setup state's prepared weights, (gate, up, down) per expert.
    const Shape step = st;  // a lambda may not capture a structured binding (clang < 16)
    auto moe_case = [&](const std::string& op, Setup setup, double bytes,
                        const std::vector<const PreparedWeight*>& (*ptrs)(void*)) {
      cs.push_back({op, dims({T, H}) + " " + std::to_string(Ex) + " experts top 2", step, {},
                    [=](int64_t t, uint32_t s) {
                      return std::vector<Tensor>{
                          act(t, H, s), f32(t, Ex, s + 1, 2.0f),
                          Tensor{Kind::kI32, t, tk, std::vector<float>(static_cast<size_t>(t * tk)), false},
                          f32(t, tk, 0), out(act(t, H, 0))};
                    },
                    [=](Backend& be, const std::vector<Act>& x, void* w) {
                      const ExpertSets es = expert_sets(ptrs(w), Ex);
                      be.moe_route(x[1], tk, true, x[2].as<int32_t>(), x[3]);
                      be.moe_experts(x[0], x[2].as<int32_t>(), x[3], tk, Ex, es.g.data(), es.u.data(), es.d.data(),
                                     x[4]);
                    },
                    std::move(setup), bytes});
    };
    moe_case("moe_experts", dense_weights(shapes, 0, 0, Ex), 0,
             [](void* w) -> const std::vector<const PreparedWeight*>& { return weights(w).ptr; });
    if (a != DType::kF32) {
      for (auto [spec, label] : {std::pair{q4, "int4 g128"}, {q8_sym, "int8 g128"}}) {
        double bytes = 0;
        for (auto [n, k] : shapes) bytes += gptq_bytes(n, k, spec);
        moe_case(std::string("moe_experts gptq ") + label, gptq_weights(shapes, spec, Ex), bytes,
                 [](void* w) -> const std::vector<const PreparedWeight*>& { return gptq(w).ptr; });
      }
    }
  }
  return cs;
}

}  // namespace ds::backend::gpu::selftest
