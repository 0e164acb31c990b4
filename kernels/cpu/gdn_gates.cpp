// Gated DeltaNet gates per token and value head (qwen35-arch.md §3.4 step 5).
#include "deltaserve/kernels/cpu.h"
#include "kernels/common/gdn.h"

namespace ds::kernels {

void gdn_gates(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t T, int Hv, const float* A_log,
               const float* dt_bias, float* g, float* beta) {
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < Hv; ++h) {
      beta[t * Hv + h] = sigmoidf(b[t * ldb + h]);
      g[t * Hv + h] = gdn_log_decay(a[t * lda + h], A_log[h], dt_bias[h]);
    }
}

}  // namespace ds::kernels
