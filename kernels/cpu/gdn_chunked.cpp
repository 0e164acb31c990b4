// Chunked gated delta rule (WY form, T5 torch_chunk_gated_delta_rule) for one value head.
// Formulas: qwen35-arch.md §3.4 step 6. The state is [dv][dk] (K contiguous) like the recurrent kernel.
#include <cmath>

#include "deltaserve/kernels/cpu.h"

namespace ds::kernels {

int64_t gdn_chunked_scratch_floats(int C, int dk, int dv) {
  return static_cast<int64_t>(C) * C + static_cast<int64_t>(C) * dv + static_cast<int64_t>(C) * dk + C;
}

void gdn_chunked(float* S, int dk, int dv, int64_t T, int C, const float* q, const float* k,
                 int64_t qk_stride, const float* v, int64_t v_stride, const float* g, const float* beta,
                 int64_t gb_stride, float* o, int64_t o_stride, float* scratch) {
  float* A = scratch;            // [C][C] strictly lower
  float* U = A + C * C;          // [C][dv]: U, then V'
  float* W = U + C * dv;         // [C][dk]
  float* gam = W + C * dk;       // [C] cumulative log decay
  for (int64_t c0 = 0; c0 < T; c0 += C) {
    const int L = static_cast<int>(T - c0 < C ? T - c0 : C);
    auto Q = [&](int i) { return q + (c0 + i) * qk_stride; };
    auto K = [&](int i) { return k + (c0 + i) * qk_stride; };
    auto V = [&](int i) { return v + (c0 + i) * v_stride; };
    auto B = [&](int i) { return beta[(c0 + i) * gb_stride]; };
    float acc = 0.0f;
    for (int i = 0; i < L; ++i) gam[i] = (acc += g[(c0 + i) * gb_stride]);
    for (int i = 0; i < L; ++i)
      for (int j = 0; j < i; ++j) {
        float d = 0.0f;
        for (int a = 0; a < dk; ++a) d += K(i)[a] * K(j)[a];
        A[i * C + j] = B(i) * d * std::exp(gam[i] - gam[j]);
      }
    // (I + A) X = RHS by forward substitution, for U (rhs beta*v) and W (rhs beta*e^gamma*k).
    for (int i = 0; i < L; ++i) {
      for (int j = 0; j < dv; ++j) U[i * dv + j] = B(i) * V(i)[j];
      for (int a = 0; a < dk; ++a) W[i * dk + a] = B(i) * std::exp(gam[i]) * K(i)[a];
      for (int j = 0; j < i; ++j) {
        const float aij = A[i * C + j];
        for (int c = 0; c < dv; ++c) U[i * dv + c] -= aij * U[j * dv + c];
        for (int a = 0; a < dk; ++a) W[i * dk + a] -= aij * W[j * dk + a];
      }
    }
    // V' = U - W S0, with S0[a][c] = S[c][a].
    for (int i = 0; i < L; ++i)
      for (int c = 0; c < dv; ++c) {
        float ws = 0.0f;
        for (int a = 0; a < dk; ++a) ws += W[i * dk + a] * S[c * dk + a];
        U[i * dv + c] -= ws;
      }
    // O = (e^gamma Q) S0 + (Q K^T ⊙ M) V'.
    for (int i = 0; i < L; ++i) {
      float* oi = o + (c0 + i) * o_stride;
      const float eg = std::exp(gam[i]);
      for (int c = 0; c < dv; ++c) {
        float s = 0.0f;
        for (int a = 0; a < dk; ++a) s += Q(i)[a] * S[c * dk + a];
        oi[c] = eg * s;
      }
      for (int j = 0; j <= i; ++j) {
        float d = 0.0f;
        for (int a = 0; a < dk; ++a) d += Q(i)[a] * K(j)[a];
        const float m = d * std::exp(gam[i] - gam[j]);
        for (int c = 0; c < dv; ++c) oi[c] += m * U[j * dv + c];
      }
    }
    // S <- e^{gamma_L} S0 + (e^{gamma_L - gamma} K)^T V'.
    const float gl = gam[L - 1];
    const float egl = std::exp(gl);
    for (int c = 0; c < dv; ++c) {
      float* row = S + c * dk;
      for (int a = 0; a < dk; ++a) row[a] *= egl;
      for (int i = 0; i < L; ++i) {
        const float f = std::exp(gl - gam[i]) * U[i * dv + c];
        for (int a = 0; a < dk; ++a) row[a] += f * K(i)[a];
      }
    }
  }
}

}  // namespace ds::kernels
