// Launcher of the GPTQ fallback linear (kernels/gpu/gptq_linear.cu): the checkpoint's own tensors
// on the device, dequantised per use.
#pragma once

#include <cstdint>

#include "deltaserve/core/dtype.h"

namespace ds::gpu {

struct GptqArgs {
  const int32_t* qweight = nullptr;  // [k * bits / 32][n]
  const int32_t* qzeros = nullptr;   // [groups][n * bits / 32]; unused when sym
  const uint16_t* scales = nullptr;  // [groups][n] fp16 (bf16 when bf16_scales)
  const int32_t* g_idx = nullptr;    // [k] or null: k / group_size
  const float* bias = nullptr;       // [n] or null
  int64_t m = 0, n = 0, k = 0;
  int bits = 4, group_size = 128;
  bool sym = true, zeros_v2 = false, bf16_scales = false;
};

// y[m][n] (f32/bf16/f16) = x[m][k] (f32/bf16/f16) W^T + bias.
void gptq_linear(const GptqArgs& a, const void* x, int64_t ldx, DType xt, void* y, int64_t ldy, DType yt, void* stream);

}  // namespace ds::gpu
