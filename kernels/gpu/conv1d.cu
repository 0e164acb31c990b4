// Causal depthwise conv1d + SiLU with each sequence's rolling conv state (the GDN input mixing),
// and the GDN state-slot reset. CPU reference: kernels/cpu/conv1d.cpp.
//
// A thread owns one channel over a run of up to kConvRun consecutive rows of ONE sequence, sliding
// the kernel-wide window in registers (channels across threads: every load is coalesced). Runs
// never cross sequences and are at least kernel-1 rows long, so only a sequence's first run reads
// the old conv state, and that same thread writes the new state after reading it: no other
// thread touches the slot (vLLM's causal_conv1d_fwd does the same for the same reason).
#include "kernels/common/gdn.h"
#include "kernels/gpu/ops_gdn.h"

namespace ds::gpu {
namespace {

constexpr int kConvThreads = 128;
constexpr int kConvRun = 16;  // rows per thread in prefill; >= kConvMaxKernel - 1
static_assert(kConvRun >= kConvMaxKernel - 1, "a sequence's later runs must not reach its conv state");

template <typename T, int K>
__global__ void conv1d_causal_silu_kernel(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t C, const float* w,
                                          const float* bias, float* conv_state, int64_t slot_floats,
                                          const int32_t* cu_seqlens, const int32_t* state_slots, int runs_per_seq,
                                          int run_len) {
  constexpr int H = K - 1;  // history rows
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int s = static_cast<int>(blockIdx.x) / runs_per_seq, run = static_cast<int>(blockIdx.x) % runs_per_seq;
  const int64_t begin = cu_seqlens[s], n = cu_seqlens[s + 1] - begin;
  const int64_t r0 = static_cast<int64_t>(run) * run_len;
  if (c >= C || r0 >= n) return;
  const int64_t r1 = r0 + run_len < n ? r0 + run_len : n;
  float* state = conv_state + static_cast<int64_t>(state_slots[s]) * slot_floats;

  float wk[K];
  for (int j = 0; j < K; ++j) wk[j] = w[c * K + j];
  const float b = bias ? bias[c] : 0.0f;
  // win[j] = input row r0 - H + j of the sequence (negative rows come from the old state).
  float win[K];
  for (int j = 0; j < H; ++j) {
    const int64_t r = r0 - H + j;
    win[j] = r >= 0 ? to_f32(x[(begin + r) * ldx + c]) : state[(H + r) * C + c];
  }
  for (int64_t r = r0; r < r1; ++r) {
    win[H] = to_f32(x[(begin + r) * ldx + c]);
    float acc = b;
    for (int j = 0; j < K; ++j) acc += wk[j] * win[j];
    y[(begin + r) * ldy + c] = from_f32<T>(::ds::kernels::siluf(acc));
    for (int j = 0; j < H; ++j) win[j] = win[j + 1];
  }
  if (run != 0) return;
  // New state row i = row n - H + i of [old state; x]: rows read before any is overwritten, since
  // row i reads old-state row n + i >= i.
  for (int i = 0; i < H; ++i) {
    const int64_t r = n - H + i;
    state[i * C + c] = r >= 0 ? to_f32(x[(begin + r) * ldx + c]) : state[(H + r) * C + c];
  }
}

template <typename T, int K>
void launch_conv(const void* x, int64_t ldx, void* y, int64_t ldy, int64_t C, const float* w, const float* bias,
                 float* conv_state, int64_t slot_floats, const GdnSeqs& seqs, Stream stream) {
  // Decode steps (one row per sequence) get one row per thread; prefill runs of kConvRun rows.
  const int run_len = seqs.max_tokens <= 1 ? 1 : kConvRun;
  const int runs = ceil_div(seqs.max_tokens < 1 ? 1 : seqs.max_tokens, run_len);
  const dim3 grid(static_cast<unsigned>(seqs.num_seqs * runs), static_cast<unsigned>(ceil_div(C, kConvThreads)));
  auto k = conv1d_causal_silu_kernel<T, K>;
  (void)stream;  // unused under emulation
  DS_LAUNCH(k, grid, kConvThreads, 0, stream, static_cast<const T*>(x), ldx, static_cast<T*>(y), ldy, C, w, bias,
            conv_state, slot_floats, seqs.cu_seqlens, seqs.state_slots, runs, run_len);
}

template <typename T>
void dispatch_kernel(int kernel, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t C, const float* w,
                     const float* bias, float* conv_state, int64_t slot_floats, const GdnSeqs& seqs, Stream stream) {
  switch (kernel) {
#define DS_CONV_CASE(K) \
  case K: return launch_conv<T, K>(x, ldx, y, ldy, C, w, bias, conv_state, slot_floats, seqs, stream);
    DS_CONV_CASE(2)
    DS_CONV_CASE(3)
    DS_CONV_CASE(4)
    DS_CONV_CASE(5)
    DS_CONV_CASE(6)
    DS_CONV_CASE(7)
    DS_CONV_CASE(8)
#undef DS_CONV_CASE
    default: return;  // the backend rejects other widths before launching
  }
}

__global__ void gdn_zero_slots_kernel(float* pool, int64_t slot_floats, int64_t count, const int32_t* slots) {
  float* p = pool + static_cast<int64_t>(slots[blockIdx.y]) * slot_floats;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) p[i] = 0.0f;
}

}  // namespace

void conv1d_causal_silu(DType dtype, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t channels, int kernel,
                        const float* w, const float* bias, float* conv_state, int64_t slot_floats,
                        const GdnSeqs& seqs, Stream stream) {
  if (seqs.num_seqs <= 0 || channels <= 0) return;
  if (dtype == DType::kBF16)
    dispatch_kernel<bf16>(kernel, x, ldx, y, ldy, channels, w, bias, conv_state, slot_floats, seqs, stream);
  else if (dtype == DType::kF16)
    dispatch_kernel<f16>(kernel, x, ldx, y, ldy, channels, w, bias, conv_state, slot_floats, seqs, stream);
  else
    dispatch_kernel<float>(kernel, x, ldx, y, ldy, channels, w, bias, conv_state, slot_floats, seqs, stream);
}

void gdn_zero_slots(float* pool, int64_t slot_floats, int64_t count, const int32_t* slots, int n_slots,
                    Stream stream) {
  if (n_slots <= 0 || count <= 0) return;
  constexpr int kThreads = 256;
  const int blocks = ceil_div(count, kThreads * 8);
  const dim3 grid(static_cast<unsigned>(blocks < 1024 ? blocks : 1024), static_cast<unsigned>(n_slots));
  (void)stream;
  DS_LAUNCH(gdn_zero_slots_kernel, grid, kThreads, 0, stream, pool, slot_floats, count, slots);
}

}  // namespace ds::gpu
