// AVX2 build of the vectorised op variants (gptq_linear_simd.inc, gdn_recurrent_simd.inc, attention_simd.inc): V16 is a pair of ymm registers.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"

namespace ds::kernels::avx2 {
namespace {

constexpr int kMaxTokTile = 2;  // 16 ymm registers: 2 tokens x 2 accumulators x 2 halves + weights
struct V16 {
  __m256 a, b;
};
inline V16 vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V16 vbcast(float s) { return {_mm256_set1_ps(s), _mm256_set1_ps(s)}; }
inline V16 vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void vstore(float* p, V16 x) {
  _mm256_storeu_ps(p, x.a);
  _mm256_storeu_ps(p + 8, x.b);
}
inline V16 vfma(V16 x, V16 y, V16 c) { return {_mm256_fmadd_ps(x.a, y.a, c.a), _mm256_fmadd_ps(x.b, y.b, c.b)}; }
inline V16 vadd(V16 x, V16 y) { return {_mm256_add_ps(x.a, y.a), _mm256_add_ps(x.b, y.b)}; }
inline V16 vsub(V16 x, V16 y) { return {_mm256_sub_ps(x.a, y.a), _mm256_sub_ps(x.b, y.b)}; }
inline V16 vmul(V16 x, V16 y) { return {_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)}; }
inline float vhsum(V16 x) {
  const __m256 s = _mm256_add_ps(x.a, x.b);
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}
inline __m256 bf16x8(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline V16 vload_bf16(const uint16_t* p) {
  return {bf16x8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          bf16x8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
}
inline V16 vload_f16(const uint16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
}
inline V16 vload_u8x16(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)))};
}
inline V16 vload_u4x16(const uint8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(b, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  return {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi))};
}

}  // namespace

namespace {
#include "simd_helpers.inc"
#include "gptq_linear_simd.inc"
#include "gdn_recurrent_simd.inc"
#include "attention_simd.inc"
}  // namespace

extern const CpuKernels kTable;
const CpuKernels kTable = {CpuIsa::kAvx2, linear_rows_simd, gdn_recurrent_simd, attention_head_simd};

}  // namespace ds::kernels::avx2
