// Scalar ops shared by every ISA: norms, RoPE, conv, gates, router, chunked GDN.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gdn.h"
#include "kernels/common/rope.h"

namespace ds::kernels {

void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, bool zero_centred,
              float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * (zero_centred ? 1.0f + w[i] : w[i]);
  }
}

void gated_rms_norm(const float* x, const float* z, const float* w, int64_t rows, int64_t dim, float eps,
                    float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* zr = z + r * dim;
    float* o = out + r * dim;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = w[i] * (xr[i] * inv) * siluf(zr[i]);
  }
}

void l2_norm(float* x, int64_t rows, int64_t dim, int64_t stride, float eps, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * stride;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss + eps);
    for (int64_t i = 0; i < dim; ++i) xr[i] = xr[i] * inv * scale;
  }
}

void rope_mrope(float* x, int64_t T, int heads, int head_dim, int64_t stride, int rot_dim, double theta,
                const int32_t* mrope_section, const int64_t* pos) {
  const int half = rot_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    for (int j = 0; j < half; ++j) {
      const float p = static_cast<float>(pos[t * 3 + mrope_row(j, mrope_section)]);
      const float ang = p * rope_inv_freq(j, rot_dim, theta);
      cs[static_cast<size_t>(j)] = std::cos(ang);
      sn[static_cast<size_t>(j)] = std::sin(ang);
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * stride + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[static_cast<size_t>(i)] - b * sn[static_cast<size_t>(i)];
        v[i + half] = b * cs[static_cast<size_t>(i)] + a * sn[static_cast<size_t>(i)];
      }
    }
  }
}

void conv1d_causal_silu(const float* x, int64_t ldx, int64_t T, int64_t C, int K, const float* w,
                        const float* bias, float* state, float* y, int64_t ldy) {
  const int64_t hist = K - 1;
  // Window row r in [0, hist + T): r < hist from the state, else input token r - hist.
  auto in = [&](int64_t r, int64_t c) { return r < hist ? state[r * C + c] : x[(r - hist) * ldx + c]; };
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (int j = 0; j < K; ++j) acc += w[c * K + j] * in(t + j, c);
      y[t * ldy + c] = siluf(acc);
    }
  }
  // New state: the last hist rows of the window.
  std::vector<float> next(static_cast<size_t>(hist * C));
  for (int64_t r = 0; r < hist; ++r)
    for (int64_t c = 0; c < C; ++c) next[static_cast<size_t>(r * C + c)] = in(T + r, c);
  std::memcpy(state, next.data(), next.size() * sizeof(float));
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = siluf(gate[i]) * up[i];
}

void sigmoid_gate(float* x, const float* gate, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= sigmoidf(gate[i]);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void moe_route(const float* logits, int64_t E, int top_k, bool renormalize, int32_t* ids, float* weights) {
  float mx = logits[0];
  for (int64_t e = 1; e < E; ++e) mx = std::max(mx, logits[e]);
  std::vector<float> p(static_cast<size_t>(E));
  float sum = 0.0f;
  for (int64_t e = 0; e < E; ++e) sum += (p[static_cast<size_t>(e)] = std::exp(logits[e] - mx));
  for (auto& v : p) v /= sum;
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
    return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)] ||
           (p[static_cast<size_t>(a)] == p[static_cast<size_t>(b)] && a < b);
  });
  float tsum = 0.0f;
  for (int i = 0; i < top_k; ++i) tsum += p[static_cast<size_t>(order[static_cast<size_t>(i)])];
  for (int i = 0; i < top_k; ++i) {
    ids[i] = order[static_cast<size_t>(i)];
    weights[i] = p[static_cast<size_t>(ids[i])] / (renormalize ? tsum : 1.0f);
  }
}

void gdn_gates(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t T, int Hv, const float* A_log,
               const float* dt_bias, float* g, float* beta) {
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < Hv; ++h) {
      beta[t * Hv + h] = sigmoidf(b[t * ldb + h]);
      g[t * Hv + h] = gdn_log_decay(a[t * lda + h], A_log[h], dt_bias[h]);
    }
}

void split_query_gate(const float* qg, int64_t ldqg, int64_t T, int heads, int hd, float* q, int64_t ldq,
                      float* gate, int64_t ldg) {
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) {
      const float* src = qg + t * ldqg + static_cast<int64_t>(h) * 2 * hd;
      std::memcpy(q + t * ldq + static_cast<int64_t>(h) * hd, src, static_cast<size_t>(hd) * sizeof(float));
      std::memcpy(gate + t * ldg + static_cast<int64_t>(h) * hd, src + hd, static_cast<size_t>(hd) * sizeof(float));
    }
}

void add_sigmoid_gated(float* x, int64_t ldx, const float* y, int64_t ldy, const float* gate_logit, int64_t ld_gate,
                       int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = sigmoidf(gate_logit[r * ld_gate]);
    for (int64_t j = 0; j < cols; ++j) x[r * ldx + j] += s * y[r * ldy + j];
  }
}

}  // namespace ds::kernels
