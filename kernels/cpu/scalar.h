// The plain reference variants of the per-ISA ops (private to kernels/cpu): the oracle every
// vectorised and GPU variant is tested against. Contracts: CpuKernels in deltaserve/kernels/cpu.h.
#pragma once

#include "deltaserve/kernels/cpu.h"

namespace ds::kernels::scalar {

void linear_rows_scalar(const PackedLinear& w, const float* x, const float* xsum, int64_t m, float* y, int64_t ldy,
                        int64_t rb_begin, int64_t rb_end);
void gdn_recurrent_scalar(float* S, int dk, int dv, int64_t T, const float* q, const float* k, int64_t qk_stride,
                          const float* v, int64_t v_stride, const float* g, const float* beta, int64_t gb_stride,
                          float* o, int64_t o_stride);
void attention_head_scalar(const float* q, const float* k_cache, const float* v_cache, const int32_t* block_table,
                           int block_size, int64_t block_stride, int64_t row_stride, int kv_head, int hd,
                           int64_t n_ctx, float scale, float* scores, float* out);

}  // namespace ds::kernels::scalar
