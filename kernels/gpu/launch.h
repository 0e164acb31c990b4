// Host side of a kernel source: DS_LAUNCH starts a kernel on a stream with one syntax for nvcc,
// hipcc and the emulator. Launchers (the host functions each kernel file exports, declared in
// kernels/gpu/ops_*.h) take raw device pointers, sizes and an opaque stream (FlashInfer's rule),
// never allocate and never synchronise; the caller checks the launch (Runtime::check_launch).
#pragma once

#include "kernels/gpu/device.h"

namespace ds::gpu {

using Stream = void*;  // cudaStream_t / hipStream_t; unused under emulation

#if defined(DS_GPU_EMU)
#define DS_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  ((void)(stream), ::ds::emu::launch_kernel(#kernel, dim3(grid), dim3(block), (smem_bytes), kernel, __VA_ARGS__))
#elif defined(DS_GPU_HIP)
#define DS_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  kernel<<<dim3(grid), dim3(block), (smem_bytes), static_cast<hipStream_t>(stream)>>>(__VA_ARGS__)
#else
#define DS_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  kernel<<<dim3(grid), dim3(block), (smem_bytes), static_cast<cudaStream_t>(stream)>>>(__VA_ARGS__)
#endif

// Kernels that use more than 48 KiB of dynamic shared memory must say so once before launching.
template <typename K>
inline void allow_smem(K kernel, int bytes) {
#if defined(DS_GPU_CUDA)
  (void)cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
#elif defined(DS_GPU_HIP)
  (void)hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize, bytes);
#else
  (void)kernel;
  (void)bytes;
#endif
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace ds::gpu
