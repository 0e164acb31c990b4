// The gated delta rule token recurrence on the device (research/gpu-kernels-gdn-attention.md §1):
// a pure streaming kernel, so the only goal is to read and write the fp32 state [dv][dk] once.
// CPU reference: kernels/cpu/gdn_recurrent.cpp.
//
// A block (128 threads) owns kRowsPerBlock V-rows of one (sequence, value head); each row belongs
// to a 32-lane segment whose lanes hold NK elements of it in registers (float4 when rows allow),
// so a segment's load of a row is contiguous, and its reductions are width-32 shuffles: the same
// mapping on 32-wide warps and 64-wide wavefronts. The state tile stays in registers across all of
// the sequence's tokens. Per token and row, both dot products use the OLD state (LMD's identity):
//   delta = beta (v - alpha S.k),  o = alpha S.q + delta (k.q),  S <- alpha S + delta k.
#include "kernels/gpu/ops_gdn.h"

namespace ds::gpu {
namespace {

constexpr int kSeg = 32;                                       // lanes per state row
constexpr int kThreads = 128;                                  // 4 segments
constexpr int kRowsPerSeg = 4;                                 // rows each segment keeps in registers
constexpr int kRowsPerBlock = kThreads / kSeg * kRowsPerSeg;  // 16

struct alignas(16) F4 {
  float v[4];
};

DS_DEV float seg_sum(float v) {
  for (int o = kSeg / 2; o > 0; o >>= 1) v += shfl_xor(v, o, kSeg);
  return v;
}

// Column of the state row that a lane's element i holds: VEC contiguous floats per group.
template <int VEC>
DS_DEV int elem_col(int i, int sl) {
  return ((i / VEC) * kSeg + sl) * VEC + (i % VEC);
}

template <typename T, int NK, int VEC>
__global__ void gdn_recurrent_kernel(GdnLayer p, const int32_t* cu_seqlens, const int32_t* state_slots) {
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* o = static_cast<T*>(p.o);
  const int s = static_cast<int>(blockIdx.z), h = static_cast<int>(blockIdx.y);
  const int seg = static_cast<int>(threadIdx.x) / kSeg, sl = static_cast<int>(threadIdx.x) % kSeg;
  const int64_t begin = cu_seqlens[s], n = cu_seqlens[s + 1] - begin;
  if (n <= 0) return;  // uniform over the block
  const int kh = h / (p.Hv / p.Hk);
  float* S = p.state + static_cast<int64_t>(state_slots[s]) * p.slot_floats + static_cast<int64_t>(h) * p.dv * p.dk;

  int row[kRowsPerSeg];
  bool row_ok[kRowsPerSeg];
  for (int r = 0; r < kRowsPerSeg; ++r) {
    row[r] = static_cast<int>(blockIdx.x) * kRowsPerBlock + r * (kThreads / kSeg) + seg;
    row_ok[r] = row[r] < p.dv;
  }
  // Every lane runs every shuffle (rows past dv and columns past dk hold zeros): control flow
  // stays uniform, as 64-wide wavefronts with two segments need.
  float st[kRowsPerSeg][NK];
  for (int r = 0; r < kRowsPerSeg; ++r)
    for (int g = 0; g < NK / VEC; ++g) {
      const int c0 = elem_col<VEC>(g * VEC, sl);
      const bool ok = row_ok[r] && c0 < p.dk;
      const float* src = S + static_cast<int64_t>(row[r]) * p.dk + c0;
      if (VEC == 4) {
        F4 f = ok ? *reinterpret_cast<const F4*>(src) : F4{{0.0f, 0.0f, 0.0f, 0.0f}};
        for (int e = 0; e < VEC; ++e) st[r][g * VEC + e] = f.v[e];
      } else {
        st[r][g] = ok ? *src : 0.0f;
      }
    }

  for (int64_t t = begin; t < begin + n; ++t) {
    float qv[NK], kv[NK];
    float kq = 0.0f;
    for (int i = 0; i < NK; ++i) {
      const int c = elem_col<VEC>(i, sl);
      const int64_t col = static_cast<int64_t>(kh) * p.dk + c;
      qv[i] = c < p.dk ? to_f32(q[t * p.ldq + col]) : 0.0f;
      kv[i] = c < p.dk ? to_f32(k[t * p.ldk + col]) : 0.0f;
      kq += qv[i] * kv[i];
    }
    kq = seg_sum(kq);
    const float alpha = expf(p.g[t * p.ldg + h]), b = p.beta[t * p.ldbeta + h];
    for (int r = 0; r < kRowsPerSeg; ++r) {
      float pk = 0.0f, pq = 0.0f;
      for (int i = 0; i < NK; ++i) {
        pk += st[r][i] * kv[i];
        pq += st[r][i] * qv[i];
      }
      pk = seg_sum(pk);
      pq = seg_sum(pq);
      const int64_t vo = static_cast<int64_t>(h) * p.dv + row[r];
      const float vr = row_ok[r] ? to_f32(v[t * p.ldv + vo]) : 0.0f;
      const float delta = b * (vr - alpha * pk);
      for (int i = 0; i < NK; ++i) st[r][i] = alpha * st[r][i] + delta * kv[i];
      if (sl == 0 && row_ok[r]) o[t * p.ldo + vo] = from_f32<T>(alpha * pq + delta * kq);
    }
  }

  for (int r = 0; r < kRowsPerSeg; ++r)
    for (int g = 0; g < NK / VEC; ++g) {
      const int c0 = elem_col<VEC>(g * VEC, sl);
      if (!row_ok[r] || c0 >= p.dk) continue;
      float* dst = S + static_cast<int64_t>(row[r]) * p.dk + c0;
      if (VEC == 4) {
        F4 f;
        for (int e = 0; e < VEC; ++e) f.v[e] = st[r][g * VEC + e];
        *reinterpret_cast<F4*>(dst) = f;
      } else {
        *dst = st[r][g];
      }
    }
}

template <typename T, int NK, int VEC>
void launch_recurrent(const GdnLayer& p, const GdnSeqs& seqs, Stream stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.dv, kRowsPerBlock)), static_cast<unsigned>(p.Hv),
                  static_cast<unsigned>(seqs.num_seqs));
  auto k = gdn_recurrent_kernel<T, NK, VEC>;
  (void)stream;  // unused under emulation
  DS_LAUNCH(k, grid, kThreads, 0, stream, p, seqs.cu_seqlens, seqs.state_slots);
}

template <typename T>
void dispatch_recurrent(const GdnLayer& p, const GdnSeqs& seqs, Stream stream) {
  // float4 rows need 16-byte aligned rows in every slot.
  const bool vec4 = p.dk % 4 == 0 && p.slot_floats % 4 == 0 && reinterpret_cast<uintptr_t>(p.state) % 16 == 0;
  if (p.dk <= 32) return launch_recurrent<T, 1, 1>(p, seqs, stream);
  if (p.dk <= 64) return launch_recurrent<T, 2, 1>(p, seqs, stream);
  if (p.dk <= 128)
    return vec4 ? launch_recurrent<T, 4, 4>(p, seqs, stream) : launch_recurrent<T, 4, 1>(p, seqs, stream);
  return vec4 ? launch_recurrent<T, 8, 4>(p, seqs, stream) : launch_recurrent<T, 8, 1>(p, seqs, stream);
}

}  // namespace

void gdn_recurrent(const GdnLayer& p, const GdnSeqs& seqs, Stream stream) {
  if (seqs.num_seqs <= 0 || p.Hv <= 0 || p.dv <= 0) return;
  if (p.dtype == DType::kBF16) return dispatch_recurrent<bf16>(p, seqs, stream);
  if (p.dtype == DType::kF16) return dispatch_recurrent<f16>(p, seqs, stream);
  dispatch_recurrent<float>(p, seqs, stream);
}

}  // namespace ds::gpu
