// GPTQ-family bit unpacking shared by host repacking and device kernels (kernels-formats.md §1.1):
// values are packed LSB-first into int32 words, qweight along K, qzeros along N.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DS_HD __host__ __device__
#else
#define DS_HD
#endif

namespace ds::kernels {

// Code of element (k, n) of qweight [K*bits/32][N].
DS_HD inline uint32_t gptq_qweight_code(const int32_t* qweight, int64_t n_cols, int bits, int64_t k, int64_t n) {
  const int pf = 32 / bits;
  const uint32_t word = static_cast<uint32_t>(qweight[(k / pf) * n_cols + n]);
  return (word >> ((k % pf) * bits)) & ((1u << bits) - 1u);
}

// True zero point of (group g, column n). v1 checkpoints store zero - 1 in the bits-wide field, so a
// true zero of 0 is stored as 2^bits - 1 and read back modulo 2^bits (the quantiser's value;
// GPTQModel's v1 -> v2 conversion agrees; exllama-style kernels that add 1 without wrapping read
// 2^bits there). sym ignores qzeros.
DS_HD inline int32_t gptq_zero(const int32_t* qzeros, int64_t n_cols, int bits, bool sym, bool zeros_v2,
                               int64_t g, int64_t n) {
  if (sym || qzeros == nullptr) return 1 << (bits - 1);
  const int pf = 32 / bits;
  const int64_t words_per_row = n_cols / pf;
  const uint32_t word = static_cast<uint32_t>(qzeros[g * words_per_row + n / pf]);
  const int32_t stored = static_cast<int32_t>((word >> ((n % pf) * bits)) & ((1u << bits) - 1u));
  return zeros_v2 ? stored : (stored + 1) & ((1 << bits) - 1);
}

}  // namespace ds::kernels
