// Raw CPU kernels (pointers and sizes in, no framework types): the packed weight layout the CPU
// backend repacks GPTQ / dense weights into, and one table of hot kernels per instruction set.
// kScalar is the plain reference (the oracle every vectorised and GPU kernel is tested against);
// kAvx2 / kAvx512 are chosen at run time by CPUID so one binary runs on any x86-64.
// Kernels are single-threaded over the range they are given; callers split work over cores.
#pragma once

#include <cstdint>

#include "kernels/common/sampling.h"

namespace ds::kernels {

enum class CpuIsa : uint8_t { kScalar, kAvx2, kAvx512 };
CpuIsa detect_cpu_isa();  // the best ISA this machine supports (DS_CPU_ISA=scalar|avx2|avx512 caps it)
const char* cpu_isa_name(CpuIsa isa);
bool cpu_isa_supported(CpuIsa isa);

enum class PackedFormat : uint8_t { kF32, kBF16, kF16, kQ4, kQ8 };

// Output rows are processed in blocks of 16. Quantized weights are interleaved per block so one
// 16-lane vector holds the 16 rows' weights of one input column k:
//   kQ4: [n_pad/16][k] x 8 bytes; byte j holds row j (low nibble) and row j+8 (high nibble)
//   kQ8: [n_pad/16][k] x 16 bytes; byte j holds row j
// Values are unsigned codes q; W[n][k] = scale[g][n] * (q - zero[g][n]) with g the group of k.
// Scales and zeros are stored per row block too ([n_pad/16][groups][16]), so a block's GEMV reads
// them contiguously instead of striding over all of N (a cache and TLB miss per group otherwise).
// Act-order checkpoints are repacked with k sorted by group (Marlin's argsort(g_idx)), so the
// activation is gathered through `perm` once per call and groups are contiguous ranges of k.
constexpr int kRowBlock = 16;

struct PackedLinear {
  PackedFormat format = PackedFormat::kF32;
  int64_t n = 0, k = 0;                 // out_features, in_features
  int64_t n_pad = 0;                    // n rounded up to kRowBlock (quantized formats)
  const void* data = nullptr;           // dense: [n][k] f32/bf16/f16; quantized: see above
  const uint16_t* scales = nullptr;     // quantized: fp16 [n_pad/16][groups][16]
  const uint8_t* zeros = nullptr;       // quantized asym: [n_pad/16][groups][16]; nullptr: sym (8 / 128)
  const int32_t* group_start = nullptr; // quantized: [groups + 1] k ranges in packed order
  int64_t groups = 0;
  const int32_t* perm = nullptr;        // act-order: packed column k' reads x[perm[k']]; else nullptr
  const float* bias = nullptr;          // [n] or nullptr
};

inline bool is_quantized(PackedFormat f) { return f == PackedFormat::kQ4 || f == PackedFormat::kQ8; }
inline int64_t row_blocks(const PackedLinear& w) { return (w.n + kRowBlock - 1) / kRowBlock; }
// Index of (group g, row n) in scales / zeros.
inline int64_t group_param_index(int64_t groups, int64_t g, int64_t n) {
  return ((n / kRowBlock) * groups + g) * kRowBlock + n % kRowBlock;
}

struct CpuKernels {
  CpuIsa isa;
  // y[m][ldy] (columns [rb_begin*16, min(n, rb_end*16))) = x[m][k] . W^T (+ bias).
  // Quantized: x is already gathered through perm, xsum[m][groups] holds each group's sum of x.
  // The arithmetic for one row of x is the same whatever m is, so results never depend on batching.
  void (*linear_rows)(const PackedLinear& w, const float* x, const float* xsum, int64_t m, float* y,
                      int64_t ldy, int64_t rb_begin, int64_t rb_end);
  // Gated delta rule, token by token, for one value head. S: [dv][dk] fp32 (K contiguous), updated
  // in place. q, k (already l2-normalised, q scaled), v rows advance by their strides per token;
  // g: log decay, beta: write strength, one per token. o: [T] rows of dv, stride o_stride.
  void (*gdn_recurrent)(float* S, int dk, int dv, int64_t T, const float* q, const float* k,
                        int64_t qk_stride, const float* v, int64_t v_stride, const float* g,
                        const float* beta, int64_t gb_stride, float* o, int64_t o_stride);
  // Softmax attention of one query head over n_ctx cached positions of one kv head in a paged
  // cache: position p lives in block block_table[p / block_size], row p % block_size; a row of one
  // head is hd floats at cache + block * block_stride + row * row_stride + kv_head * hd.
  // scores: scratch of n_ctx floats. out[hd] = sum_p softmax(q.k_p * scale) v_p.
  void (*attention_head)(const float* q, const float* k_cache, const float* v_cache,
                         const int32_t* block_table, int block_size, int64_t block_stride,
                         int64_t row_stride, int kv_head, int hd, int64_t n_ctx, float scale,
                         float* scores, float* out);
};

const CpuKernels& cpu_kernels(CpuIsa isa);

// --- scalar ops shared by every ISA (cheap relative to the above; plain loops) ---

// out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * (zero_centred ? 1 + w : w)
void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, bool zero_centred,
              float* out);
// Qwen3.5 gated norm per head: out = w * x * rsqrt(mean(x^2)+eps) * silu(z) over rows of `dim`.
void gated_rms_norm(const float* x, const float* z, const float* w, int64_t rows, int64_t dim, float eps,
                    float* out);
// x <- x / sqrt(sum(x^2) + eps) * scale over rows of dim (FLA l2norm).
void l2_norm(float* x, int64_t rows, int64_t dim, int64_t stride, float eps, float scale);
// Partial interleaved M-RoPE (NeoX halves) on the first rot_dim dims of each head in place.
// x: [T][heads][head_dim] with row stride `stride`; pos: [T][3] (t, h, w) positions.
void rope_mrope(float* x, int64_t T, int heads, int head_dim, int64_t stride, int rot_dim, double theta,
                const int32_t* mrope_section, const int64_t* pos);
// Causal depthwise conv (kernel K) over T tokens of C channels, then SiLU. state: [K-1][C] (oldest
// first) holds the previous pre-conv inputs and is updated to the last K-1 inputs. w: [C][K].
void conv1d_causal_silu(const float* x, int64_t ldx, int64_t T, int64_t C, int K, const float* w,
                        const float* bias, float* state, float* y, int64_t ldy);
// out = silu(gate) * up, elementwise over n.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// x <- x * sigmoid(gate), elementwise.
void sigmoid_gate(float* x, const float* gate, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
// Router: softmax over E logits in fp32, top-k (ties: lower index first), optional renormalisation.
void moe_route(const float* logits, int64_t E, int top_k, bool renormalize, int32_t* ids, float* weights);
// Chunked gated delta rule (chunk C, WY form) for one value head; same contract as gdn_recurrent.
// scratch: gdn_chunked_scratch_floats(C, dk, dv) floats.
int64_t gdn_chunked_scratch_floats(int C, int dk, int dv);
void gdn_chunked(float* S, int dk, int dv, int64_t T, int C, const float* q, const float* k,
                 int64_t qk_stride, const float* v, int64_t v_stride, const float* g, const float* beta,
                 int64_t gb_stride, float* o, int64_t o_stride, float* scratch);

// --- GDN / attention glue (one pass over the activations each) ---

// Per token t and value head h: beta = sigmoid(b), g = -exp(A_log) * softplus(a + dt_bias).
// a, b rows advance by lda / ldb; g, beta are [T][Hv] contiguous.
void gdn_gates(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t T, int Hv, const float* A_log,
               const float* dt_bias, float* g, float* beta);
// q_proj output interleaves (query, gate) per head: qg [T][heads][2][hd] -> q, gate [T][heads*hd].
void split_query_gate(const float* qg, int64_t ldqg, int64_t T, int heads, int hd, float* q, int64_t ldq,
                      float* gate, int64_t ldg);
// x[r] += sigmoid(gate_logit[r]) * y[r] over rows of `cols` (the shared expert's gate).
void add_sigmoid_gated(float* x, int64_t ldx, const float* y, int64_t ldy, const float* gate_logit, int64_t ld_gate,
                       int64_t rows, int64_t cols);

// --- sampling (sampling.cpp): the reference sampler over one logits row ---

// allowed ids, logit_bias, forced masks, then penalties, in place.
void apply_logits_processors(float* logits, int64_t V, const SamplingRow& p);
// The distribution actually sampled from (after temperature, min_p, top_k, top_p), renormalised;
// one-hot on the argmax when greedy. probs: V doubles.
void sampling_distribution(const float* logits, int64_t V, const SamplingRow& p, double* probs);
// Processed logits in, token out (greedy ties: lowest id; else p.uniform picks from the distribution).
int32_t sample_token(const float* logits, int64_t V, const SamplingRow& p);
struct LogprobEntry {
  int32_t token_id = 0;
  float logprob = 0.0f;
  int64_t rank = 1;
};
// log_softmax of a raw row: the chosen token's entry and the top k (k clamped to V; returns it).
int compute_logprobs(const float* raw, int64_t V, int32_t chosen, int k, LogprobEntry* chosen_out, LogprobEntry* top);

}  // namespace ds::kernels
