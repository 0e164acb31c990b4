// Dense linears through the vendor BLAS: y[m][n] = x[m][k] · W[n][k]^T (+ bias[n]) with fp32
// accumulation, on the runtime's stream. CUDA: cuBLASLt (one handle and a 32 MiB workspace per
// Runtime, created on first use; the algorithm per shape is cached). HIP and the emulation have no
// BLAS here: blas_gemm returns false and the caller runs its own kernel.
#pragma once

#include <cstdint>

#include "deltaserve/core/dtype.h"
#include "src/backend/gpu/runtime.h"

namespace ds::backend::gpu {

// Whether blas_gemm can run on this runtime at all (vendor BLAS compiled in and its handle opened).
bool blas_available(Runtime& rt);

// x: [m][k] of `act` with row stride ldx; w: [n][k] of `wt`, dense (row stride k); bias: [n] fp32
// device pointer or null; y: [m][n] of `act` with row stride ldy (elements). Returns false, having
// done nothing, when no BLAS is available or it has no algorithm for these types (act != wt, say).
// A BLAS failure on a supported call leaves the device unusable: it ends the process with the call,
// its shapes and the library's status, as GpuBackend::check does for kernels.
bool blas_gemm(Runtime& rt, DType act, const void* x, int64_t ldx, DType wt, const void* w, const float* bias,
               void* y, int64_t ldy, int64_t m, int64_t n, int64_t k);

}  // namespace ds::backend::gpu
