// Linear rows over the CPU packed layout (kernels/cpu.h): the plain reference (this file) and the
// vectorised variant (gptq_linear_simd.inc, built per ISA by simd_avx2.cpp / simd_avx512.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"
#include "kernels/cpu/scalar.h"

namespace ds::kernels {

namespace {

float dense_weight(const PackedLinear& w, int64_t n, int64_t k) {
  const int64_t i = n * w.k + k;
  switch (w.format) {
    case PackedFormat::kF32: return static_cast<const float*>(w.data)[i];
    case PackedFormat::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case PackedFormat::kF16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    default: return 0.0f;
  }
}

uint32_t packed_code(const PackedLinear& w, int64_t n, int64_t k) {
  const int64_t rb = n / kRowBlock, r = n % kRowBlock;
  const auto* p = static_cast<const uint8_t*>(w.data);
  if (w.format == PackedFormat::kQ8) return p[(rb * w.k + k) * 16 + r];
  const uint8_t byte = p[(rb * w.k + k) * 8 + (r % 8)];
  return r < 8 ? (byte & 0xFu) : (byte >> 4);
}

}  // namespace

namespace scalar {

void linear_rows_scalar(const PackedLinear& w, const float* x, const float* xsum, int64_t m, float* y,
                        int64_t ldy, int64_t rb_begin, int64_t rb_end) {
  const int64_t n_end = std::min(w.n, rb_end * kRowBlock);
  const float sym_zero = w.format == PackedFormat::kQ8 ? 128.0f : 8.0f;
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * w.k;
    for (int64_t n = rb_begin * kRowBlock; n < n_end; ++n) {
      float acc = 0.0f;
      if (!is_quantized(w.format)) {
        for (int64_t k = 0; k < w.k; ++k) acc += dense_weight(w, n, k) * xt[k];
      } else {
        for (int64_t g = 0; g < w.groups; ++g) {
          float qx = 0.0f;
          for (int64_t k = w.group_start[g]; k < w.group_start[g + 1]; ++k)
            qx += static_cast<float>(packed_code(w, n, k)) * xt[k];
          const float s = f16_to_f32(w.scales[group_param_index(w.groups, g, n)]);
          const float z = w.zeros ? static_cast<float>(w.zeros[group_param_index(w.groups, g, n)]) : sym_zero;
          acc += s * (qx - z * xsum[t * w.groups + g]);
        }
      }
      y[t * ldy + n] = acc + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

}  // namespace scalar
}  // namespace ds::kernels
