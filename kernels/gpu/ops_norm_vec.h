// Private helpers of the small row ops (norm.cu, rope.cu, elementwise.cu): 16-byte vector access
// to activation rows with fp32 math, and the host-side choice of vector width and element type.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "deltaserve/core/dtype.h"
#include "kernels/gpu/launch.h"


namespace ds::gpu {

// V consecutive elements moved as one access (16 bytes for V = 16 / sizeof(T)): aligned structs
// are what nvcc and hipcc turn into 128-bit loads and stores.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T e[V];
};

// Loads/stores V elements in chunks of at most 16 bytes (alignment: min(16, V * sizeof(T))).
template <typename T, int V>
DS_DEV void load_vec(const T* p, float (&f)[V]) {
  constexpr int C = (V * sizeof(T) > 16) ? static_cast<int>(16 / sizeof(T)) : V;
DS_UNROLL
  for (int c = 0; c < V; c += C) {
    const Pack<T, C> pk = *reinterpret_cast<const Pack<T, C>*>(p + c);
DS_UNROLL
    for (int i = 0; i < C; ++i) f[c + i] = to_f32(pk.e[i]);
  }
}
template <typename T, int V>
DS_DEV void store_vec(T* p, const float (&f)[V]) {
  constexpr int C = (V * sizeof(T) > 16) ? static_cast<int>(16 / sizeof(T)) : V;
DS_UNROLL
  for (int c = 0; c < V; c += C) {
    Pack<T, C> pk;
DS_UNROLL
    for (int i = 0; i < C; ++i) pk.e[i] = from_f32<T>(f[c + i]);
    *reinterpret_cast<Pack<T, C>*>(p + c) = pk;
  }
}

// A scalar of a runtime element type (fp32 side inputs such as gate logits may come in either).
enum ElemCode : int { kElemF32 = 0, kElemBF16 = 1, kElemF16 = 2 };
DS_DEV float load_any(const void* p, int64_t i, int code) {
  if (code == kElemBF16) return to_f32(static_cast<const bf16*>(p)[i]);
  if (code == kElemF16) return to_f32(static_cast<const f16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

// ---- host side ----------------------------------------------------------------------------------

inline int elem_code(DType t) { return t == DType::kBF16 ? kElemBF16 : t == DType::kF16 ? kElemF16 : kElemF32; }

// Calls f(T{}) with T the device storage type of t (f32, bf16 or f16; anything else is f32).
template <typename F>
void with_elem_type(DType t, F&& f) {
  if (t == DType::kBF16)
    f(bf16{});
  else if (t == DType::kF16)
    f(f16{});
  else
    f(float{});
}

// True when every (pointer, leading dimension) pair and the row length allow vectors of `vec`
// elements of `elem_bytes` each: pointers aligned to the access, ld and cols multiples of vec.
struct Strided {
  const void* p;
  int64_t ld;
};
inline bool vec_ok(int vec, int elem_bytes, int64_t cols, std::initializer_list<Strided> views) {
  const int64_t align = vec * elem_bytes > 16 ? 16 : vec * elem_bytes;
  if (cols % vec != 0) return false;
  for (const Strided& v : views)
    if (reinterpret_cast<uintptr_t>(v.p) % static_cast<uintptr_t>(align) != 0 || v.ld % vec != 0) return false;
  return true;
}

// Threads per block: a multiple of 64 (a whole number of warps at warp size 32 and 64).
inline int threads_for(int64_t work, int max_threads) {
  int64_t t = (work + 63) / 64 * 64;
  if (t < 64) t = 64;
  return static_cast<int>(t > max_threads ? max_threads : t);
}

}  // namespace ds::gpu
