// A minimal kernel that proves the toolchain, arch flags and launch path work on each target.
// `deltaserve selftest` will grow from here: every real kernel is checked against the CPU reference.
#include "kernels/gpu/arch.h"

namespace ds {
namespace gpu {

__global__ void probe_kernel(int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i * kWarpSize;
}

// Host entry with raw pointers (FlashInfer rule): launches on the default stream, no sync.
void launch_probe(int* device_out, int n) {
  const int threads = 128;
  probe_kernel<<<(n + threads - 1) / threads, threads>>>(device_out, n);
}

}  // namespace gpu
}  // namespace ds
