// The portable GEMM of gemm.cu as seen by its two users: the dense linear and the grouped expert
// GEMMs of moe.cu. One kernel covers both: rows may be gathered (a_rows) and scattered (y_rows),
// the weight may come from a per-tile table (grouped by expert), and the epilogue may multiply by
// silu of an fp32 gate already in y's place (the fused SwiGLU of the experts).
#pragma once

#include <cstdint>

#include "deltaserve/core/dtype.h"

namespace ds::gpu {

using Stream = void*;  // as kernels/gpu/launch.h

struct GemmCall {
  const void* a = nullptr;           // [rows][lda] of a_type
  int64_t lda = 0;
  const int32_t* a_rows = nullptr;   // row r reads a row a_rows[r] (null: r)
  DType a_type = DType::kF32;
  const void* w = nullptr;           // [N][K] of w_type (dense)
  const void* const* w_table = nullptr;  // grouped: tile's group -> weight [N][K]
  DType w_type = DType::kF32;
  const float* bias = nullptr;       // [N]
  void* y = nullptr;                 // [rows][ldy] of y_type
  int64_t ldy = 0;
  const int32_t* y_rows = nullptr;   // row r writes y row y_rows[r] (null: r)
  DType y_type = DType::kF32;
  bool silu_gate_in_y = false;       // y = silu(y_old) * acc (y fp32)
  int64_t M = 0, N = 0, K = 0;
  // Grouped: tiles[i] = {group, first row, rows} for i < *num_tiles; max_tiles bounds the grid.
  const int32_t* tiles = nullptr;
  const int32_t* num_tiles = nullptr;
  int max_tiles = 0;
};

// Launches the tiled kernel (or, dense with M <= 8, the GEMV-shaped one).
void gemm(const GemmCall& call, Stream stream);

}  // namespace ds::gpu
