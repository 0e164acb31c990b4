// The device-side vocabulary of every kernel in kernels/gpu/: one source compiles with nvcc, with
// hipcc, and with the host compiler under DS_EMU (kernels/emu runs it on the CPU). Kernels write
// CUDA syntax (__global__, __device__, threadIdx, blockIdx, blockDim, gridDim, __syncthreads) and
// reach every other instruction through a named helper here: no raw asm, no __shfl_*_sync, no
// static __shared__ (dynamic shared memory through smem<T>() only), no __CUDA_ARCH__ tests.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(DS_EMU)
#include "kernels/emu/emu.h"
#define DS_GPU_EMU 1
#elif defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#include <hip/hip_runtime.h>
#define DS_GPU_HIP 1
#else
#include <cuda_runtime.h>
#define DS_GPU_CUDA 1
#endif

#include "kernels/common/gptq.h"  // DS_HD

#define DS_DEV __device__ __forceinline__

// Loops over compile-time bounds unroll so their arrays stay in registers; the host compiler has
// no such pragma.
#if defined(DS_GPU_EMU)
#define DS_UNROLL
#else
#define DS_UNROLL _Pragma("unroll")
#endif

namespace ds::gpu {

// --- the warp -------------------------------------------------------------------------------
// 32 on NVIDIA, 64 on CDNA (gfx908/gfx90a); under emulation, the launch's warp size (32 or 64).
// Never size an array by it: use kMaxWarp. Blocks are one-dimensional multiples of warp_size().
constexpr int kMaxWarp = 64;
#if defined(DS_GPU_EMU)
DS_DEV int warp_size() { return ::ds::emu::warp_size(); }
DS_DEV int lane_id() { return ::ds::emu::lane_id(); }
#elif defined(DS_GPU_HIP)
DS_DEV constexpr int warp_size() { return 64; }
DS_DEV int lane_id() { return static_cast<int>(threadIdx.x) & 63; }
#else
DS_DEV constexpr int warp_size() { return 32; }
DS_DEV int lane_id() { return static_cast<int>(threadIdx.x) & 31; }
#endif

// Shuffles over the whole warp in segments of `width` lanes (0: the whole warp; else a power of
// two <= warp_size()), with CUDA's rules: an out-of-segment source returns the caller's value.
#if defined(DS_GPU_EMU)
template <typename T> DS_DEV T shfl_xor(T v, int mask, int width = 0) { return ::ds::emu::shfl(::ds::emu::ShflOp::kXor, v, mask, width); }
template <typename T> DS_DEV T shfl_down(T v, int delta, int width = 0) { return ::ds::emu::shfl(::ds::emu::ShflOp::kDown, v, delta, width); }
template <typename T> DS_DEV T shfl_up(T v, int delta, int width = 0) { return ::ds::emu::shfl(::ds::emu::ShflOp::kUp, v, delta, width); }
template <typename T> DS_DEV T shfl_idx(T v, int src, int width = 0) { return ::ds::emu::shfl(::ds::emu::ShflOp::kIdx, v, src, width); }
DS_DEV uint64_t ballot(bool p) { return ::ds::emu::ballot(p); }
#elif defined(DS_GPU_HIP)
template <typename T> DS_DEV T shfl_xor(T v, int mask, int width = 0) { return __shfl_xor(v, mask, width ? width : 64); }
template <typename T> DS_DEV T shfl_down(T v, int delta, int width = 0) { return __shfl_down(v, delta, width ? width : 64); }
template <typename T> DS_DEV T shfl_up(T v, int delta, int width = 0) { return __shfl_up(v, delta, width ? width : 64); }
template <typename T> DS_DEV T shfl_idx(T v, int src, int width = 0) { return __shfl(v, src, width ? width : 64); }
DS_DEV uint64_t ballot(bool p) { return __ballot(p); }
#else
template <typename T> DS_DEV T shfl_xor(T v, int mask, int width = 0) { return __shfl_xor_sync(0xffffffffu, v, mask, width ? width : 32); }
template <typename T> DS_DEV T shfl_down(T v, int delta, int width = 0) { return __shfl_down_sync(0xffffffffu, v, delta, width ? width : 32); }
template <typename T> DS_DEV T shfl_up(T v, int delta, int width = 0) { return __shfl_up_sync(0xffffffffu, v, delta, width ? width : 32); }
template <typename T> DS_DEV T shfl_idx(T v, int src, int width = 0) { return __shfl_sync(0xffffffffu, v, src, width ? width : 32); }
DS_DEV uint64_t ballot(bool p) { return __ballot_sync(0xffffffffu, p); }
#endif

// Butterfly reductions: every lane gets the same result, in the same order on every run.
DS_DEV float warp_sum(float v) {
  for (int o = warp_size() / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}
DS_DEV float warp_max(float v) {
  for (int o = warp_size() / 2; o > 0; o >>= 1) v = fmaxf(v, shfl_xor(v, o));
  return v;
}

// --- shared memory ----------------------------------------------------------------------------
// The launch's dynamic shared memory (the only kind our kernels use), 16-byte aligned.
template <typename T>
DS_DEV T* smem() {
#if defined(DS_GPU_EMU)
  return reinterpret_cast<T*>(::ds::emu::smem_base());
#else
  extern __shared__ __align__(16) unsigned char ds_dynamic_smem[];
  return reinterpret_cast<T*>(ds_dynamic_smem);
#endif
}

// Block-wide reductions of one float per thread (1-D blocks); every thread gets the result.
// `scratch`: kMaxWarp floats of shared memory not otherwise used during the call.
DS_DEV float block_sum(float v, float* scratch) {
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / warp_size();
  const int warps = (static_cast<int>(blockDim.x) + warp_size() - 1) / warp_size();
  v = warp_sum(v);
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}
DS_DEV float block_max(float v, float* scratch) {
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / warp_size();
  const int warps = (static_cast<int>(blockDim.x) + warp_size() - 1) / warp_size();
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? scratch[lane] : -INFINITY);
}

// --- atomics (device scope, relaxed) -------------------------------------------------------------
#if defined(DS_GPU_EMU)
DS_DEV float atomic_add(float* p, float v) { return ::ds::emu::atomic_add(p, v); }
DS_DEV int atomic_add(int* p, int v) { return ::ds::emu::atomic_add(p, v); }
DS_DEV unsigned atomic_add(unsigned* p, unsigned v) { return ::ds::emu::atomic_add(p, v); }
#else
DS_DEV float atomic_add(float* p, float v) { return atomicAdd(p, v); }
DS_DEV int atomic_add(int* p, int v) { return atomicAdd(p, v); }
DS_DEV unsigned atomic_add(unsigned* p, unsigned v) { return atomicAdd(p, v); }
#endif

// Orders this thread's global writes before its later ones as seen by the whole device (the
// "last block reduces" protocol: write partials, fence, then count arrivals with atomic_add).
#if defined(DS_GPU_EMU)
DS_DEV void thread_fence() {}  // one OS thread: memory is sequentially consistent
#else
DS_DEV void thread_fence() { __threadfence(); }
#endif

// --- bit manipulation (research/gpu-emulation.md §1.6, §1.7) -----------------------------------
// lop3: bit i of the result is bit ((a_i << 2) | (b_i << 1) | c_i) of kLut (one instruction on
// NVIDIA; the same expression folds to and/or/bfi elsewhere).
template <int kLut>
DS_DEV uint32_t lop3(uint32_t a, uint32_t b, uint32_t c) {
#if defined(DS_GPU_CUDA) && defined(__CUDA_ARCH__)
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, %4;" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(kLut));
  return d;
#else
  uint32_t d = 0;
  DS_UNROLL
  for (int i = 0; i < 8; ++i)
    if ((kLut >> i) & 1) d |= ((i & 4) ? a : ~a) & ((i & 2) ? b : ~b) & ((i & 1) ? c : ~c);
  return d;
#endif
}
// Byte i of the result is byte (sel >> 4i) & 7 of the 8 bytes {a (0..3), b (4..7)} (prmt's
// default mode, __byte_perm).
DS_DEV uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#if defined(DS_GPU_EMU)
  const uint64_t t = (static_cast<uint64_t>(b) << 32) | a;
  uint32_t d = 0;
  for (int i = 0; i < 4; ++i) d |= static_cast<uint32_t>((t >> (8 * ((sel >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return d;
#else
  return __byte_perm(a, b, sel);
#endif
}

// --- math: the GPU's fast forms; under emulation libm (op tolerances cover the gap) ---
#if defined(DS_GPU_EMU)
DS_DEV float fast_exp(float x) { return std::exp(x); }
DS_DEV float fast_log(float x) { return std::log(x); }
DS_DEV float rsqrt(float x) { return 1.0f / std::sqrt(x); }
#else
DS_DEV float fast_exp(float x) { return __expf(x); }
DS_DEV float fast_log(float x) { return __logf(x); }
DS_DEV float rsqrt(float x) { return rsqrtf(x); }
#endif

// --- 16-bit storage types: raw bits, converted with round-to-nearest-even by the same code on
// every target, so emulation and device agree bit for bit on conversions. ---
struct f16 { uint16_t bits; };
struct bf16 { uint16_t bits; };

DS_HD inline float bits_to_f32(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
DS_HD inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u;
}

DS_HD inline float to_f32(float v) { return v; }
DS_HD inline float to_f32(bf16 v) { return bits_to_f32(static_cast<uint32_t>(v.bits) << 16); }
DS_HD inline float to_f32(f16 v) {
  const uint32_t h = v.bits, sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
  const float m = static_cast<float>(man) * 5.9604644775390625e-8f;  // subnormal: man * 2^-24
  return sign ? -m : m;
}

template <typename T> DS_HD inline T from_f32(float v);
template <> DS_HD inline float from_f32<float>(float v) { return v; }
template <> DS_HD inline bf16 from_f32<bf16>(float v) {
  const uint32_t u = f32_to_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {0x7fff};  // NaN, canonical as CUDA's
  return {static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}
template <> DS_HD inline f16 from_f32<f16>(float v) {
  const uint32_t u = f32_to_bits(v), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return {0x7fff};                                  // NaN
  if (a >= 0x477ff000u) return {static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to >= 65520: inf
  if (a >= 0x38800000u) {                                                // normal half
    const uint32_t r = a - 0x38000000u;                                  // exponent 127 -> 15
    return {static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13))};
  }
  // subnormal half or zero: m = a / 2^-24 rounded to nearest even; a = man * 2^(e - 150)
  const uint32_t e = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
  const int shift = 126 - static_cast<int>(e);
  if (shift > 24) return {static_cast<uint16_t>(sign)};
  const uint32_t m = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
  const uint32_t q = m + ((rem > half || (rem == half && (m & 1u))) ? 1u : 0u);
  return {static_cast<uint16_t>(sign | q)};
}

}  // namespace ds::gpu
