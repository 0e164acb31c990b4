// Vendor differences between CUDA and HIP, kept to a few constexpr helpers so every kernel in
// kernels/gpu/ has one source for both (DESIGN.md §3). Included only by .cu files.
#pragma once

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#include <hip/hip_runtime.h>
#define DS_GPU_HIP 1
#else
#include <cuda_runtime.h>
#define DS_GPU_CUDA 1
#endif

namespace ds {
namespace gpu {

#if defined(DS_GPU_HIP)
// CDNA (gfx908/gfx90a) runs 64-wide wavefronts.
constexpr int kWarpSize = 64;
#else
constexpr int kWarpSize = 32;
#endif

}  // namespace gpu
}  // namespace ds
