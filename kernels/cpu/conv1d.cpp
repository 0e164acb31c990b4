// Causal depthwise conv1d + SiLU with a rolling state (GDN input mixing).
#include <cstring>
#include <vector>

#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gdn.h"

namespace ds::kernels {

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

}  // namespace ds::kernels
