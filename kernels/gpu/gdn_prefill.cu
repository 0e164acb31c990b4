// The chunked (WY) gated delta rule on the device: FLA's chunk_gated_delta_rule with chunks of
// kGdnChunk tokens, fused into one kernel per (V-tile, value head, sequence) that walks its
// sequence's chunks in order with the state tile in shared memory. CPU reference:
// kernels/cpu/gdn_chunked.cpp; formulas: qwen35-arch.md §3.4 step 6.
//
// Per chunk of L tokens with incoming state S0 (rows v of the tile, [dv][dk] layout) and
// gamma_i = sum_{m<=i} g_m:
//   A_ij = beta_i (k_i.k_j) e^{gamma_i - gamma_j} (j < i),  T = (I + A)^-1
//   V'   = T (beta (V - e^gamma (K S0^T)))     (= U - W S0 of the WY form, without forming W)
//   O    = e^gamma (Q S0^T) + (Q K^T (.) M) V'  with M_ij = e^{gamma_i - gamma_j}, j <= i
//   S    = e^{gamma_L} S0 + V'^T (e^{gamma_L - gamma} K)
// V' comes from forward substitution, one column per thread: columns are independent, so the
// solve needs no barrier. Every sum runs serially in one thread, so results do not depend on
// the schedule. All math is fp32; q/k/v/o are the activation dtype.
#include "kernels/gpu/ops_gdn.h"

namespace ds::gpu {
namespace {

constexpr int kC = kGdnChunk;
constexpr int kThreads = 256;

// Shared memory in floats: K and Q chunks [C][dk+1] (odd row stride: column walks hit distinct
// banks), the state tile [BV][dk+1], A / masked QK^T [C][C], X (right-hand side, then V')
// [C][BV], gamma, beta and the end-of-chunk decays [C] each. At dk = 128, BV = 32 that is 105 KiB:
// two blocks per H100/H200 SM.
struct ChunkSmem {
  int kld, bv;
  DS_HD int64_t k() const { return 0; }
  DS_HD int64_t q() const { return k() + int64_t{kC} * kld; }
  DS_HD int64_t s() const { return q() + int64_t{kC} * kld; }
  DS_HD int64_t a() const { return s() + int64_t{bv} * kld; }
  DS_HD int64_t x() const { return a() + int64_t{kC} * kC; }
  DS_HD int64_t gam() const { return x() + int64_t{kC} * bv; }
  DS_HD int64_t bet() const { return gam() + kC; }
  DS_HD int64_t dec() const { return bet() + kC; }
  DS_HD int64_t floats() const { return dec() + kC; }
};

DS_DEV float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
__global__ void gdn_chunked_kernel(GdnLayer p, const int32_t* cu_seqlens, const int32_t* state_slots, int bv) {
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* o = static_cast<T*>(p.o);
  const int s = static_cast<int>(blockIdx.z), h = static_cast<int>(blockIdx.y);
  const int v0 = static_cast<int>(blockIdx.x) * bv, tid = static_cast<int>(threadIdx.x);
  const int nt = static_cast<int>(blockDim.x);
  const int64_t begin = cu_seqlens[s], n = cu_seqlens[s + 1] - begin;
  if (n <= 0) return;  // uniform over the block
  const int dk = p.dk, kh = h / (p.Hv / p.Hk);
  const ChunkSmem lay{dk + 1, bv};
  const int kld = lay.kld;
  float* sm = smem<float>();
  float *Ks = sm + lay.k(), *Qs = sm + lay.q(), *St = sm + lay.s(), *A = sm + lay.a(), *X = sm + lay.x();
  float *gam = sm + lay.gam(), *bet = sm + lay.bet(), *dec = sm + lay.dec();
  float* S = p.state + static_cast<int64_t>(state_slots[s]) * p.slot_floats + static_cast<int64_t>(h) * p.dv * dk;
  const int vn = p.dv - v0 < bv ? p.dv - v0 : bv;  // valid rows of the tile

  for (int i = tid; i < bv * dk; i += nt) {
    const int r = i / dk, c = i % dk;
    St[r * kld + c] = r < vn ? S[static_cast<int64_t>(v0 + r) * dk + c] : 0.0f;
  }
  for (int64_t c0 = 0; c0 < n; c0 += kC) {
    const int L = n - c0 < kC ? static_cast<int>(n - c0) : kC;
    const int64_t t0 = begin + c0;
    for (int i = tid; i < L * dk; i += nt) {
      const int r = i / dk, c = i % dk;
      const int64_t col = static_cast<int64_t>(kh) * dk + c;
      Ks[r * kld + c] = to_f32(k[(t0 + r) * p.ldk + col]);
      Qs[r * kld + c] = to_f32(q[(t0 + r) * p.ldq + col]);
    }
    if (tid == 0) {
      float acc = 0.0f;
      for (int i = 0; i < L; ++i) {
        gam[i] = (acc += p.g[(t0 + i) * p.ldg + h]);
        bet[i] = p.beta[(t0 + i) * p.ldbeta + h];
      }
    }
    __syncthreads();

    // A (strictly lower) and the right-hand side X.
    const int na = L * L, nx = L * bv;
    for (int i = tid; i < na + nx; i += nt) {
      if (i < na) {
        const int r = i / L, c = i % L;
        if (c < r) A[r * kC + c] = bet[r] * dot(Ks + r * kld, Ks + c * kld, dk) * expf(gam[r] - gam[c]);
      } else {
        const int r = (i - na) / bv, c = (i - na) % bv;
        const float vr = c < vn ? to_f32(v[(t0 + r) * p.ldv + static_cast<int64_t>(h) * p.dv + v0 + c]) : 0.0f;
        X[r * bv + c] = bet[r] * (vr - expf(gam[r]) * dot(Ks + r * kld, St + c * kld, dk));
      }
    }
    __syncthreads();

    // V' = (I + A)^-1 X by forward substitution, column c in thread c.
    for (int c = tid; c < bv; c += nt)
      for (int r = 1; r < L; ++r) {
        float acc = X[r * bv + c];
        for (int j = 0; j < r; ++j) acc -= A[r * kC + j] * X[j * bv + c];
        X[r * bv + c] = acc;
      }
    __syncthreads();

    // A is free: masked, decayed Q K^T (diagonal included) and the end-of-chunk decays.
    for (int i = tid; i < na; i += nt) {
      const int r = i / L, c = i % L;
      if (c <= r) A[r * kC + c] = dot(Qs + r * kld, Ks + c * kld, dk) * expf(gam[r] - gam[c]);
    }
    for (int i = tid; i < L; i += nt) dec[i] = expf(gam[L - 1] - gam[i]);
    __syncthreads();

    // Outputs (they read S0), then the state carried to the next chunk.
    for (int i = tid; i < nx; i += nt) {
      const int r = i / bv, c = i % bv;
      if (c >= vn) continue;
      float acc = expf(gam[r]) * dot(Qs + r * kld, St + c * kld, dk);
      for (int j = 0; j <= r; ++j) acc += A[r * kC + j] * X[j * bv + c];
      o[(t0 + r) * p.ldo + static_cast<int64_t>(h) * p.dv + v0 + c] = from_f32<T>(acc);
    }
    __syncthreads();
    const float decay_all = expf(gam[L - 1]);
    for (int i = tid; i < bv * dk; i += nt) {
      const int r = i / dk, c = i % dk;
      float acc = decay_all * St[r * kld + c];
      for (int j = 0; j < L; ++j) acc += dec[j] * X[j * bv + r] * Ks[j * kld + c];
      St[r * kld + c] = acc;
    }
    __syncthreads();
  }
  for (int i = tid; i < vn * dk; i += nt) {
    const int r = i / dk, c = i % dk;
    S[static_cast<int64_t>(v0 + r) * dk + c] = St[r * kld + c];
  }
}

template <typename T>
void launch_chunked(const GdnLayer& p, const GdnSeqs& seqs, int bv, size_t smem_bytes, Stream stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.dv, bv)), static_cast<unsigned>(p.Hv),
                  static_cast<unsigned>(seqs.num_seqs));
  auto k = gdn_chunked_kernel<T>;
  allow_smem(k, static_cast<int>(smem_bytes));
  (void)stream;  // unused under emulation
  DS_LAUNCH(k, grid, kThreads, smem_bytes, stream, p, seqs.cu_seqlens, seqs.state_slots, bv);
}

}  // namespace

size_t gdn_chunked_smem_bytes(int dk, int v_tile) {
  return static_cast<size_t>(ChunkSmem{dk + 1, v_tile}.floats()) * sizeof(float);
}

bool gdn_chunked(const GdnLayer& p, const GdnSeqs& seqs, size_t max_smem_bytes, Stream stream) {
  // The widest V tile (fewest recomputations of A and Q K^T per head) that fits, at most 32 rows.
  int bv = 32;
  while (bv > 4 && bv / 2 >= p.dv) bv /= 2;
  while (bv > 4 && gdn_chunked_smem_bytes(p.dk, bv) > max_smem_bytes) bv /= 2;
  const size_t bytes = gdn_chunked_smem_bytes(p.dk, bv);
  if (bytes > max_smem_bytes) return false;
  if (seqs.num_seqs <= 0 || p.Hv <= 0 || p.dv <= 0) return true;
  if (p.dtype == DType::kBF16)
    launch_chunked<bf16>(p, seqs, bv, bytes, stream);
  else if (p.dtype == DType::kF16)
    launch_chunked<f16>(p, seqs, bv, bytes, stream);
  else
    launch_chunked<float>(p, seqs, bv, bytes, stream);
  return true;
}

}  // namespace ds::gpu
