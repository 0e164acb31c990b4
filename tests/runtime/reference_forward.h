// An independent double-precision forward pass of the Qwen3.5 text decoder over a synthetic model,
// written straight from qwen35-arch.md §3 with plain loops (no backend code): the oracle the CPU
// graph is checked against before the Hugging Face fixtures.
#pragma once

#include <cmath>
#include <vector>

#include "tests/runtime/synthetic_model.h"

namespace ds::test {

using Vec = std::vector<double>;

inline Vec ref_matvec(const Vec& W, int64_t n, int64_t k, const double* x) {
  Vec y(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) y[static_cast<size_t>(i)] += W[static_cast<size_t>(i * k + j)] * x[j];
  return y;
}

inline void ref_rms(double* x, int64_t n, const Vec& w, bool zc, double eps = 1e-6) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ss / n + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * (zc ? 1.0 + w[static_cast<size_t>(i)] : w[static_cast<size_t>(i)]);
}

inline double ref_silu(double x) { return x / (1 + std::exp(-x)); }

// Logits [n][vocab] for token ids from position 0.
inline std::vector<Vec> reference_forward(SyntheticModel& m, const std::vector<int32_t>& ids) {
  const auto& c = m.desc.config;
  const int64_t H = c.hidden_size, n = static_cast<int64_t>(ids.size());
  std::vector<Vec> h(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t)
    h[static_cast<size_t>(t)] = Vec(m.V["embed"].begin() + ids[static_cast<size_t>(t)] * H,
                                    m.V["embed"].begin() + (ids[static_cast<size_t>(t)] + 1) * H);
  const int nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim, R = c.rotary_dim();
  const int Hk = c.linear_num_key_heads, Hv = c.linear_num_value_heads, dk = c.linear_key_head_dim,
            dv = c.linear_value_head_dim;
  const int64_t C = c.conv_dim();
  for (int li = 0; li < c.num_layers; ++li) {
    const std::string p = "l" + std::to_string(li) + ".";
    std::vector<Vec> x = h, out(static_cast<size_t>(n), Vec(static_cast<size_t>(H), 0.0));
    for (auto& r : x) ref_rms(r.data(), H, m.V[p + "in_norm"], true);
    if (c.layer_types[static_cast<size_t>(li)] == model::LayerKind::kFullAttention) {
      std::vector<Vec> q(static_cast<size_t>(n)), gate(static_cast<size_t>(n)), k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) {
        const Vec qg = ref_matvec(m.W[p + "q"], 2LL * nh * hd, H, x[static_cast<size_t>(t)].data());
        for (int hh = 0; hh < nh; ++hh)
          for (int i = 0; i < hd; ++i) {
            q[static_cast<size_t>(t)].push_back(qg[static_cast<size_t>(hh * 2 * hd + i)]);
            gate[static_cast<size_t>(t)].push_back(qg[static_cast<size_t>(hh * 2 * hd + hd + i)]);
          }
        k[static_cast<size_t>(t)] = ref_matvec(m.W[p + "k"], nkv * hd, H, x[static_cast<size_t>(t)].data());
        v[static_cast<size_t>(t)] = ref_matvec(m.W[p + "v"], nkv * hd, H, x[static_cast<size_t>(t)].data());
        auto rope = [&](double* head) {
          for (int j = 0; j < R / 2; ++j) {
            // Text positions: all three M-RoPE rows equal t, so the row choice does not matter.
            const double ang = static_cast<double>(t) * std::pow(c.rope.theta, -2.0 * j / R);
            const double a = head[j], b = head[j + R / 2];
            head[j] = a * std::cos(ang) - b * std::sin(ang);
            head[j + R / 2] = b * std::cos(ang) + a * std::sin(ang);
          }
        };
        for (int hh = 0; hh < nh; ++hh) {
          ref_rms(q[static_cast<size_t>(t)].data() + hh * hd, hd, m.V[p + "q_norm"], true);
          rope(q[static_cast<size_t>(t)].data() + hh * hd);
        }
        for (int hh = 0; hh < nkv; ++hh) {
          ref_rms(k[static_cast<size_t>(t)].data() + hh * hd, hd, m.V[p + "k_norm"], true);
          rope(k[static_cast<size_t>(t)].data() + hh * hd);
        }
      }
      for (int64_t t = 0; t < n; ++t) {
        Vec o(static_cast<size_t>(nh * hd), 0.0);
        for (int hh = 0; hh < nh; ++hh) {
          const int kh = hh / (nh / nkv);
          Vec s(static_cast<size_t>(t + 1));
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j <= t; ++j) {
            double d = 0;
            for (int i = 0; i < hd; ++i) d += q[static_cast<size_t>(t)][static_cast<size_t>(hh * hd + i)] * k[static_cast<size_t>(j)][static_cast<size_t>(kh * hd + i)];
            s[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[static_cast<size_t>(j)]);
          }
          for (auto& e : s) sum += (e = std::exp(e - mx));
          for (int64_t j = 0; j <= t; ++j)
            for (int i = 0; i < hd; ++i)
              o[static_cast<size_t>(hh * hd + i)] += s[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j)][static_cast<size_t>(kh * hd + i)];
        }
        for (size_t i = 0; i < o.size(); ++i) o[i] /= 1 + std::exp(-gate[static_cast<size_t>(t)][i]);
        out[static_cast<size_t>(t)] = ref_matvec(m.W[p + "o"], H, nh * hd, o.data());
      }
    } else {
      std::vector<Vec> qkv(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) qkv[static_cast<size_t>(t)] = ref_matvec(m.W[p + "qkv"], C, H, x[static_cast<size_t>(t)].data());
      // S[h][i][j], K x V per value head.
      std::vector<Vec> S(static_cast<size_t>(Hv), Vec(static_cast<size_t>(dk * dv), 0.0));
      const Vec& cw = m.V[p + "conv"];
      for (int64_t t = 0; t < n; ++t) {
        Vec y(static_cast<size_t>(C));
        for (int64_t ch = 0; ch < C; ++ch) {
          double acc = 0;
          for (int j = 0; j < 4; ++j) {
            const int64_t src = t - 3 + j;
            if (src >= 0) acc += cw[static_cast<size_t>(ch * 4 + j)] * qkv[static_cast<size_t>(src)][static_cast<size_t>(ch)];
          }
          y[static_cast<size_t>(ch)] = ref_silu(acc);
        }
        const Vec z = ref_matvec(m.W[p + "z"], Hv * dv, H, x[static_cast<size_t>(t)].data());
        const Vec a = ref_matvec(m.W[p + "a"], Hv, H, x[static_cast<size_t>(t)].data());
        const Vec b = ref_matvec(m.W[p + "b"], Hv, H, x[static_cast<size_t>(t)].data());
        auto l2 = [](double* v, int d, double scale) {
          double ss = 0;
          for (int i = 0; i < d; ++i) ss += v[i] * v[i];
          for (int i = 0; i < d; ++i) v[i] = v[i] / std::sqrt(ss + 1e-6) * scale;
        };
        for (int kh = 0; kh < Hk; ++kh) {
          l2(y.data() + kh * dk, dk, 1.0 / std::sqrt(static_cast<double>(dk)));
          l2(y.data() + Hk * dk + kh * dk, dk, 1.0);
        }
        Vec o(static_cast<size_t>(Hv * dv));
        for (int vh = 0; vh < Hv; ++vh) {
          const int kh = vh / (Hv / Hk);
          const double* qv = y.data() + kh * dk;
          const double* kv = y.data() + Hk * dk + kh * dk;
          const double* vv = y.data() + 2 * Hk * dk + vh * dv;
          const double beta = 1 / (1 + std::exp(-b[static_cast<size_t>(vh)]));
          const double sp = a[static_cast<size_t>(vh)] + m.V[p + "dt_bias"][static_cast<size_t>(vh)];
          const double g = -std::exp(m.V[p + "A_log"][static_cast<size_t>(vh)]) * (sp > 20 ? sp : std::log1p(std::exp(sp)));
          Vec& s = S[static_cast<size_t>(vh)];
          for (auto& e : s) e *= std::exp(g);
          for (int j = 0; j < dv; ++j) {
            double sk = 0;
            for (int i = 0; i < dk; ++i) sk += s[static_cast<size_t>(i * dv + j)] * kv[i];
            const double u = beta * (vv[j] - sk);
            for (int i = 0; i < dk; ++i) s[static_cast<size_t>(i * dv + j)] += kv[i] * u;
          }
          double ss = 0;
          for (int j = 0; j < dv; ++j) {
            double acc = 0;
            for (int i = 0; i < dk; ++i) acc += s[static_cast<size_t>(i * dv + j)] * qv[i];
            o[static_cast<size_t>(vh * dv + j)] = acc;
            ss += acc * acc;
          }
          const double inv = 1.0 / std::sqrt(ss / dv + 1e-6);
          for (int j = 0; j < dv; ++j)
            o[static_cast<size_t>(vh * dv + j)] = m.V[p + "gnorm"][static_cast<size_t>(j)] * o[static_cast<size_t>(vh * dv + j)] * inv *
                                                  ref_silu(z[static_cast<size_t>(vh * dv + j)]);
        }
        out[static_cast<size_t>(t)] = ref_matvec(m.W[p + "out"], H, Hv * dv, o.data());
      }
    }
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < H; ++i) h[static_cast<size_t>(t)][static_cast<size_t>(i)] += out[static_cast<size_t>(t)][static_cast<size_t>(i)];
    x = h;
    for (auto& r : x) ref_rms(r.data(), H, m.V[p + "post_norm"], true);
    auto mlp = [&](const std::string& g, const std::string& u, const std::string& d, int64_t I, const double* xt) {
      const Vec a = ref_matvec(m.W[g], I, H, xt), b = ref_matvec(m.W[u], I, H, xt);
      Vec act(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) act[static_cast<size_t>(i)] = ref_silu(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)];
      return ref_matvec(m.W[d], H, I, act.data());
    };
    for (int64_t t = 0; t < n; ++t) {
      const double* xt = x[static_cast<size_t>(t)].data();
      Vec y(static_cast<size_t>(H), 0.0);
      if (!c.is_moe) {
        y = mlp(p + "gate", p + "up", p + "down", c.intermediate_size, xt);
      } else {
        const Vec logits = ref_matvec(m.W[p + "router"], c.num_experts, H, xt);
        Vec pr(logits.size());
        double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
        for (size_t e = 0; e < pr.size(); ++e) sum += (pr[e] = std::exp(logits[e] - mx));
        std::vector<int> order(pr.size());
        for (size_t e = 0; e < order.size(); ++e) order[e] = static_cast<int>(e);
        std::sort(order.begin(), order.end(), [&](int a2, int b2) { return pr[static_cast<size_t>(a2)] > pr[static_cast<size_t>(b2)]; });
        double tsum = 0;
        for (int s = 0; s < c.num_experts_per_tok; ++s) tsum += pr[static_cast<size_t>(order[static_cast<size_t>(s)])];
        for (int s = 0; s < c.num_experts_per_tok; ++s) {
          const int e = order[static_cast<size_t>(s)];
          const std::string q = p + "e" + std::to_string(e) + ".";
          const Vec ye = mlp(q + "gate", q + "up", q + "down", c.moe_intermediate_size, xt);
          for (int64_t i = 0; i < H; ++i) y[static_cast<size_t>(i)] += pr[static_cast<size_t>(e)] / tsum * ye[static_cast<size_t>(i)];
        }
        const Vec sh = mlp(p + "sgate", p + "sup", p + "sdown", c.shared_expert_intermediate_size, xt);
        const double sg = 1 / (1 + std::exp(-ref_matvec(m.W[p + "seg"], 1, H, xt)[0]));
        for (int64_t i = 0; i < H; ++i) y[static_cast<size_t>(i)] += sg * sh[static_cast<size_t>(i)];
      }
      for (int64_t i = 0; i < H; ++i) h[static_cast<size_t>(t)][static_cast<size_t>(i)] += y[static_cast<size_t>(i)];
    }
  }
  std::vector<Vec> logits;
  for (int64_t t = 0; t < n; ++t) {
    Vec x = h[static_cast<size_t>(t)];
    ref_rms(x.data(), H, m.V["final_norm"], true);
    logits.push_back(ref_matvec(m.W["lm_head"], c.vocab_size, H, x.data()));
  }
  return logits;
}

}  // namespace ds::test
