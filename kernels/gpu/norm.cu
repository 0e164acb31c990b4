// RMSNorm (plain and zero-centred), the gated RMSNorm of GDN outputs and per-head l2-norm: one
// kernel, one pass over memory. Each segment (a row, or a head of a row) is read once into
// registers, reduced, scaled and written; only segments longer than kCache x kMaxThreads vectors
// read their tail twice. Short segments (heads, small hidden sizes) share a block, one G-lane
// group each (G <= 32 so a group never spans warps at warp size 32 or 64); long ones get a block.
#include "kernels/common/gdn.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_norm.h"
#include "kernels/gpu/ops_norm_vec.h"

namespace ds::gpu {
namespace {

// Vectors per thread kept in registers (x, and w / z prefetched with it so that their latency
// overlaps the reduction) between the reduction and the write. 2 x 3 x 8 floats fit the 128
// registers a 512-thread block allows.
constexpr int kCache = 2;
constexpr int kMaxThreads = 512;

template <typename T>
struct NormParams {
  const T* x;
  const T* z;
  T* out;
  const float* w;
  int64_t ldx, ldz, ldo;
  int64_t segments;  // rows * segs
  int segs;
  int seg_len;
  float eps, scale;
  int kind;  // NormKind
};

// Sum over the threads of one segment: a G-lane group (all lanes take part, live or not) or the block.
template <int G>
DS_DEV float group_sum(float v, float* scratch) {
  if constexpr (G == 0) {
    return block_sum(v, scratch);
  } else {
    DS_UNROLL
    for (int o = G / 2; o > 0; o >>= 1) v += shfl_xor(v, o, G);
    return v;
  }
}

template <typename T, int V, int G>
__global__ void __launch_bounds__(kMaxThreads) norm_kernel(NormParams<T> p) {
  const int tid = G ? static_cast<int>(threadIdx.x) % G : static_cast<int>(threadIdx.x);
  const int nthreads = G ? G : static_cast<int>(blockDim.x);
  const int64_t seg = G ? static_cast<int64_t>(blockIdx.x) * (blockDim.x / G) + threadIdx.x / G : blockIdx.x;
  // Spare groups of the last block still join their group's shuffles, with nothing to do.
  const bool live = seg < p.segments;
  const int64_t r = live ? seg / p.segs : 0;
  const int64_t off = live ? (seg % p.segs) * static_cast<int64_t>(p.seg_len) : 0;
  const T* x = p.x + r * p.ldx + off;
  const T* z = p.z + r * p.ldz + off;
  T* out = p.out + r * p.ldo + off;
  const int nv = live ? p.seg_len / V : 0;
  const int kind = p.kind;
  const bool use_w = kind != static_cast<int>(NormKind::kL2), use_z = kind == static_cast<int>(NormKind::kGatedRms);

  float xs[kCache][V], ws[kCache][V], zs[kCache][V];
  float ss = 0.0f;
  DS_UNROLL
  for (int c = 0; c < kCache; ++c) {
    const int v = tid + c * nthreads;
    if (v < nv) {
      load_vec<T, V>(x + v * V, xs[c]);
      if (use_w) load_vec<float, V>(p.w + v * V, ws[c]);
      if (use_z) load_vec<T, V>(z + v * V, zs[c]);
      DS_UNROLL
      for (int i = 0; i < V; ++i) ss += xs[c][i] * xs[c][i];
    }
  }
  for (int v = tid + kCache * nthreads; v < nv; v += nthreads) {
    float f[V];
    load_vec<T, V>(x + v * V, f);
    DS_UNROLL
    for (int i = 0; i < V; ++i) ss += f[i] * f[i];
  }
  ss = group_sum<G>(ss, smem<float>());
  if (!live) return;

  // IEEE sqrt and division (not rsqrt): the CPU reference's 1 / sqrt(...) to the last bit.
  const float inv = kind == static_cast<int>(NormKind::kL2)
                        ? 1.0f / sqrtf(ss + p.eps)
                        : 1.0f / sqrtf(ss / static_cast<float>(p.seg_len) + p.eps);
  // The same products, in the same order, as kernels/cpu/norm.cpp.
  auto apply = [&](int v, float (&f)[V], const float (&wv)[V], const float (&zv)[V]) {
    DS_UNROLL
    for (int i = 0; i < V; ++i) {
      const float xn = f[i] * inv;
      if (kind == static_cast<int>(NormKind::kRms))
        f[i] = xn * wv[i];
      else if (kind == static_cast<int>(NormKind::kRmsZeroCentred))
        f[i] = xn * (1.0f + wv[i]);
      else if (kind == static_cast<int>(NormKind::kGatedRms))
        f[i] = wv[i] * xn * kernels::siluf(zv[i]);
      else
        f[i] = xn * p.scale;
    }
    store_vec<T, V>(out + v * V, f);
  };
  DS_UNROLL
  for (int c = 0; c < kCache; ++c) {
    const int v = tid + c * nthreads;
    if (v < nv) apply(v, xs[c], ws[c], zs[c]);
  }
  for (int v = tid + kCache * nthreads; v < nv; v += nthreads) {
    float f[V], wv[V], zv[V];
    load_vec<T, V>(x + v * V, f);
    if (use_w) load_vec<float, V>(p.w + v * V, wv);
    if (use_z) load_vec<T, V>(z + v * V, zv);
    apply(v, f, wv, zv);
  }
}

template <typename T, int V>
void launch_norm(const NormParams<T>& p, Stream stream) {
  const int nv = p.seg_len / V;
  constexpr int kBlock = 256;
  if (nv <= kCache * 16) {  // whole segment in the registers of 16 lanes
    auto k = norm_kernel<T, V, 16>;
    DS_LAUNCH(k, ceil_div(p.segments, kBlock / 16), kBlock, 0, stream, p);
  } else if (nv <= kCache * 32) {
    auto k = norm_kernel<T, V, 32>;
    DS_LAUNCH(k, ceil_div(p.segments, kBlock / 32), kBlock, 0, stream, p);
  } else {  // a block per segment, kCache vectors per thread up to kMaxThreads threads
    auto k = norm_kernel<T, V, 0>;
    DS_LAUNCH(k, static_cast<unsigned>(p.segments), threads_for(ceil_div(nv, kCache), kMaxThreads),
              kMaxWarp * sizeof(float), stream, p);
  }
}

}  // namespace

void norm_rows(NormKind kind, const void* x, int64_t ldx, const void* z, int64_t ldz, const float* w, int64_t rows,
               int segs, int64_t seg_len, float eps, float scale, void* out, int64_t ldo, DType dtype, Stream stream) {
  if (rows <= 0 || segs <= 0 || seg_len <= 0) return;
  with_elem_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = static_cast<int>(16 / sizeof(T));
    NormParams<T> p{static_cast<const T*>(x), static_cast<const T*>(z ? z : x), static_cast<T*>(out), w,
                    ldx, z ? ldz : ldx, ldo, rows * segs, segs, static_cast<int>(seg_len), eps, scale,
                    static_cast<int>(kind)};
    // Segment starts must stay aligned too: seg_len is a multiple of the vector (checked as cols).
    bool vec = vec_ok(kVec, sizeof(T), seg_len, {{x, ldx}, {p.z, p.ldz}, {out, ldo}});
    if (kind != NormKind::kL2) vec = vec && reinterpret_cast<uintptr_t>(w) % 16 == 0;
    if (vec)
      launch_norm<T, kVec>(p, stream);
    else
      launch_norm<T, 1>(p, stream);
  });
}

}  // namespace ds::gpu
