// AVX-512 build of the vectorised op variants (gptq_linear_simd.inc, gdn_recurrent_simd.inc, attention_simd.inc): V16 is one zmm register.
// GCC 12 reports a false maybe-uninitialized inside its own AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "deltaserve/core/dtype.h"
#include "deltaserve/kernels/cpu.h"

namespace ds::kernels::avx512 {
namespace {

constexpr int kMaxTokTile = 4;
struct V16 {
  __m512 v;
};
inline V16 vzero() { return {_mm512_setzero_ps()}; }
inline V16 vbcast(float s) { return {_mm512_set1_ps(s)}; }
inline V16 vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void vstore(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline V16 vfma(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline V16 vadd(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V16 vsub(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V16 vmul(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline float vhsum(V16 a) { return _mm512_reduce_add_ps(a.v); }
inline V16 vload_bf16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
inline V16 vload_f16(const uint16_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline V16 vload_u8x16(const uint8_t* p) {
  return {_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))};
}
inline V16 vload_u4x16(const uint8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(b, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  return {_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(lo, hi)))};
}

}  // namespace

namespace {
#include "simd_helpers.inc"
#include "gptq_linear_simd.inc"
#include "gdn_recurrent_simd.inc"
#include "attention_simd.inc"
}  // namespace

extern const CpuKernels kTable;
const CpuKernels kTable = {CpuIsa::kAvx512, linear_rows_simd, gdn_recurrent_simd, attention_head_simd};

}  // namespace ds::kernels::avx512
