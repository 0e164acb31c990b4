// Tensor-core vocabulary for kernels/gpu (research/gpu-emulation.md §1.1, §2.1), beside device.h
// the one other file where vendors differ: pairs of 16-bit values in a register (h2) with their
// rounding-exact arithmetic, and one warp-wide matrix multiply-accumulate per vendor, described by
// a traits type that says which elements of A, B and D each lane holds:
//   MmaNv   mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16} (sm_80, sm_90a, sm_121): 32 lanes,
//           D[16][8] += A[16][16] B[16][8];
//   MmaCdna v_mfma_f32_16x16x16{f16,bf16_1k} (gfx908: bf16 as two 16x16x8 halves): 64 lanes,
//           D[16][16] += A[16][16] B[16][16].
// Kernels are templates over the traits and address their operands only through a_row/a_col,
// b_row/b_col, c_row/c_col, so one source serves both; under DS_EMU both run (the launch's warp
// size picks), the instruction being a warp rendezvous that sums the exact products in double and
// rounds once (hardware may differ in the last fp32 bits; exact-data tests avoid that gap).
#pragma once

#include <type_traits>

#include "kernels/gpu/device.h"

#if defined(DS_GPU_CUDA)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace ds::gpu {

// Two values of T (f16 or bf16) in one 32-bit register, the first in the low half.
struct h2 {
  uint32_t bits;
};

template <typename T>
DS_HD inline h2 h2_pack(T lo, T hi) {
  return {static_cast<uint32_t>(lo.bits) | (static_cast<uint32_t>(hi.bits) << 16)};
}
template <typename T>
DS_HD inline h2 h2_splat(T v) {
  return h2_pack(v, v);
}
template <typename T>
DS_HD inline T h2_lo(h2 v) {
  return T{static_cast<uint16_t>(v.bits & 0xffffu)};
}
template <typename T>
DS_HD inline T h2_hi(h2 v) {
  return T{static_cast<uint16_t>(v.bits >> 16)};
}

namespace detail {
// Each half: the exact result (exact in fp32 for a product; for a difference fp32 keeps enough
// bits that rounding twice equals rounding once) rounded to T, to nearest even.
template <typename T, typename Op>
DS_HD inline h2 h2_via_f32(h2 a, h2 b, Op op) {
  return h2_pack(from_f32<T>(op(to_f32(h2_lo<T>(a)), to_f32(h2_lo<T>(b)))),
                 from_f32<T>(op(to_f32(h2_hi<T>(a)), to_f32(h2_hi<T>(b)))));
}
struct SubOp {
  DS_HD float operator()(float x, float y) const { return x - y; }
};
struct MulOp {
  DS_HD float operator()(float x, float y) const { return x * y; }
};
}  // namespace detail

#if defined(DS_GPU_CUDA) || defined(DS_GPU_HIP)
namespace detail {
#if defined(DS_GPU_HIP)
typedef _Float16 f16x2 __attribute__((ext_vector_type(2)));
#endif
// op on the pair as the vendor's own two-lane type V.
template <typename V, typename Op>
DS_DEV h2 h2_native(h2 a, h2 b, Op op) {
  V x, y;
  __builtin_memcpy(&x, &a, 4);
  __builtin_memcpy(&y, &b, 4);
  const V r = op(x, y);
  h2 out;
  __builtin_memcpy(&out, &r, 4);
  return out;
}
}  // namespace detail
#endif

// a - b and a * b per half, each rounded once to nearest even (never contracted into an fma).
template <typename T>
DS_DEV h2 h2_sub(h2 a, h2 b) {
#if defined(DS_GPU_CUDA)
  if constexpr (std::is_same_v<T, f16>)
    return detail::h2_native<__half2>(a, b, [](__half2 x, __half2 y) { return __hsub2(x, y); });
  else
    return detail::h2_native<__nv_bfloat162>(a, b, [](__nv_bfloat162 x, __nv_bfloat162 y) { return __hsub2(x, y); });
#elif defined(DS_GPU_HIP)
  if constexpr (std::is_same_v<T, f16>)  // v_pk_sub_f16
    return detail::h2_native<detail::f16x2>(a, b, [](detail::f16x2 x, detail::f16x2 y) { return x - y; });
  else
    return detail::h2_via_f32<T>(a, b, detail::SubOp{});
#else
  return detail::h2_via_f32<T>(a, b, detail::SubOp{});
#endif
}
template <typename T>
DS_DEV h2 h2_mul(h2 a, h2 b) {
#if defined(DS_GPU_CUDA)
  if constexpr (std::is_same_v<T, f16>)
    return detail::h2_native<__half2>(a, b, [](__half2 x, __half2 y) { return __hmul2_rn(x, y); });
  else
    return detail::h2_native<__nv_bfloat162>(a, b,
                                             [](__nv_bfloat162 x, __nv_bfloat162 y) { return __hmul2_rn(x, y); });
#elif defined(DS_GPU_HIP)
  if constexpr (std::is_same_v<T, f16>)  // v_pk_mul_f16
    return detail::h2_native<detail::f16x2>(a, b, [](detail::f16x2 x, detail::f16x2 y) { return x * y; });
  else
    return detail::h2_via_f32<T>(a, b, detail::MulOp{});
#else
  return detail::h2_via_f32<T>(a, b, detail::MulOp{});
#endif
}

// --- the per-lane layouts ---------------------------------------------------------------------
// A element e of a lane lives in a[e / 2], half e % 2; B element e in b[e / 2], half e % 2; D
// element e in c[e].
struct MmaNv {
  static constexpr int kLanes = 32, kN = 8, kARegs = 4;
  static constexpr int kAElems = 2 * kARegs;
  DS_HD static constexpr int a_row(int l, int e) { return (l >> 2) + ((e >> 1) & 1) * 8; }
  DS_HD static constexpr int a_col(int l, int e) { return (l & 3) * 2 + (e & 1) + (e >> 2) * 8; }
  DS_HD static constexpr int b_row(int l, int e) { return (l & 3) * 2 + (e & 1) + (e >> 1) * 8; }
  DS_HD static constexpr int b_col(int l, int) { return l >> 2; }
  DS_HD static constexpr int c_row(int l, int e) { return (l >> 2) + (e >> 1) * 8; }
  DS_HD static constexpr int c_col(int l, int e) { return (l & 3) * 2 + (e & 1); }
};
struct MmaCdna {
  static constexpr int kLanes = 64, kN = 16, kARegs = 2;
  static constexpr int kAElems = 2 * kARegs;
  DS_HD static constexpr int a_row(int l, int) { return l & 15; }
  DS_HD static constexpr int a_col(int l, int e) { return 4 * (l >> 4) + e; }
  DS_HD static constexpr int b_row(int l, int e) { return 4 * (l >> 4) + e; }
  DS_HD static constexpr int b_col(int l, int) { return l & 15; }
  DS_HD static constexpr int c_row(int l, int e) { return 4 * (l >> 4) + e; }
  DS_HD static constexpr int c_col(int l, int) { return l & 15; }
};

#if defined(DS_GPU_EMU)
namespace detail {
struct MmaRecord {
  const h2* a;
  const h2* b;
  float* c;
};
template <class Mma, typename T>
void emu_mma(void* const* records, int lanes) {
  double A[16][16], B[16][16], C[16][16];
  for (int l = 0; l < lanes; ++l) {
    const auto* r = static_cast<const MmaRecord*>(records[l]);
    for (int e = 0; e < Mma::kAElems; ++e) {
      const h2 v = r->a[e / 2];
      A[Mma::a_row(l, e)][Mma::a_col(l, e)] = to_f32(e % 2 ? h2_hi<T>(v) : h2_lo<T>(v));
    }
    for (int e = 0; e < 4; ++e) {
      const h2 v = r->b[e / 2];
      B[Mma::b_row(l, e)][Mma::b_col(l, e)] = to_f32(e % 2 ? h2_hi<T>(v) : h2_lo<T>(v));
      C[Mma::c_row(l, e)][Mma::c_col(l, e)] = r->c[e];
    }
  }
  for (int l = 0; l < lanes; ++l) {
    auto* r = static_cast<const MmaRecord*>(records[l]);
    for (int e = 0; e < 4; ++e) {
      const int i = Mma::c_row(l, e), j = Mma::c_col(l, e);
      double s = C[i][j];
      for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];
      r->c[e] = static_cast<float>(s);
    }
  }
}
}  // namespace detail
#endif

// c += A B for this lane's fragments (a: Mma::kARegs registers, b: 2, c: 4 floats). Every lane of
// the warp must call it together.
template <class Mma, typename T>
DS_DEV void mma(float* c, const h2* a, const h2* b) {
#if defined(DS_GPU_EMU)
  if (::ds::emu::warp_size() != Mma::kLanes)
    ::ds::emu::detail::fiber_fail("mma: the kernel's layout is for another warp size");
  detail::MmaRecord rec{a, b, c};
  ::ds::emu::warp_collective(&detail::emu_mma<Mma, T>, &rec);
#elif defined(DS_GPU_CUDA)
  static_assert(Mma::kLanes == 32, "CUDA runs the 32-lane layout");
  if constexpr (std::is_same_v<T, f16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0].bits), "r"(a[1].bits), "r"(a[2].bits), "r"(a[3].bits), "r"(b[0].bits), "r"(b[1].bits));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0].bits), "r"(a[1].bits), "r"(a[2].bits), "r"(a[3].bits), "r"(b[0].bits), "r"(b[1].bits));
  }
#else  // HIP
  static_assert(Mma::kLanes == 64, "HIP runs the 64-lane layout");
#if defined(__HIP_DEVICE_COMPILE__)
  typedef float f32x4 __attribute__((ext_vector_type(4)));
  f32x4 acc = {c[0], c[1], c[2], c[3]};
  if constexpr (std::is_same_v<T, f16>) {
    typedef _Float16 f16x4 __attribute__((ext_vector_type(4)));
    f16x4 x, y;
    __builtin_memcpy(&x, a, 8);
    __builtin_memcpy(&y, b, 8);
    acc = __builtin_amdgcn_mfma_f32_16x16x16f16(x, y, acc, 0, 0, 0);
  } else {
#if defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)
    typedef short s16x4 __attribute__((ext_vector_type(4)));
    s16x4 x, y;
    __builtin_memcpy(&x, a, 8);
    __builtin_memcpy(&y, b, 8);
    acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(x, y, acc, 0, 0, 0);
#else
    // gfx908: two k=8 halves; each lane's elements (0,1) then (2,3) cover the same k set.
    typedef short s16x2 __attribute__((ext_vector_type(2)));
    s16x2 x0, x1, y0, y1;
    __builtin_memcpy(&x0, &a[0], 4);
    __builtin_memcpy(&x1, &a[1], 4);
    __builtin_memcpy(&y0, &b[0], 4);
    __builtin_memcpy(&y1, &b[1], 4);
    acc = __builtin_amdgcn_mfma_f32_16x16x8bf16(x0, y0, acc, 0, 0, 0);
    acc = __builtin_amdgcn_mfma_f32_16x16x8bf16(x1, y1, acc, 0, 0, 0);
#endif
  }
  c[0] = acc[0];
  c[1] = acc[1];
  c[2] = acc[2];
  c[3] = acc[3];
#else
  (void)c;
  (void)a;
  (void)b;
#endif
#endif
}

// The layout the build's device runs (under emulation: the launch's warp size chooses at run time).
#if defined(DS_GPU_CUDA)
using MmaNative = MmaNv;
#elif defined(DS_GPU_HIP)
using MmaNative = MmaCdna;
#endif

}  // namespace ds::gpu
