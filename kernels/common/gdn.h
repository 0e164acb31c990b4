// Gated DeltaNet gate math (qwen35-arch.md §3.4 step 5), shared by host and device kernels.
#pragma once

#include <cmath>

#include "kernels/common/gptq.h"  // DS_HD

namespace ds::kernels {

// torch.nn.functional.softplus with beta 1, threshold 20.
DS_HD inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
DS_HD inline float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }
DS_HD inline float siluf(float x) { return x / (1.0f + std::exp(-x)); }

// Log-decay g = -exp(A_log) * softplus(a + dt_bias); the per-step decay is exp(g) in (0, 1].
DS_HD inline float gdn_log_decay(float a, float A_log, float dt_bias) {
  return -std::exp(A_log) * softplus(a + dt_bias);
}

}  // namespace ds::kernels
