// Paged softmax attention of one query head: the plain reference (this file) and the vectorised
// variant (attention_simd.inc).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/cpu/scalar.h"

namespace ds::kernels {

namespace scalar {

void attention_head_scalar(const float* q, const float* k_cache, const float* v_cache,
                           const int32_t* block_table, int block_size, int64_t block_stride,
                           int64_t row_stride, int kv_head, int hd, int64_t n_ctx, float scale,
                           float* scores, float* out) {
  auto row = [&](const float* base, int64_t p) {
    return base + block_table[p / block_size] * block_stride + (p % block_size) * row_stride +
           static_cast<int64_t>(kv_head) * hd;
  };
  float mx = -INFINITY;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const float* kp = row(k_cache, p);
    float d = 0.0f;
    for (int i = 0; i < hd; ++i) d += q[i] * kp[i];
    scores[p] = d * scale;
    mx = std::max(mx, scores[p]);
  }
  float sum = 0.0f;
  for (int64_t p = 0; p < n_ctx; ++p) sum += (scores[p] = std::exp(scores[p] - mx));
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const float* vp = row(v_cache, p);
    const float wgt = scores[p] / sum;
    for (int i = 0; i < hd; ++i) out[i] += wgt * vp[i];
  }
}

}  // namespace scalar
}  // namespace ds::kernels
