// Quantized codes to 16-bit floats by bit tricks (kernels-formats.md §2.3): a code q is OR-ed into
// the mantissa of a magic number M, giving the value M + q exactly with no conversion instruction;
// the kernel then subtracts (M + zero) (exact: small integers) and multiplies by the scale (one
// rounding). M is 1024 for fp16 (0x6400) and 128 for bf16 int4 (0x4300). bf16 has too few mantissa
// bits for M + 255, so bf16 int8 goes through fp32 (2^23 + q) and M = 0.
//
// Which code lands in which half is fixed here and mirrored by the repack (qgemm.cu):
//   int4 word: out[j] = (M + nibble j, M + nibble j+4), j < 4;
//   int8 word: out[0] = (M + byte 0, M + byte 2), out[1] = (M + byte 1, M + byte 3).
#pragma once

#include <type_traits>

#include "kernels/gpu/mma.h"

namespace ds::gpu {

template <typename T, int kBits>
DS_HD constexpr float code_magic() {
  return std::is_same_v<T, f16> ? 1024.0f : (kBits == 4 ? 128.0f : 0.0f);
}

template <typename T>
DS_DEV void codes_int4(uint32_t w, h2 out[4]) {
  constexpr uint32_t kMagic = std::is_same_v<T, f16> ? 0x64006400u : 0x43004300u;
  DS_UNROLL
  for (int j = 0; j < 4; ++j) out[j].bits = lop3<0xEA>(w >> (4 * j), 0x000f000fu, kMagic);  // (a & b) | c
}

template <typename T>
DS_DEV void codes_int8(uint32_t w, h2 out[2]) {
  if constexpr (std::is_same_v<T, f16>) {
    out[0].bits = byte_perm(w, 0x64646464u, 0x5240u);
    out[1].bits = byte_perm(w, 0x64646464u, 0x5341u);
  } else {
    // 2^23 + q as fp32, minus 2^23: q exactly, whose bf16 is the top half of its fp32 bits.
    auto b16 = [](uint32_t q) { return f32_to_bits(bits_to_f32(0x4b000000u | q) - 8388608.0f) >> 16; };
    out[0].bits = b16(w & 0xffu) | (b16((w >> 16) & 0xffu) << 16);
    out[1].bits = b16((w >> 8) & 0xffu) | (b16(w >> 24) << 16);
  }
}

// Where code p of a packed word goes: for int4 the B fragment (0 or 1 of the word's two) and its
// element; for int8 the element of the word's one fragment (out[e / 2], half e % 2).
DS_HD constexpr int int4_code_frag(int p) { return (p & 3) >> 1; }
DS_HD constexpr int int4_code_elem(int p) { return (p & 1) * 2 + (p >> 2); }
DS_HD constexpr int int8_code_elem(int p) { return (p & 1) * 2 + (p >> 1); }

}  // namespace ds::gpu
