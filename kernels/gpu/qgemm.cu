// The Marlin-style quantized GEMM (ops_qgemm.h): y = x W^T with W in GPTQ/AutoRound INT4/INT8,
// repacked at load so that every lane's B-fragment words for a 64-column x 16-row tile are one
// vector load, dequantised in registers by bit tricks (dequant.h), multiplied on the matrix units
// (mma.h) with fp32 accumulators.
//
// A block is four warps over one 64-column block and one row tile (16, 32 or 64 rows; a MoE tile
// of up to 32 rows of one expert); its warps take turns of kKU k-tiles (all of a turn's weight words
// are loaded before any is used, so each warp keeps kKU * 16 * 64 * bits / 8 bytes in flight) and
// add their partial tiles in warp order through shared memory. A MoE layer's gate and up run as one
// launch over both weights (x read once), writing silu(gate) * up. When the grid would leave the device
// idle, blocks also split K: each split writes its fp32 partial, and the last split to arrive
// (an atomic arrival count per tile, reset by that block) sums the partials in split order. No
// block ever waits for another, so any residency works, and the sums do not depend on the schedule.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/gpu/dequant.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_qgemm.h"

namespace ds::gpu {

namespace {

constexpr int kKU = 4;  // k-tiles a warp loads per turn

struct KArgs {
  QWeightPtrs w, w2;
  const QWeightPtrs* experts;
  const QWeightPtrs* experts2;
  const int32_t* tiles;
  const int32_t* num_tiles;
  const int32_t* a_rows;
  const int32_t* y_rows;
  const void* x;
  int64_t ldx;
  void* y;
  int64_t ldy;
  const float* bias;
  int64_t m, n, k, n_pad, group_rows;
  int kt_total, nblocks, tiles_y, splits, kt_per_split;
  bool x_pairs;  // x rows 4-byte aligned and k even: A element pairs load as one word
  float* ws;
  int32_t* counters;
};

struct alignas(16) Words4 {
  uint32_t v[4];
};
struct alignas(8) Words2 {
  uint32_t v[2];
};

template <int W>
DS_DEV void load_words(const uint32_t* p, uint32_t* out) {
  if constexpr (W % 4 == 0) {
    DS_UNROLL
    for (int i = 0; i < W / 4; ++i) {
      const Words4 t = reinterpret_cast<const Words4*>(p)[i];
      DS_UNROLL
      for (int j = 0; j < 4; ++j) out[4 * i + j] = t.v[j];
    }
  } else {
    const Words2 t = *reinterpret_cast<const Words2*>(p);
    out[0] = t.v[0];
    out[1] = t.v[1];
  }
}

// This lane's A fragments of k-tile kt. aoff[mf][s]: element offset of the lane's row s (the
// fragment's row base + 8 s) in x, or -1 past the tile's rows.
template <class Mma, typename T, int MF>
DS_DEV void load_a(const KArgs& a, const int64_t (&aoff)[MF][2], int kt, h2 (&af)[MF][Mma::kARegs]) {
  const auto* x = static_cast<const uint16_t*>(a.x);
  const int lane = lane_id();
  DS_UNROLL
  for (int mf = 0; mf < MF; ++mf) {
    DS_UNROLL
    for (int r = 0; r < Mma::kARegs; ++r) {
      const int e = 2 * r;
      const int slot = (Mma::a_row(lane, e) - Mma::a_row(lane, 0)) >> 3;
      const int64_t off = aoff[mf][slot];
      const int64_t col = static_cast<int64_t>(kt) * kQTileK + Mma::a_col(lane, e);
      uint32_t v = 0;
      if (off >= 0 && col < a.k) {
        if (a.x_pairs) {
          __builtin_memcpy(&v, x + off + col, 4);
        } else {
          v = x[off + col];
          if (col + 1 < a.k) v |= static_cast<uint32_t>(x[off + col + 1]) << 16;
        }
      }
      af[mf][r].bits = v;
    }
  }
}

DS_DEV float silu(float g) { return g / (1.0f + fast_exp(-g)); }

// kNW weights over the same x: 1, or 2 for a MoE layer's gate and up (y = silu(x G^T) * (x U^T)).
template <class Mma, typename T, typename Y, int kBits, int MF, int kNW>
__global__ void qgemm_kernel(KArgs a) {
  constexpr int L = Mma::kLanes, KN = Mma::kN, NF = kQBlockN / KN, W = 32 * kBits / L, BM = 16 * MF;
  constexpr int FW = kBits == 4 ? 2 : 1;  // B fragments per word
  constexpr int kTile = BM * kQBlockN;    // floats of one output tile
  static_assert(NF == W * FW, "a lane's words cover the block's fragments");
  float* red = smem<float>();  // [kNW][BM][kQBlockN]
  int* last_flag = reinterpret_cast<int*>(red + kNW * kTile);
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x) / L, tid = static_cast<int>(threadIdx.x);
  const int ty = static_cast<int>(blockIdx.y), nb = static_cast<int>(blockIdx.x);
  const int split = static_cast<int>(blockIdx.z);

  QWeightPtrs w[kNW];
  w[0] = a.w;
  if constexpr (kNW == 2) w[1] = a.w2;
  int64_t row0 = 0;
  int rows = 0;
  if (a.tiles != nullptr) {
    if (ty >= *a.num_tiles) return;  // the whole block: fewer tiles than the bound
    const int e = a.tiles[3 * ty];
    w[0] = a.experts[e];
    if constexpr (kNW == 2) w[1] = a.experts2[e];
    row0 = a.tiles[3 * ty + 1];
    rows = a.tiles[3 * ty + 2];
  } else {
    row0 = static_cast<int64_t>(ty) * BM;
    rows = a.m - row0 < BM ? static_cast<int>(a.m - row0) : BM;
  }

  int64_t aoff[MF][2];
  DS_UNROLL
  for (int mf = 0; mf < MF; ++mf)
    DS_UNROLL
    for (int s = 0; s < 2; ++s) {
      const int r = mf * 16 + Mma::a_row(lane, 0) + 8 * s;
      aoff[mf][s] = r < rows ? (a.a_rows ? a.a_rows[row0 + r] : row0 + r) * a.ldx : -1;
    }

  float acc[kNW][MF][NF][4];
  DS_UNROLL
  for (int v = 0; v < kNW; ++v)
    DS_UNROLL
    for (int mf = 0; mf < MF; ++mf)
      DS_UNROLL
      for (int f = 0; f < NF; ++f)
        DS_UNROLL
        for (int e = 0; e < 4; ++e) acc[v][mf][f][e] = 0.0f;

  const int kt0 = split * a.kt_per_split;
  const int kt1 = kt0 + a.kt_per_split < a.kt_total ? kt0 + a.kt_per_split : a.kt_total;
  const int64_t ncol0 = static_cast<int64_t>(nb) * kQBlockN;
  const h2 zsym = h2_splat(from_f32<T>(code_magic<T, kBits>() + static_cast<float>(1 << (kBits - 1))));
  // Groups change every tiles_per_group k-tiles; a warp's k-tiles only increase, so the group is
  // recomputed (one 32-bit division) only when a tile crosses into the next.
  const int tiles_per_group = static_cast<int>(a.group_rows / kQTileK);
  int group_end = -1;  // first k-tile past the loaded group
  h2 sc[kNW][NF], zc[kNW][NF];
  // This block's column block, this lane's words; a k-tile is L * W words further.
  const uint32_t* wlane[kNW];
  DS_UNROLL
  for (int v = 0; v < kNW; ++v)
    wlane[v] = w[v].packed + static_cast<int64_t>(nb) * a.kt_total * (L * W) + lane * W;

  for (int base = kt0 + warp * kKU; base < kt1; base += kQWarps * kKU) {
    uint32_t q[kNW][kKU][W];
    DS_UNROLL
    for (int v = 0; v < kNW; ++v)
      DS_UNROLL
      for (int u = 0; u < kKU; ++u)
        if (base + u < kt1) load_words<W>(wlane[v] + static_cast<int64_t>(base + u) * (L * W), q[v][u]);
    DS_UNROLL
    for (int u = 0; u < kKU; ++u) {
      const int kt = base + u;
      if (kt >= kt1) continue;
      if (kt >= group_end) {
        const int64_t g = kt / tiles_per_group;
        group_end = static_cast<int>((g + 1) * tiles_per_group);
        DS_UNROLL
        for (int v = 0; v < kNW; ++v)
          DS_UNROLL
          for (int f = 0; f < NF; ++f) {
            const int64_t i = g * a.n_pad + ncol0 + f * KN + Mma::b_col(lane, 0);
            sc[v][f] = h2_splat(T{w[v].scales[i]});
            zc[v][f] = w[v].zeros ? h2_splat(T{w[v].zeros[i]}) : zsym;
          }
      }
      h2 af[MF][Mma::kARegs];
      load_a<Mma, T, MF>(a, aoff, kt, af);
      DS_UNROLL
      for (int v = 0; v < kNW; ++v)
        DS_UNROLL
        for (int j = 0; j < W; ++j) {
          h2 c[2 * FW];
          if constexpr (kBits == 4) codes_int4<T>(q[v][u][j], c);
          else codes_int8<T>(q[v][u][j], c);
          DS_UNROLL
          for (int h = 0; h < FW; ++h) {
            const int f = FW * j + h;
            const h2 b[2] = {h2_mul<T>(h2_sub<T>(c[2 * h], zc[v][f]), sc[v][f]),
                             h2_mul<T>(h2_sub<T>(c[2 * h + 1], zc[v][f]), sc[v][f])};
            DS_UNROLL
            for (int mf = 0; mf < MF; ++mf) mma<Mma, T>(acc[v][mf][f], af[mf], b);
          }
        }
    }
  }

  // Warps add their tiles in warp order.
  for (int wv = 0; wv < kQWarps; ++wv) {
    if (warp == wv) {
      DS_UNROLL
      for (int v = 0; v < kNW; ++v)
        DS_UNROLL
        for (int mf = 0; mf < MF; ++mf)
          DS_UNROLL
          for (int f = 0; f < NF; ++f)
            DS_UNROLL
            for (int e = 0; e < 4; ++e) {
              const int i =
                  v * kTile + (mf * 16 + Mma::c_row(lane, e)) * kQBlockN + f * KN + Mma::c_col(lane, e);
              red[i] = wv == 0 ? acc[v][mf][f][e] : red[i] + acc[v][mf][f][e];
            }
    }
    __syncthreads();
  }

  const int nthreads = static_cast<int>(blockDim.x), elems = rows * kQBlockN;
  if (a.splits > 1) {
    const int64_t tile = static_cast<int64_t>(ty) * a.nblocks + nb;
    float* part = a.ws + (static_cast<int64_t>(split) * a.tiles_y * a.nblocks + tile) * (kNW * kTile);
    for (int v = 0; v < kNW; ++v)
      for (int i = tid; i < elems; i += nthreads) part[v * kTile + i] = red[v * kTile + i];
    thread_fence();
    __syncthreads();
    if (tid == 0) {
      const int before = atomic_add(&a.counters[tile], 1);
      const bool last = before == a.splits - 1;
      if (last) a.counters[tile] = 0;  // ready for the next launch
      *last_flag = last ? 1 : 0;
    }
    __syncthreads();
    if (*last_flag == 0) return;
    thread_fence();
    for (int v = 0; v < kNW; ++v)
      for (int i = tid; i < elems; i += nthreads) {
        float s = 0.0f;
        for (int sp = 0; sp < a.splits; ++sp) {
          const volatile float* p =
              a.ws + (static_cast<int64_t>(sp) * a.tiles_y * a.nblocks + tile) * (kNW * kTile);
          s += p[v * kTile + i];
        }
        red[v * kTile + i] = s;  // this thread's own elements: no barrier needed
      }
  }
  for (int i = tid; i < elems; i += nthreads) {
    const int r = i / kQBlockN;
    const int64_t n = ncol0 + i % kQBlockN;
    if (n >= a.n) continue;
    float v = red[i] + (a.bias ? a.bias[n] : 0.0f);
    if constexpr (kNW == 2) v = silu(v) * red[kTile + i];
    const int64_t yr = a.y_rows ? a.y_rows[row0 + r] : row0 + r;
    static_cast<Y*>(a.y)[yr * a.ldy + n] = from_f32<Y>(v);
  }
}

// ---- repack ---------------------------------------------------------------------------------

template <class Mma>
__global__ void repack_kernel(QLayout l, const int32_t* qweight, const int32_t* perm, uint32_t* packed,
                              int64_t words) {
  constexpr int L = Mma::kLanes, KN = Mma::kN;
  const int W = 32 * l.bits / L, codes = 32 / l.bits;
  const int64_t kt_total = l.k_pad / kQTileK;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t idx = first; idx < words; idx += stride) {
    const int j = static_cast<int>(idx % W), lane = static_cast<int>((idx / W) % L);
    const int64_t kt = (idx / (static_cast<int64_t>(W) * L)) % kt_total;
    const int64_t nb = idx / (static_cast<int64_t>(W) * L * kt_total);
    uint32_t word = 0;
    for (int p = 0; p < codes; ++p) {
      const int f = l.bits == 4 ? 2 * j + int4_code_frag(p) : j;
      const int e = l.bits == 4 ? int4_code_elem(p) : int8_code_elem(p);
      const int64_t k = kt * kQTileK + Mma::b_row(lane, e);
      const int64_t n = nb * kQBlockN + f * KN + Mma::b_col(lane, e);
      if (k >= l.k || n >= l.n) continue;  // padding: code 0 (its x column is 0 or its y unused)
      const uint32_t code = kernels::gptq_qweight_code(qweight, l.n, l.bits, perm ? perm[k] : k, n);
      word |= code << (p * l.bits);
    }
    packed[idx] = word;
  }
}

template <typename T>
__global__ void repack_scales_kernel(QLayout l, const uint16_t* scales, bool bf16_scales, const int32_t* qzeros,
                                     bool sym, bool zeros_v2, uint16_t* scales_out, uint16_t* zeros_out) {
  const int64_t total = l.groups * l.n_pad, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const float magic = l.bits == 4 ? code_magic<T, 4>() : code_magic<T, 8>();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t g = i / l.n_pad, n = i % l.n_pad;
    float s = 0.0f;
    int32_t z = 0;
    if (n < l.n) {
      const uint16_t raw = scales[g * l.n + n];
      s = bf16_scales ? to_f32(bf16{raw}) : to_f32(f16{raw});
      if (!sym) z = kernels::gptq_zero(qzeros, l.n, l.bits, false, zeros_v2, g, n);
    }
    scales_out[i] = from_f32<T>(s).bits;
    if (!sym) zeros_out[i] = from_f32<T>(magic + static_cast<float>(z)).bits;
  }
}

__global__ void gather_columns_kernel(const uint16_t* x, int64_t ldx, const int32_t* perm, int64_t k, uint16_t* out,
                                      int64_t ldo) {
  const int64_t m = blockIdx.y;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < k;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[m * ldo + r] = x[m * ldx + perm[r]];
}

// ---- dispatch ---------------------------------------------------------------------------------

// Row tile: 16, 32 or 64 rows. MoE tiles hold up to 32 rows of one expert, and no more than the
// pass's tokens (a token picks an expert once), so decode-sized passes take 16-row tiles.
int choose_mf(const QGemmCall& c) {
  if (c.tiles != nullptr) return c.m > 0 && c.m <= 16 ? 1 : 2;
  return c.m <= 16 ? 1 : c.m <= 32 ? 2 : 4;
}

bool dual(const QGemmCall& c) { return c.experts2 != nullptr || c.w2.packed != nullptr; }

struct Grid {
  int nblocks = 0, tiles_y = 0, kt_total = 0, splits = 1, kt_per_split = 0;
};

Grid plan_grid(const QGemmCall& c) {
  Grid g;
  const int bm = 16 * choose_mf(c);
  g.nblocks = static_cast<int>(c.layout.n_pad / kQBlockN);
  g.tiles_y = c.tiles ? c.max_tiles : ceil_div(c.m, bm);
  g.kt_total = static_cast<int>(c.layout.k_pad / kQTileK);
  g.kt_per_split = g.kt_total;
  const int64_t blocks = static_cast<int64_t>(g.nblocks) * g.tiles_y;
  if (c.workspace == nullptr || c.counters == nullptr || blocks <= 0 || blocks >= c.target_blocks ||
      blocks > c.num_counters)
    return g;
  const size_t split_bytes =
      static_cast<size_t>(blocks) * static_cast<size_t>(bm) * kQBlockN * sizeof(float) * (dual(c) ? 2 : 1);
  int64_t s = (c.target_blocks + blocks - 1) / blocks;
  s = s < g.kt_total / 8 ? s : g.kt_total / 8;  // at least 8 k-tiles per split
  const int64_t fit = static_cast<int64_t>(c.workspace_bytes / split_bytes);
  s = s < fit ? s : fit;
  if (s <= 1) return g;
  g.kt_per_split = ceil_div(g.kt_total, s);
  g.splits = ceil_div(g.kt_total, g.kt_per_split);
  if (g.splits <= 1) g.kt_per_split = g.kt_total, g.splits = 1;
  return g;
}

template <class Mma, typename T, typename Y, int kBits, int MF, int kNW>
void launch(const KArgs& k, dim3 grid, Stream stream) {
  auto kern = qgemm_kernel<Mma, T, Y, kBits, MF, kNW>;
  const int smem_bytes = kNW * 16 * MF * kQBlockN * static_cast<int>(sizeof(float)) + 16;
  DS_LAUNCH(kern, grid, kQWarps * Mma::kLanes, static_cast<size_t>(smem_bytes), stream, k);
}

template <class Mma, typename T, typename Y, int kBits>
void by_mf(const QGemmCall& c, int mf, const KArgs& k, dim3 grid, Stream s) {
  if constexpr (std::is_same_v<Y, T>) {
    if (dual(c)) {  // MoE gate + up: tiles of up to 32 rows, output in the activation type
      if (mf == 1) launch<Mma, T, Y, kBits, 1, 2>(k, grid, s);
      else launch<Mma, T, Y, kBits, 2, 2>(k, grid, s);
      return;
    }
  }
  if (mf == 1) launch<Mma, T, Y, kBits, 1, 1>(k, grid, s);
  else if (mf == 2) launch<Mma, T, Y, kBits, 2, 1>(k, grid, s);
  else launch<Mma, T, Y, kBits, 4, 1>(k, grid, s);
}

template <class Mma, typename T>
void by_type(const QGemmCall& c, int mf, const KArgs& k, dim3 grid, Stream s) {
  const bool f32_out = c.y_type == DType::kF32;
  if (c.layout.bits == 4) {
    if (f32_out) by_mf<Mma, T, float, 4>(c, mf, k, grid, s);
    else by_mf<Mma, T, T, 4>(c, mf, k, grid, s);
  } else {
    if (f32_out) by_mf<Mma, T, float, 8>(c, mf, k, grid, s);
    else by_mf<Mma, T, T, 8>(c, mf, k, grid, s);
  }
}

template <class Mma>
void by_act(const QGemmCall& c, int mf, const KArgs& k, dim3 grid, Stream s) {
  if (c.layout.act == DType::kF16) by_type<Mma, f16>(c, mf, k, grid, s);
  else by_type<Mma, bf16>(c, mf, k, grid, s);
}

template <typename F>
void with_layout(int lanes, F f) {
#if defined(DS_GPU_EMU)
  if (lanes == 32) f(MmaNv{});
  else f(MmaCdna{});
#else
  (void)lanes;
  f(MmaNative{});
#endif
}

}  // namespace

int qgemm_lanes() {
#if defined(DS_GPU_EMU)
  return ::ds::emu::options().warp_size;
#else
  return MmaNative::kLanes;
#endif
}

QLayout make_qlayout(int lanes, int bits, DType act, int64_t n, int64_t k, int group_size, int64_t groups) {
  QLayout l;
  l.lanes = lanes;
  l.bits = bits;
  l.act = act;
  l.n = n;
  l.k = k;
  l.n_pad = (n + kQBlockN - 1) / kQBlockN * kQBlockN;
  l.k_pad = (k + kQTileK - 1) / kQTileK * kQTileK;
  l.groups = groups;
  l.group_rows = group_size > 0 ? group_size : l.k_pad;
  return l;
}
size_t qlayout_packed_bytes(const QLayout& l) {
  return static_cast<size_t>(l.n_pad * l.k_pad) * static_cast<size_t>(l.bits) / 8;
}
size_t qlayout_scale_bytes(const QLayout& l) { return static_cast<size_t>(l.groups * l.n_pad) * 2; }

void qgemm_repack(const QLayout& l, const int32_t* qweight, const int32_t* perm, uint32_t* packed,
                  Stream stream) {
  const int64_t words = static_cast<int64_t>(qlayout_packed_bytes(l) / 4);
  if (words <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(words, 256), 65535));
  with_layout(l.lanes, [&](auto mma) {
    auto k = repack_kernel<decltype(mma)>;
    DS_LAUNCH(k, blocks, 256, 0, stream, l, qweight, perm, packed, words);
  });
}

void qgemm_repack_scales(const QLayout& l, const uint16_t* scales, DType scales_dtype, const int32_t* qzeros, bool sym,
                         bool zeros_v2, uint16_t* scales_out, uint16_t* zeros_out, Stream stream) {
  const int64_t total = l.groups * l.n_pad;
  if (total <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(total, 256), 65535));
  const bool bf16_scales = scales_dtype == DType::kBF16;
  if (l.act == DType::kF16) {
    auto k = repack_scales_kernel<f16>;
    DS_LAUNCH(k, blocks, 256, 0, stream, l, scales, bf16_scales, qzeros, sym, zeros_v2, scales_out, zeros_out);
  } else {
    auto k = repack_scales_kernel<bf16>;
    DS_LAUNCH(k, blocks, 256, 0, stream, l, scales, bf16_scales, qzeros, sym, zeros_v2, scales_out, zeros_out);
  }
}

void qgemm_gather_columns(const void* x, int64_t ldx, DType, const int32_t* perm, int64_t m, int64_t k, void* out,
                          int64_t ldo, Stream stream) {
  if (m <= 0 || k <= 0) return;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(k, 256), 64)), static_cast<unsigned>(m));
  DS_LAUNCH(gather_columns_kernel, grid, 256, 0, stream, static_cast<const uint16_t*>(x), ldx, perm, k,
            static_cast<uint16_t*>(out), ldo);
}

int qgemm_splits(const QGemmCall& c) { return plan_grid(c).splits; }

void qgemm(const QGemmCall& c, Stream stream) {
  if ((c.tiles == nullptr && c.m <= 0) || c.layout.n <= 0) return;
  if (dual(c) && c.y_type != c.layout.act) {
    std::fprintf(stderr, "qgemm: gate + up writes the activation type\n");
    std::abort();
  }
  const Grid g = plan_grid(c);
  KArgs k{};
  k.w = c.w;
  k.w2 = c.w2;
  k.experts = c.experts;
  k.experts2 = c.experts2;
  k.tiles = c.tiles;
  k.num_tiles = c.num_tiles;
  k.a_rows = c.a_rows;
  k.y_rows = c.y_rows;
  k.x = c.x;
  k.ldx = c.ldx;
  k.y = c.y;
  k.ldy = c.ldy;
  k.bias = c.bias;
  k.m = c.m;
  k.n = c.layout.n;
  k.k = c.layout.k;
  k.n_pad = c.layout.n_pad;
  k.group_rows = c.layout.group_rows;
  k.kt_total = g.kt_total;
  k.nblocks = g.nblocks;
  k.tiles_y = g.tiles_y;
  k.splits = g.splits;
  k.kt_per_split = g.kt_per_split;
  k.x_pairs = c.layout.k % 2 == 0 && c.ldx % 2 == 0 && reinterpret_cast<uintptr_t>(c.x) % 4 == 0;
  k.ws = c.workspace;
  k.counters = c.counters;
  const dim3 grid(static_cast<unsigned>(g.nblocks), static_cast<unsigned>(g.tiles_y),
                  static_cast<unsigned>(g.splits));
  const int mf = choose_mf(c);
  with_layout(c.layout.lanes, [&](auto mma) { by_act<decltype(mma)>(c, mf, k, grid, stream); });
}

}  // namespace ds::gpu
