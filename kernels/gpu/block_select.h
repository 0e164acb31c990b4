// Block-wide selections shared by the router (moe.cu) and the sampler (sampling.cu): argmax with
// the CPU kernels' tie rule (the lowest index among equal values wins), double sums and counts with
// a fixed reduction tree (the schedule never changes a result). Device code; 1-D blocks.
#pragma once

#include "kernels/gpu/device.h"

namespace ds::gpu {

// (value, index) pairs ordered by value descending then index ascending; index < 0 is "none".
struct ValIdx {
  float v;
  int32_t i;
};
DS_DEV bool better(ValIdx a, ValIdx b) {
  if (b.i < 0) return a.i >= 0;
  if (a.i < 0) return false;
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

// Every thread gets the best pair of the block. scratch: 2 * kMaxWarp words of shared memory.
DS_DEV ValIdx block_argmax(ValIdx x, void* scratch) {
  float* sv = static_cast<float*>(scratch);
  int32_t* si = reinterpret_cast<int32_t*>(sv + kMaxWarp);
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / warp_size();
  const int warps = static_cast<int>(blockDim.x) / warp_size();
  for (int o = warp_size() / 2; o > 0; o >>= 1) {
    const ValIdx y{shfl_xor(x.v, o), shfl_xor(x.i, o)};
    if (better(y, x)) x = y;
  }
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) {
    sv[warp] = x.v;
    si[warp] = x.i;
  }
  __syncthreads();
  ValIdx r{0.0f, -1};
  for (int w = 0; w < warps; ++w) {
    const ValIdx y{sv[w], si[w]};
    if (better(y, r)) r = y;
  }
  return r;
}

// Block sums in double / int64 (the sampler's probability mass and counts). scratch: kMaxWarp
// doubles of shared memory.
template <typename T>
DS_DEV T block_sum_t(T v, void* scratch) {
  T* s = static_cast<T*>(scratch);
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / warp_size();
  const int warps = static_cast<int>(blockDim.x) / warp_size();
  for (int o = warp_size() / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  T r = 0;
  for (int w = 0; w < warps; ++w) r += s[w];  // the same order in every thread
  return r;
}
template <typename T>
DS_DEV T block_max_t(T v, void* scratch) {
  T* s = static_cast<T*>(scratch);
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / warp_size();
  const int warps = static_cast<int>(blockDim.x) / warp_size();
  for (int o = warp_size() / 2; o > 0; o >>= 1) {
    const T y = shfl_xor(v, o);
    v = y > v ? y : v;
  }
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  T r = s[0];
  for (int w = 1; w < warps; ++w) r = s[w] > r ? s[w] : r;
  return r;
}

}  // namespace ds::gpu
