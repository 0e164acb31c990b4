// The roofline's denominator: a kernel that reads a buffer once with 16-byte loads, as fast as the
// device allows (grid-stride, several loads in flight per thread), and writes one float per block
// so the reads cannot be optimised away. bench_gpu_ops reports every op against its bytes/s.
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_bandwidth.h"

namespace ds::gpu {

namespace {

struct alignas(16) F4 {
  float x, y, z, w;
};

__global__ void read_kernel(const F4* __restrict__ p, long long n, float* __restrict__ out) {
  float acc = 0.0f;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const F4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
    acc += (a.x + b.y) + (c.z + d.w);
  }
  for (; i < n; i += stride) acc += p[i].x;
  float* scratch = smem<float>();
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

}  // namespace

void launch_read_bandwidth(const void* data, size_t bytes, float* out, int blocks, Stream stream) {
  DS_LAUNCH(read_kernel, blocks, 256, kMaxWarp * sizeof(float), stream, static_cast<const F4*>(data),
            static_cast<long long>(bytes / sizeof(F4)), out);
}

}  // namespace ds::gpu
