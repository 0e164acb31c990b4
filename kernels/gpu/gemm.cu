// Portable dense GEMM y = a . w^T: a shared-memory tiled kernel (fp32 accumulate) for prefill and
// the grouped expert GEMMs, and a GEMV-shaped kernel for decode (M <= 8) that streams each weight
// row once through one warp. On CUDA the backend tries cuBLASLt first (src/backend/gpu/blas.h);
// these kernels are the fallback there and the only path on HIP and under emulation.
// Every output is summed in a fixed order (k ascending per thread, then a fixed butterfly), so the
// bytes do not depend on the schedule.
#include "kernels/gpu/gemm_args.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_moe.h"

namespace ds::gpu {

namespace {

constexpr int kBM = kMoeTileRows, kBN = 64, kBK = 32, kTileThreads = 256;
constexpr int kGemvMaxM = 8, kGemvCols = 8, kGemvThreads = 256;

template <typename TA, typename TW, typename TY>
struct Args {
  const TA* a;
  int64_t lda;
  const int32_t* a_rows;
  const TW* w;
  const void* const* w_table;
  const float* bias;
  TY* y;
  int64_t ldy;
  const int32_t* y_rows;
  bool silu_gate_in_y;
  int64_t M, N, K;
  const int32_t* tiles;
  const int32_t* num_tiles;
};

DS_DEV float silu(float x) { return x / (1.0f + expf(-x)); }

template <typename TA, typename TW, typename TY>
DS_DEV void store(const Args<TA, TW, TY>& g, int64_t r, int64_t n, float acc) {
  if (g.bias) acc += g.bias[n];
  TY* dst = g.y + (g.y_rows ? g.y_rows[r] : r) * g.ldy + n;
  if (g.silu_gate_in_y) acc *= silu(to_f32(*dst));
  *dst = from_f32<TY>(acc);
}

// 256 threads: a 16 x 16 grid of threads, each owning rows {ty, ty + 16} x cols {tx + 16 j}.
template <typename TA, typename TW, typename TY>
__global__ void gemm_tiled(Args<TA, TW, TY> g) {
  float* As = smem<float>();            // [kBK][kBM + 1], k-major so the inner loop reads rows
  float* Ws = As + kBK * (kBM + 1);     // [kBK][kBN + 1]
  int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM, rows = g.M - row0;
  const TW* w = g.w;
  if (g.tiles) {
    const int t = static_cast<int>(blockIdx.x);
    if (t >= *g.num_tiles) return;  // the grid is sized for the worst case
    w = static_cast<const TW*>(g.w_table[g.tiles[3 * t]]);
    row0 = g.tiles[3 * t + 1];
    rows = g.tiles[3 * t + 2];
  }
  if (rows > kBM) rows = kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
  for (int64_t k0 = 0; k0 < g.K; k0 += kBK) {
    for (int i = tid; i < kBM * kBK; i += kTileThreads) {
      const int r = i / kBK, kk = i % kBK;
      float v = 0.0f;
      if (r < rows && k0 + kk < g.K) {
        const int64_t src = g.a_rows ? g.a_rows[row0 + r] : row0 + r;
        v = to_f32(g.a[src * g.lda + k0 + kk]);
      }
      As[kk * (kBM + 1) + r] = v;
    }
    for (int i = tid; i < kBN * kBK; i += kTileThreads) {
      const int c = i / kBK, kk = i % kBK;
      float v = 0.0f;
      if (n0 + c < g.N && k0 + kk < g.K) v = to_f32(w[(n0 + c) * g.K + k0 + kk]);
      Ws[kk * (kBN + 1) + c] = v;
    }
    __syncthreads();
    for (int kk = 0; kk < kBK; ++kk) {
      const float a0 = As[kk * (kBM + 1) + ty], a1 = As[kk * (kBM + 1) + ty + 16];
      for (int j = 0; j < 4; ++j) {
        const float b = Ws[kk * (kBN + 1) + tx + 16 * j];
        acc[0][j] += a0 * b;
        acc[1][j] += a1 * b;
      }
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      const int r = ty + 16 * i;
      const int64_t n = n0 + tx + 16 * j;
      if (r < rows && n < g.N) store(g, row0 + r, n, acc[i][j]);
    }
}

// Decode: each warp owns output columns; lanes stride over k, so a weight row is read once,
// coalesced, for all M (<= 8) rows of a.
template <typename TA, typename TW, typename TY>
__global__ void gemm_gemv(Args<TA, TW, TY> g) {
  const int ws = warp_size(), lane = lane_id();
  const int warp = static_cast<int>(threadIdx.x) / ws, warps = static_cast<int>(blockDim.x) / ws;
  const int64_t n_end = (static_cast<int64_t>(blockIdx.x) + 1) * kGemvCols;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvCols + warp; n < n_end && n < g.N; n += warps) {
    float acc[kGemvMaxM] = {0, 0, 0, 0, 0, 0, 0, 0};
    const TW* wr = g.w + n * g.K;
    for (int64_t k = lane; k < g.K; k += ws) {
      const float wv = to_f32(wr[k]);
      for (int m = 0; m < kGemvMaxM; ++m)
        if (m < g.M) acc[m] += to_f32(g.a[(g.a_rows ? g.a_rows[m] : m) * g.lda + k]) * wv;
    }
    for (int m = 0; m < kGemvMaxM; ++m) {
      if (m >= g.M) break;
      const float s = warp_sum(acc[m]);
      if (lane == 0) store(g, m, n, s);
    }
  }
}

template <typename F>
void with_type(DType t, F f) {
  switch (t) {
    case DType::kBF16: f(bf16{}); break;
    case DType::kF16: f(f16{}); break;
    default: f(0.0f); break;
  }
}

template <typename TA, typename TW, typename TY>
void launch(const GemmCall& c, Stream stream) {
  const Args<TA, TW, TY> g{static_cast<const TA*>(c.a), c.lda, c.a_rows, static_cast<const TW*>(c.w), c.w_table,
                           c.bias, static_cast<TY*>(c.y), c.ldy, c.y_rows, c.silu_gate_in_y, c.M, c.N, c.K,
                           c.tiles, c.num_tiles};
  if (!c.tiles && c.M <= kGemvMaxM) {
    auto k = gemm_gemv<TA, TW, TY>;
    DS_LAUNCH(k, ceil_div(c.N, kGemvCols), kGemvThreads, 0, stream, g);
    return;
  }
  const int row_tiles = c.tiles ? c.max_tiles : ceil_div(c.M, kBM);
  const int smem_bytes = static_cast<int>(sizeof(float)) * kBK * (kBM + 1 + kBN + 1);
  auto k = gemm_tiled<TA, TW, TY>;
  DS_LAUNCH(k, dim3(static_cast<unsigned>(row_tiles), static_cast<unsigned>(ceil_div(c.N, kBN))), kTileThreads,
            smem_bytes, stream, g);
}

}  // namespace

void gemm(const GemmCall& c, Stream stream) {
  if (c.M <= 0 || c.N <= 0 || (c.tiles && c.max_tiles <= 0)) return;
  with_type(c.a_type, [&](auto a) {
    with_type(c.w_type, [&](auto w) {
      // y is either the activation type (linear) or fp32 (expert intermediates).
      if (c.y_type == DType::kF32) launch<decltype(a), decltype(w), float>(c, stream);
      else launch<decltype(a), decltype(w), decltype(a)>(c, stream);
    });
  });
}

void linear(const void* x, int64_t ldx, DType act, const void* w, DType wt, const float* bias, void* y, int64_t ldy,
            DType y_type, int64_t M, int64_t N, int64_t K, Stream stream) {
  GemmCall c;
  c.a = x;
  c.lda = ldx;
  c.a_type = act;
  c.w = w;
  c.w_type = wt;
  c.bias = bias;
  c.y = y;
  c.ldy = ldy;
  c.y_type = y_type;
  c.M = M;
  c.N = N;
  c.K = K;
  gemm(c, stream);
}

}  // namespace ds::gpu
