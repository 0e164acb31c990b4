// The backend op table the model graph calls (DESIGN.md §3 "Backend op table"). Every backend
// prepares weights once in its own layout (prepare_weight) and runs ops over fp32 activation
// buffers it owns ("device" pointers; host memory on CPU). Per-step metadata (sequence ranges,
// block tables, state slots) is planned by the caller and passed in; ops do not allocate model
// state or synchronise beyond their own return.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "deltaserve/core/dtype.h"
#include "deltaserve/core/status.h"

namespace ds::backend {

// One checkpoint Linear as stored (y = x W^T + b, W [n][k]), independent of the model layer.
// bits 16: dense `weight` [n][k] of weight_dtype. bits 4/8: GPTQ tensors (kernels-formats.md §1.1):
// qweight int32 [k*bits/32][n], qzeros int32 [groups][n*bits/32] (ignored when sym), scales fp16
// [groups][n], g_idx int32 [k] (nullptr: k / group_size).
struct WeightSource {
  std::string name;
  int64_t n = 0, k = 0;
  int bits = 16;
  int group_size = -1;
  bool sym = true;
  bool zeros_v2 = false;
  DType weight_dtype = DType::kUnknown;
  const void* weight = nullptr;
  const int32_t* qweight = nullptr;
  const int32_t* qzeros = nullptr;
  DType scales_dtype = DType::kF16;
  const void* scales = nullptr;
  int64_t scale_groups = 0;  // rows of scales
  const int32_t* g_idx = nullptr;
  DType bias_dtype = DType::kUnknown;
  const void* bias = nullptr;
};

// A weight in the backend's own layout. Dense weights may alias the checkpoint mapping.
class PreparedWeight {
 public:
  virtual ~PreparedWeight() = default;
  int64_t n = 0, k = 0;
  size_t bytes = 0;  // bytes read per use (the roofline counts these)
};

// An embedding table as stored: [rows][dim] of f32/bf16/f16.
struct EmbeddingTable {
  DType dtype = DType::kUnknown;
  const void* data = nullptr;
  int64_t rows = 0, dim = 0;
};

// One sequence's slice of a batched step.
struct SeqSpan {
  int64_t token_begin = 0, n_tokens = 0;  // rows of the step's activations
  int64_t start_pos = 0;                  // tokens already cached before this step
  const int32_t* block_table = nullptr;   // attention: KV block ids covering [0, start_pos + n_tokens)
  float* gdn_state = nullptr;             // GDN: this layer's SSM state [Hv][dv][dk] for the sequence
  float* conv_state = nullptr;            // GDN: this layer's conv state [K-1][conv_dim]
};

// Paged KV cache of one attention layer: [num_blocks][block_size][kv_heads][head_dim] each.
struct KvCacheView {
  float* k = nullptr;
  float* v = nullptr;
  int block_size = 16;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  virtual Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) const = 0;

  virtual void embed(const EmbeddingTable& table, const int32_t* ids, int64_t n, float* out) = 0;
  // zero_centred: weight applied as (1 + w) (Qwen3.5 RMSNorm); else plain w.
  virtual void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                        bool zero_centred, float* out) = 0;
  virtual void gated_rms_norm(const float* x, const float* z, const float* w, int64_t rows, int64_t dim,
                              float eps, float* out) = 0;
  // y[m][ldy] = x[m][k] W^T (+ bias), for any prepared weight format. x rows are contiguous (k).
  virtual void linear(const PreparedWeight& w, const float* x, int64_t m, float* y, int64_t ldy) = 0;
  virtual void lm_head(const PreparedWeight& w, const float* x, int64_t m, float* logits) = 0;
  // Partial interleaved M-RoPE in place on x [T][heads][head_dim] (row stride), pos [T][3].
  virtual void rope_mrope(float* x, int64_t T, int heads, int head_dim, int64_t stride, int rot_dim,
                          double theta, const int32_t* mrope_section, const int64_t* pos) = 0;
  // Writes k/v rows of each sequence's new tokens into the paged cache, then causal GQA softmax
  // attention for each new token over positions [0, start_pos + i]. q: [T][nh*hd], k/v: [T][nkv*hd].
  virtual void attention(const float* q, const float* k, const float* v, const SeqSpan* seqs, int n_seqs,
                         int nh, int nkv, int hd, float scale, const KvCacheView& cache, float* out) = 0;
  // Causal depthwise conv + SiLU per sequence with its conv state. x, y: [T][C] with row strides.
  virtual void conv1d_causal(const float* x, int64_t ldx, const SeqSpan* seqs, int n_seqs, int64_t C,
                             int K, const float* w, const float* bias, float* y, int64_t ldy) = 0;
  // Gated delta rule per sequence and value head (value head h reads key head h / (Hv/Hk)).
  // q, k: [T][Hk*dk] (normalised, q scaled) row stride ld_qk; v: [T][Hv*dv]; g, beta: [T][Hv];
  // o: [T][Hv*dv]. gdn_decode runs the token recurrence, gdn_prefill the chunked form (chunk 64).
  virtual void gdn_decode(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
                          const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv,
                          int dk, int dv, float* o) = 0;
  virtual void gdn_prefill(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
                           const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk,
                           int Hv, int dk, int dv, float* o) = 0;
  // Router: logits [T][E] -> top_k expert ids and weights per token (fp32 softmax, renormalised).
  virtual void moe_route(const float* logits, int64_t T, int64_t E, int top_k, bool renormalize,
                         int32_t* ids, float* weights) = 0;
  // out[T][H] = sum_slot weights * down(silu(gate(x)) * up(x)) over each token's experts, summed in
  // slot order. gate/up/down: E prepared weights each.
  virtual void moe_experts(const float* x, int64_t T, int64_t H, const int32_t* ids, const float* weights,
                           int top_k, const PreparedWeight* const* gate, const PreparedWeight* const* up,
                           const PreparedWeight* const* down, float* out) = 0;
  virtual void silu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
  virtual void sigmoid_gate(float* x, const float* gate, int64_t n) = 0;
  virtual void add(float* x, const float* y, int64_t n) = 0;
};

}  // namespace ds::backend
