// Partial interleaved M-RoPE in place (qwen35-arch.md §3.3), one block per token: the block
// computes the token's cos/sin table once into shared memory, then rotates the pairs (i, i + half)
// of every head. The frequencies and the interleaved t/h/w row of each are computed on the host by
// the same kernels/common/rope.h functions the CPU reference uses and passed by value: a device
// powf may differ from the host's by an ulp, and at position 1e5 one ulp of inv_freq moves the
// angle by ~6e-3 rad. cos/sin are the precise cosf/sinf (full range reduction) in fp32, as the CPU.
#include "kernels/common/rope.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_norm.h"
#include "kernels/gpu/ops_norm_vec.h"

namespace ds::gpu {
namespace {

struct RopeTable {
  float inv_freq[kMaxRopeHalf];
  unsigned char row[kMaxRopeHalf];  // position row (0 t, 1 h, 2 w) of frequency j
};

template <typename T, int V>
__global__ void rope_kernel(T* x, int64_t ldx, const int64_t* pos, int heads, int head_dim, int half,
                            RopeTable tab) {
  float* cs = smem<float>();
  float* sn = cs + half;
  const int64_t t = blockIdx.x;
  const int nvh = half / V;  // vectors per half-rotation of one head
  const int n = heads * nvh;
  T* row = x + t * ldx;
  auto at = [&](int q) { return row + static_cast<int64_t>(q / nvh) * head_dim + (q % nvh) * V; };
  // The first pair is loaded before the table so that its latency overlaps the cos/sin.
  float a[V] = {}, b[V] = {};
  if (static_cast<int>(threadIdx.x) < n) {
    load_vec<T, V>(at(threadIdx.x), a);
    load_vec<T, V>(at(threadIdx.x) + half, b);
  }
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float ang = static_cast<float>(pos[t * 3 + tab.row[j]]) * tab.inv_freq[j];
    cs[j] = cosf(ang);
    sn[j] = sinf(ang);
  }
  __syncthreads();
  for (int q = threadIdx.x; q < n; q += blockDim.x) {
    T* v = at(q);
    if (q != static_cast<int>(threadIdx.x)) {
      load_vec<T, V>(v, a);
      load_vec<T, V>(v + half, b);
    }
    const int i = (q % nvh) * V;
    float ra[V], rb[V];
    DS_UNROLL
    for (int e = 0; e < V; ++e) {
      const float c = cs[i + e], s = sn[i + e];
      ra[e] = a[e] * c - b[e] * s;
      rb[e] = b[e] * c + a[e] * s;
    }
    store_vec<T, V>(v, ra);
    store_vec<T, V>(v + half, rb);
  }
}

}  // namespace

void rope_mrope(void* x, int64_t ldx, int64_t T, int heads, int head_dim, int rot_dim, double theta,
                const int32_t* mrope_section, const int64_t* pos, DType dtype, Stream stream) {
  const int half = rot_dim / 2;
  if (T <= 0 || heads <= 0 || half <= 0) return;
  RopeTable tab{};
  for (int j = 0; j < half && j < kMaxRopeHalf; ++j) {
    tab.inv_freq[j] = kernels::rope_inv_freq(j, rot_dim, theta);
    tab.row[j] = static_cast<unsigned char>(kernels::mrope_row(j, mrope_section));
  }
  const size_t smem_bytes = 2 * sizeof(float) * static_cast<size_t>(half);
  with_elem_type(dtype, [&](auto tag) {
    using T_ = decltype(tag);
    constexpr int kVec = static_cast<int>(16 / sizeof(T_));
    T_* xt = static_cast<T_*>(x);
    // Vectors must not straddle the rotation halves, and every head's start must stay aligned.
    const bool vec = half % kVec == 0 && vec_ok(kVec, sizeof(T_), head_dim, {{x, ldx}});
    if (vec) {
      auto k = rope_kernel<T_, kVec>;
      DS_LAUNCH(k, static_cast<unsigned>(T), threads_for(heads * (half / kVec), 256), smem_bytes, stream, xt, ldx,
                pos, heads, head_dim, half, tab);
    } else {
      auto k = rope_kernel<T_, 1>;
      DS_LAUNCH(k, static_cast<unsigned>(T), threads_for(static_cast<int64_t>(heads) * half, 256), smem_bytes,
                stream, xt, ldx, pos, heads, head_dim, half, tab);
    }
  });
}

}  // namespace ds::gpu
