// Gated DeltaNet on the device: state-slot reset, the causal depthwise conv1d + SiLU with its
// rolling state (kernels/gpu/conv1d.cu), the token recurrence (gdn_decode.cu) and the chunked WY
// form (gdn_prefill.cu). Launchers take raw device pointers; they never allocate or synchronise
// (the caller checks the launch). CPU references: kernels/cpu/conv1d.cpp, gdn_recurrent.cpp,
// gdn_chunked.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "deltaserve/core/dtype.h"
#include "kernels/gpu/launch.h"

namespace ds::gpu {

constexpr int kConvMaxKernel = 8;
constexpr int kGdnMaxHeadDim = 256;  // dk and dv
constexpr int kGdnChunk = 64;        // chunk length of the WY form (FLA's C)

// A step's sequences: sequence s owns token rows cu_seqlens[s]..cu_seqlens[s+1] and GDN state slot
// state_slots[s]; max_tokens (host) is the longest sequence's token count and sizes grids.
struct GdnSeqs {
  const int32_t* cu_seqlens = nullptr;
  const int32_t* state_slots = nullptr;
  int num_seqs = 0;
  int64_t max_tokens = 0;
};

// Zeroes `count` floats at pool + slots[i] * slot_floats for each of the n_slots listed slots.
void gdn_zero_slots(float* pool, int64_t slot_floats, int64_t count, const int32_t* slots, int n_slots,
                    Stream stream);

// y[t][c] = silu(bias[c] + sum_j w[c][j] * window_t[j]) over each sequence's rows, where the window
// is the kernel-1 rows before t (from the sequence's conv state [kernel-1][channels] fp32 at
// conv_state + slot * slot_floats when before its first row) and row t. Afterwards the conv state
// holds the last kernel-1 rows of [old state; the sequence's x rows]. x, y: activation dtype.
void conv1d_causal_silu(DType dtype, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t channels,
                        int kernel, const float* w, const float* bias, float* conv_state, int64_t slot_floats,
                        const GdnSeqs& seqs, Stream stream);

// One GDN layer's step. q, k: [T][Hk*dk], v, o: [T][Hv*dv] (activation dtype), g, beta: [T][Hv]
// fp32. Value head h reads key head h / (Hv/Hk). The SSM state of slot s, head h is the fp32
// [dv][dk] matrix at state + s * slot_floats + h * dv * dk.
struct GdnLayer {
  DType dtype = DType::kF32;
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t ldq = 0, ldk = 0, ldv = 0;
  const float *g = nullptr, *beta = nullptr;
  int64_t ldg = 0, ldbeta = 0;
  void* o = nullptr;
  int64_t ldo = 0;
  int Hk = 0, Hv = 0, dk = 0, dv = 0;
  float* state = nullptr;
  int64_t slot_floats = 0;
};

// The token recurrence, any number of tokens per sequence: the state tile stays in registers
// across a sequence's tokens, read and written once per launch.
void gdn_recurrent(const GdnLayer& p, const GdnSeqs& seqs, Stream stream);

// The chunked WY form (chunks of kGdnChunk tokens, state carried across chunks), in tiles of up
// to 32 V-rows: the widest whose shared memory fits max_smem_bytes. Returns false, launching
// nothing, when even a 4-row tile does not fit (the caller then runs the recurrence).
bool gdn_chunked(const GdnLayer& p, const GdnSeqs& seqs, size_t max_smem_bytes, Stream stream);
size_t gdn_chunked_smem_bytes(int dk, int v_tile);

}  // namespace ds::gpu
