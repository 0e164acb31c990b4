// The gated delta rule token recurrence for one value head: the plain reference (this file) and the
// vectorised variant (gdn_recurrent_simd.inc).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/cpu/scalar.h"

namespace ds::kernels {

namespace scalar {

void gdn_recurrent_scalar(float* S, int dk, int dv, int64_t T, const float* q, const float* k,
                          int64_t qk_stride, const float* v, int64_t v_stride, const float* g,
                          const float* beta, int64_t gb_stride, float* o, int64_t o_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const float* qt = q + t * qk_stride;
    const float* kt = k + t * qk_stride;
    const float* vt = v + t * v_stride;
    const float alpha = std::exp(g[t * gb_stride]);
    const float b = beta[t * gb_stride];
    float* ot = o + t * o_stride;
    for (int j = 0; j < dv; ++j) {
      float* row = S + static_cast<int64_t>(j) * dk;
      float sk = 0.0f;
      for (int i = 0; i < dk; ++i) sk += (row[i] *= alpha) * kt[i];  // S <- alpha S;  S^T k
      const float u = b * (vt[j] - sk);
      float so = 0.0f;
      for (int i = 0; i < dk; ++i) so += (row[i] += kt[i] * u) * qt[i];  // S += k u^T;  S^T q
      ot[j] = so;
    }
  }
}

}  // namespace scalar
}  // namespace ds::kernels
