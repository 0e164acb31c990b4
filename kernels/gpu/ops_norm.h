// Launchers of the small row ops (norm.cu, rope.cu, elementwise.cu): embedding and row gathers,
// RMSNorm / gated RMSNorm / per-head l2-norm, partial interleaved M-RoPE, the q/gate split, the
// elementwise glue and the GDN gates. Raw device pointers; every matrix is rows x cols with a
// leading dimension `ld` (elements between rows, >= cols); activations are of `dtype` (f32, bf16,
// f16) and computed in fp32. Launchers never allocate or synchronise; the caller checks the launch.
#pragma once

#include <cstdint>

#include "deltaserve/core/dtype.h"

namespace ds::gpu {

using Stream = void*;  // as kernels/gpu/launch.h

// dst[i] = src[ids[i] - first_id] for i < n, converted from src_dtype to dst_dtype; an id outside
// [first_id, first_id + src_rows) gives a row of zeros. Embedding (src = the table, or one
// tensor-parallel rank's rows of it) and logit-row gathers.
void gather_rows(const void* src, DType src_dtype, int64_t src_rows, int64_t ld_src, int64_t cols,
                 const int32_t* ids, int64_t n, void* dst, DType dst_dtype, int64_t ld_dst, Stream stream,
                 int64_t first_id = 0);

enum class NormKind {
  kRms,             // x * rsqrt(mean(x^2) + eps) * w
  kRmsZeroCentred,  // x * rsqrt(mean(x^2) + eps) * (1 + w)
  kGatedRms,        // w * x * rsqrt(mean(x^2) + eps) * silu(z)
  kL2,              // x / sqrt(sum(x^2) + eps) * scale
};
// Normalises each of the `segs` consecutive segments of seg_len elements in each of `rows` rows
// of x (segs = heads for per-head norms, else 1); w [seg_len] fp32 (unused by kL2); z has x's
// layout (kGatedRms only). out may be x (in place).
void norm_rows(NormKind kind, const void* x, int64_t ldx, const void* z, int64_t ldz, const float* w, int64_t rows,
               int segs, int64_t seg_len, float eps, float scale, void* out, int64_t ldo, DType dtype, Stream stream);

// In place on x [T][heads*head_dim]: rotates the first rot_dim dims of every head (pairs i,
// i + rot_dim/2) by angle pos[t][row(j)] * theta^(-2j/rot_dim), row(j) from the interleaved
// mrope_section (a HOST array of 3, or nullptr for text-only t positions). pos: device [T][3].
// rot_dim / 2 <= kMaxRopeHalf.
constexpr int kMaxRopeHalf = 256;
void rope_mrope(void* x, int64_t ldx, int64_t T, int heads, int head_dim, int rot_dim, double theta,
                const int32_t* mrope_section, const int64_t* pos, DType dtype, Stream stream);

// qg [T][heads][2][hd] (query then gate per head) -> q, gate [T][heads*hd].
void split_query_gate(const void* qg, int64_t ldqg, int64_t T, int heads, int hd, void* q, int64_t ldq, void* gate,
                      int64_t ldg, DType dtype, Stream stream);

enum class BinaryOp {
  kSiluMul,      // out = silu(a) * b
  kSigmoidGate,  // out = a * sigmoid(b)
  kAdd,          // out = a + b
  kAddGated,     // out = a + sigmoid(gate[r]) * b, gate: one scalar per row (gate_dtype, ld_gate)
};
// out may be a (in place).
void binary_rows(BinaryOp op, const void* a, int64_t lda, const void* b, int64_t ldb, void* out, int64_t ldo,
                 int64_t rows, int64_t cols, DType dtype, const void* gate, int64_t ld_gate, DType gate_dtype,
                 Stream stream);

// g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b), per token t and value head h < Hv.
// a, b fp32 normally (any activation type is read); g, beta fp32.
void gdn_gates(const void* a, int64_t lda, DType a_dtype, const void* b, int64_t ldb, DType b_dtype, int64_t T, int Hv,
               const float* A_log, const float* dt_bias, float* g, int64_t ldg, float* beta, int64_t ldbeta,
               Stream stream);

}  // namespace ds::gpu
