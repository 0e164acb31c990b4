// Launchers of the dense linear (gemm.cu) and of the MoE router and experts (moe.cu). Raw device
// pointers; matrices are rows x cols with a leading dimension in elements. Activations are of
// `act` (f32, bf16, f16), weights [n][k] of `wt` (f32, bf16, f16), everything computed in fp32 with
// a fixed summation order, so a result does not depend on the schedule. Launchers never allocate
// or synchronise; the caller checks the launch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "deltaserve/core/dtype.h"

namespace ds::gpu {

using Stream = void*;  // as kernels/gpu/launch.h

// y[m][n] = x[m][k] . w[n][k]^T (+ bias[n]); M <= 8 streams the weight once (GEMV shape), larger M
// runs a shared-memory tiled GEMM. y is of y_type: act, or f32 (the router's logits).
void linear(const void* x, int64_t ldx, DType act, const void* w, DType wt, const float* bias, void* y, int64_t ldy,
            DType y_type, int64_t M, int64_t N, int64_t K, Stream stream);

// Router, one token per block: p = softmax(logits[t][0..E)) in fp32, the top_k experts by (p desc,
// id asc) into ids[t][top_k] and their p (divided by their sum when renormalize) into
// weights[t][0..top_k). E <= kMaxExperts, top_k <= kMaxTopK.
constexpr int kMaxExperts = 512;
constexpr int kMaxTopK = 16;
void moe_route(const float* logits, int64_t ld_logits, int64_t T, int E, int top_k, bool renormalize, int32_t* ids,
               float* weights, int64_t ld_weights, Stream stream);

// The experts of a token range. Pairs (token, slot) are numbered p = t * top_k + s. Their grouping
// by expert (counting sort, stable in p, no float atomics) and the tiles of the grouped GEMMs live
// in a MoePlan carved from device scratch.
struct MoeShape {
  int64_t T = 0;         // tokens in this pass
  int top_k = 0;
  int E = 0;             // experts
  int64_t H = 0, I = 0;  // hidden and expert intermediate sizes
};
constexpr int kMoeTileRows = 32;  // rows of one grouped-GEMM tile
// Bytes of scratch for the grouping and tile list of `pairs` pairs over E experts (16-aligned).
size_t moe_plan_bytes(int64_t pairs, int E);
// Bytes of fp32 work per pair: silu(gate) * up [I] (sorted order) + down output [H] (pair order).
inline size_t moe_work_bytes_per_pair(int64_t H, int64_t I) { return static_cast<size_t>(I + H) * 4; }

// The grouping alone (for the quantized experts, kernels/gpu/qgemm.cu): pairs sorted by expert
// (stable), each expert's rows cut into tiles of kMoeTileRows, in plan_mem (moe_plan_bytes).
struct MoePlanView {
  const int32_t* sorted_pair;   // [pairs] pair of each sorted row
  const int32_t* sorted_token;  // [pairs] token of each sorted row
  const int32_t* tiles;         // [max_tiles][3] (expert, first sorted row, rows)
  const int32_t* num_tiles;     // [1] tiles in use
  int max_tiles;
};
MoePlanView moe_plan(const int32_t* ids, int64_t pairs, int E, int top_k, void* plan_mem, Stream stream);
// out[t] (act) = sum over s in slot order of weights[t][s] * y[t * top_k + s] (y: [T*top_k][H] fp32).
void moe_combine(const float* y, int64_t T, int64_t H, int top_k, const float* weights, int64_t ld_weights, void* out,
                 int64_t ldo, DType act, Stream stream);

// out[t][0..H) = sum over s of weights[t][s] * down_e(silu(gate_e(x_t)) * up_e(x_t)), e = ids[t][s],
// for the s in slot order. gate_w/up_w/down_w: device tables of E weight pointers (all experts of
// one shape, dtype wt). plan: moe_plan_bytes(T*top_k, E) bytes; work: T*top_k*moe_work_bytes_per_pair.
void moe_experts(const MoeShape& shape, const void* x, int64_t ldx, DType act, const int32_t* ids,
                 const float* weights, int64_t ld_weights, const void* const* gate_w, const void* const* up_w,
                 const void* const* down_w, DType wt, void* out, int64_t ldo, void* plan, float* work,
                 Stream stream);

}  // namespace ds::gpu
