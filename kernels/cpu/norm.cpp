// RMSNorm (zero-centred and plain), the gated RMSNorm of GDN outputs, and per-head l2-norm.
#include <cmath>

#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gdn.h"

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

}  // namespace ds::kernels
