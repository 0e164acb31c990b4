// Partial interleaved M-RoPE (qwen35-arch.md §3.3).
#include <cmath>
#include <vector>

#include "deltaserve/kernels/cpu.h"
#include "kernels/common/rope.h"

namespace ds::kernels {

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

}  // namespace ds::kernels
