// GPTQ/AutoRound linears straight from the checkpoint's tensors (kernels-formats.md §1.1), the
// GPU backend's portable fallback until the Marlin-style kernels: y[m][n] = sum_k x[m][k] *
// scale[g(k)][n] * (q(k, n) - zero(g(k), n)), dequantised on the fly, never stored. Each thread owns
// one output column and up to kRows rows; a block stages a kRows x kChunk tile of x in shared memory,
// so every packed word is read once per kRows rows. Correct for any M/N/K, group size and g_idx.
#include "deltaserve/core/dtype.h"
#include "kernels/common/gptq.h"
#include "kernels/gpu/launch.h"
#include "kernels/gpu/ops_gptq.h"

namespace ds::gpu {

namespace {

constexpr int kThreads = 128, kRows = 8, kChunk = 32;

DS_DEV float scale_at(const uint16_t* scales, bool bf16_scales, int64_t i) {
  return bf16_scales ? to_f32(bf16{scales[i]}) : to_f32(f16{scales[i]});
}

template <typename T, typename Y>
__global__ void gptq_linear_kernel(GptqArgs a, const T* __restrict__ x, int64_t ldx, Y* __restrict__ y, int64_t ldy) {
  float* xs = smem<float>();  // [kRows][kChunk]
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int rows = a.m - m0 < kRows ? static_cast<int>(a.m - m0) : kRows;
  float acc[kRows];
  DS_UNROLL
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  for (int64_t k0 = 0; k0 < a.k; k0 += kChunk) {
    const int kn = a.k - k0 < kChunk ? static_cast<int>(a.k - k0) : kChunk;
    __syncthreads();  // the previous chunk's readers are done
    for (int i = threadIdx.x; i < kRows * kChunk; i += kThreads) {
      const int r = i / kChunk, c = i % kChunk;
      xs[i] = r < rows && c < kn ? to_f32(x[(m0 + r) * ldx + k0 + c]) : 0.0f;
    }
    __syncthreads();
    if (n < a.n) {
      for (int c = 0; c < kn; ++c) {
        const int64_t k = k0 + c;
        const int64_t g = a.g_idx ? a.g_idx[k] : k / a.group_size;
        const uint32_t q = kernels::gptq_qweight_code(a.qweight, a.n, a.bits, k, n);
        const int32_t z = kernels::gptq_zero(a.qzeros, a.n, a.bits, a.sym, a.zeros_v2, g, n);
        const float w = scale_at(a.scales, a.bf16_scales, g * a.n + n) * static_cast<float>(static_cast<int32_t>(q) - z);
        DS_UNROLL
        for (int r = 0; r < kRows; ++r) acc[r] += xs[r * kChunk + c] * w;
      }
    }
  }
  if (n >= a.n) return;
  const float b = a.bias ? a.bias[n] : 0.0f;
  for (int r = 0; r < rows; ++r) y[(m0 + r) * ldy + n] = from_f32<Y>(acc[r] + b);
}

template <typename T, typename Y>
void launch(const GptqArgs& a, const void* x, int64_t ldx, void* y, int64_t ldy, Stream stream) {
  auto k = gptq_linear_kernel<T, Y>;
  const dim3 grid(static_cast<unsigned>(ceil_div(a.n, kThreads)), static_cast<unsigned>(ceil_div(a.m, kRows)));
  DS_LAUNCH(k, grid, kThreads, kRows * kChunk * sizeof(float), stream, a, static_cast<const T*>(x), ldx,
            static_cast<Y*>(y), ldy);
}

template <typename T>
void launch_out(const GptqArgs& a, const void* x, int64_t ldx, void* y, int64_t ldy, DType yt, Stream stream) {
  if (yt == DType::kF32) launch<T, float>(a, x, ldx, y, ldy, stream);
  else if (yt == DType::kBF16) launch<T, bf16>(a, x, ldx, y, ldy, stream);
  else launch<T, f16>(a, x, ldx, y, ldy, stream);
}

}  // namespace

void gptq_linear(const GptqArgs& a, const void* x, int64_t ldx, DType xt, void* y, int64_t ldy, DType yt, Stream stream) {
  if (a.m <= 0 || a.n <= 0) return;
  if (xt == DType::kF32) launch_out<float>(a, x, ldx, y, ldy, yt, stream);
  else if (xt == DType::kBF16) launch_out<bf16>(a, x, ldx, y, ldy, yt, stream);
  else launch_out<f16>(a, x, ldx, y, ldy, yt, stream);
}

}  // namespace ds::gpu
