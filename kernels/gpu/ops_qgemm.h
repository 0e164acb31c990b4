// Launchers of the Marlin-style quantized GEMM (kernels/gpu/qgemm.cu): GPTQ/AutoRound INT4/INT8
// weights repacked once at load into the tile layout of the device's matrix instruction, then
// y = x W^T on tensor cores (mma.sync on NVIDIA, MFMA on CDNA) with fp32 accumulation, for one
// weight (dense) or for the experts of a MoE layer grouped by expert (gate and up as one launch,
// down as another).
//
// Tile layout of a weight (n_pad = N rounded up to 64 columns, k_pad = K up to 16 rows): for each
// 64-column block nb and 16-row k-tile kt, the words every lane of a warp loads, contiguous:
//   packed[((nb * (k_pad / 16) + kt) * lanes + lane) * W + j], W = 32 * bits / lanes words,
// word j holding the lane's B-fragment elements of fragment 2j, 2j+1 (int4) or j (int8) in the
// order kernels/gpu/dequant.h decodes them. Scales [groups][n_pad] and zeros (magic + zero)
// [groups][n_pad] are of the activation type. Act-order weights are repacked in g_idx order
// (perm[r] = the checkpoint row of sorted row r) and their inputs gathered by the same perm.
#pragma once

#include <cstddef>
#include <cstdint>

#include "deltaserve/core/dtype.h"

namespace ds::gpu {

using Stream = void*;

constexpr int kQBlockN = 64;   // columns of one n-block
constexpr int kQTileK = 16;    // rows of one k-tile
constexpr int kQWarps = 4;     // warps of a block (they split the block's k-tiles)

struct QLayout {
  int lanes = 32;               // 32: mma.sync layout (NVIDIA); 64: MFMA layout (CDNA)
  int bits = 4;                 // 4 or 8
  DType act = DType::kBF16;     // f16 or bf16: activations, scales and zeros
  int64_t n = 0, k = 0;         // the weight's shape (y = x W^T, W [n][k])
  int64_t n_pad = 0, k_pad = 0;
  int64_t groups = 1;           // scale rows
  int64_t group_rows = 0;       // rows per group in sorted order (a multiple of 16), or k_pad
};
// Fills n_pad, k_pad, group_rows; group_size <= 0 means one group.
// The lanes of the build's matrix layout: 32 (CUDA), 64 (HIP), the launch warp size (emulation).
int qgemm_lanes();
QLayout make_qlayout(int lanes, int bits, DType act, int64_t n, int64_t k, int group_size, int64_t groups);
size_t qlayout_packed_bytes(const QLayout& l);
size_t qlayout_scale_bytes(const QLayout& l);  // scales (and zeros, the same size again)

// The repack, on the device. qweight/qzeros: the checkpoint's int32 tensors; scales: fp16/bf16
// [groups][n]; perm: [k] or null. zeros_out is left alone when sym.
void qgemm_repack(const QLayout& l, const int32_t* qweight, const int32_t* perm, uint32_t* packed,
                  Stream stream);
void qgemm_repack_scales(const QLayout& l, const uint16_t* scales, DType scales_dtype, const int32_t* qzeros, bool sym,
                         bool zeros_v2, uint16_t* scales_out, uint16_t* zeros_out, Stream stream);
// Act-order inputs: out[m][r] = x[m][perm[r]] for r < k (16-bit activations), out's ld = ldo.
void qgemm_gather_columns(const void* x, int64_t ldx, DType act, const int32_t* perm, int64_t m, int64_t k, void* out,
                          int64_t ldo, Stream stream);

// One weight (or one expert) in the tile layout.
struct QWeightPtrs {
  const uint32_t* packed = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* zeros = nullptr;  // null: symmetric (zero 2^(bits-1))
};

struct QGemmCall {
  QLayout layout;                  // every expert shares it
  QWeightPtrs w;                   // dense
  QWeightPtrs w2;                  // set: y = silu(x W^T) * (x W2^T) (gate and up, one launch; y of act)
  const QWeightPtrs* experts = nullptr;   // grouped: device table indexed by the tiles' expert
  const QWeightPtrs* experts2 = nullptr;  // grouped, set: the up weights (y = silu(gate) * up)
  const int32_t* tiles = nullptr;  // grouped: [max_tiles][3] (expert, first row, rows <= 32)
  const int32_t* num_tiles = nullptr;
  int max_tiles = 0;
  const int32_t* a_rows = nullptr;  // x row of each row (grouped), or null: the row itself
  const int32_t* y_rows = nullptr;  // y row of each row, or null
  const void* x = nullptr;          // [.][k] of layout.act
  int64_t ldx = 0;
  void* y = nullptr;                // [.][n] of y_type (layout.act or f32)
  int64_t ldy = 0;
  DType y_type = DType::kF32;
  const float* bias = nullptr;      // [n]
  int64_t m = 0;                    // dense: rows of x and y; grouped: tokens (0: unknown)
  // Split-K over blocks when the grid would not fill the device: fp32 partials in `workspace`
  // (any scratch), arrival counters in `counters` (zeroed once at allocation; each use leaves
  // them zero). target_blocks: about two per multiprocessor.
  float* workspace = nullptr;
  size_t workspace_bytes = 0;
  int32_t* counters = nullptr;
  int num_counters = 0;
  int target_blocks = 0;
};

// The splits qgemm() will use for this call (1: no cross-block reduction).
int qgemm_splits(const QGemmCall& c);
// Launches the GEMM; the caller checks the launch.
void qgemm(const QGemmCall& c, Stream stream);

}  // namespace ds::gpu
