// Elementwise glue: SiLU-mul, sigmoid gates, residual add, the q/gate split of gated attention.
#include <cstring>

#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gdn.h"

namespace ds::kernels {

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = siluf(gate[i]) * up[i];
}

void sigmoid_gate(float* x, const float* gate, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= sigmoidf(gate[i]);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void add_sigmoid_gated(float* x, int64_t ldx, const float* y, int64_t ldy, const float* gate_logit, int64_t ld_gate,
                       int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = sigmoidf(gate_logit[r * ld_gate]);
    for (int64_t j = 0; j < cols; ++j) x[r * ldx + j] += s * y[r * ldy + j];
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

}  // namespace ds::kernels
