// The backend contract (src/backend/README.md): everything the model graph needs from a device.
// A backend owns device memory (weights in its own layout, the two cache pools, step metadata,
// the activations' workspace), turns each step's plan into flat metadata once (plan), and runs
// ops that read that metadata and never allocate or synchronise. Only sample / target_logprobs
// and download bring data back to the host; they end the step. A new device is a new Backend.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deltaserve/core/dtype.h"
#include "deltaserve/core/status.h"
#include "kernels/common/sampling.h"

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
  // The weight still reads the WeightSource's memory (host backends use dense weights in place): its
  // owner keeps that memory alive as long as the weight. Otherwise the source may go after prepare.
  bool aliases_source = false;
};

// An embedding table as stored: [rows][dim] of f32/bf16/f16, holding token ids
// [first_row, first_row + rows) (a tensor-parallel rank's vocabulary shard; embed() gives the other
// ids zeros, and the ranks' rows are summed by an all-reduce).
struct EmbeddingTable {
  DType dtype = DType::kUnknown;
  const void* data = nullptr;
  int64_t rows = 0, dim = 0;
  int64_t first_row = 0;
};

// A block of device memory, freed with the handle.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 protected:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A 2-D view of device memory: rows x cols elements of dtype, ld elements between rows.
// Activations use the backend's activation_dtype(); router logits, GDN gates, MoE weights and
// logits are always fp32.
struct Act {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0, ld = 0;

  Act cols_view(int64_t c0, int64_t n) const {
    return {static_cast<char*>(data) + c0 * static_cast<int64_t>(dtype_size(dtype)), dtype, rows, n, ld};
  }
  Act rows_view(int64_t r0, int64_t n) const {
    return {static_cast<char*>(data) + r0 * ld * static_cast<int64_t>(dtype_size(dtype)), dtype, n, cols, ld};
  }
  // The same contiguous elements seen as [r][c] (requires ld == cols and r * c == rows * cols).
  Act reshaped(int64_t r, int64_t c) const { return {data, dtype, r, c, c}; }
  bool contiguous() const { return ld == cols; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

// The cache pools, allocated once (DESIGN.md §3 "Cache"). Per attention layer: K and V blocks
// [num_kv_blocks][block_size][kv_heads][head_dim] of kv dtype. Per GDN layer: one slot per
// sequence holding the SSM state [v_heads][v_dim][k_dim] fp32 then the conv state [kernel-1][conv_dim].
struct CacheSpec {
  int num_attn_layers = 0, num_kv_blocks = 0, block_size = 16, kv_heads = 0, head_dim = 0;
  int num_gdn_layers = 0, num_state_slots = 0, v_heads = 0, k_dim = 0, v_dim = 0, conv_kernel = 0;
  int64_t conv_dim = 0;
};

// The largest step the workspace and metadata buffers are sized for.
struct StepLimits {
  int64_t max_tokens = 0;          // new tokens in one step
  int max_seqs = 0;                // sequences in one step
  int max_blocks_per_seq = 0;      // block-table width
  int64_t max_logit_rows = 0;      // logits rows computed in one pass of lm_head + sample
};

// One step as flat arrays (FlashInfer's plan): built on the host once per step, copied by plan()
// into the backend's metadata buffers, read by every op of the step.
struct StepMeta {
  std::vector<int32_t> token_ids;     // [T]
  std::vector<int64_t> positions;     // [T][3] M-RoPE (t, h, w) positions
  std::vector<int32_t> cu_seqlens;    // [S + 1] token row ranges per sequence
  std::vector<int64_t> start_pos;     // [S] tokens already cached
  std::vector<int32_t> state_slots;   // [S] GDN slot per sequence
  std::vector<int32_t> block_tables;  // [S][blocks_per_seq] KV block ids, -1 past the end
  int blocks_per_seq = 0;
  std::vector<int32_t> reset_slots;   // GDN slots zeroed before the step (sequences at position 0)
  std::vector<int32_t> logit_rows;    // token rows whose logits the step computes, in output order
  // > 0: launches are sized for contexts (start_pos + new tokens) up to this bound rather than this
  // step's longest, so a captured step replays for any context within it (the graph path sets it).
  int64_t context_bound = 0;
  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int num_seqs() const { return static_cast<int>(start_pos.size()); }
};

// A device's memory at one moment (memory planning).
struct DeviceMemory {
  size_t total_bytes = 0, free_bytes = 0;
};

// A captured step (Backend::begin_capture / end_capture), run again by Backend::replay.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
};

using SamplingRow = kernels::SamplingRow;

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
  int64_t rank = 1;  // 1 = most likely
};
// A token's logprob plus the top-k alternatives (most likely first), of the raw distribution.
struct PositionLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};
struct SampleResult {
  int32_t token = -1;
  std::optional<PositionLogprobs> logprobs;  // when the row asked for them
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual DType kv_cache_dtype() const = 0;

  // --- memory ---
  virtual Result<std::unique_ptr<DeviceBuffer>> alloc(size_t bytes, const std::string& what) = 0;
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() = 0;  // the step boundary: every op issued so far has finished
  // The device's total and free memory now; nullopt for host backends (their cache budget is a flag).
  virtual std::optional<DeviceMemory> device_memory() { return std::nullopt; }
  // The stream ops run on (cudaStream_t / hipStream_t) for libraries that enqueue their own work
  // there (NCCL/RCCL); nullptr for host backends, whose stream is the calling thread.
  virtual void* native_stream() const { return nullptr; }

  // --- load time ---
  // A whole weight in this backend's layout. Under tensor parallelism the model hands each rank its
  // shard as a whole weight (src/model/shard.cpp): backends never learn about ranks.
  virtual Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) = 0;
  virtual Status allocate_cache(const CacheSpec& spec) = 0;
  virtual size_t cache_bytes() const = 0;
  virtual Status reserve_step(const StepLimits& limits) = 0;
  // The token embedding table where embed() reads it. Host-memory backends read the checkpoint
  // mapping in place; device backends upload it once.
  virtual Result<EmbeddingTable> prepare_embedding(const EmbeddingTable& host) { return host; }
  // The prepared experts of one MoE layer (num_experts each of gate, up, down: the arrays
  // moe_experts will be given). Called once per layer at load, before any moe_experts with them:
  // device backends build the layer's expert tables here, so moe_experts neither allocates nor
  // uploads, and refuse experts they cannot run together.
  virtual Status prepare_experts(const PreparedWeight* const* gate, const PreparedWeight* const* up,
                                 const PreparedWeight* const* down, int num_experts) {
    return Status::ok();
  }

  // --- per step ---
  virtual Status plan(const StepMeta& meta) = 0;
  virtual void reset_states() = 0;  // zero the planned reset_slots in every GDN layer

  // --- graphs (device backends; a host backend has nothing to capture) ---
  // Between begin_capture and end_capture, reset_states and the ops are recorded, not run. replay
  // runs the recording again, reading the metadata of the latest plan(), which must have the shapes
  // the capture was planned with (tokens, sequences, block-table width, reset and logit rows,
  // context_bound): every launch size and metadata address then repeats. Recording must neither
  // allocate nor synchronise.
  virtual bool supports_graphs() const { return false; }
  virtual Status begin_capture() { return unsupported(name() + " does not capture steps"); }
  virtual Result<std::unique_ptr<StepGraph>> end_capture() {
    return unsupported(name() + " does not capture steps");
  }
  virtual Status replay(const StepGraph& graph) {
    (void)graph;
    return unsupported(name() + " does not capture steps");
  }

  // --- ops (read the planned metadata; x, y, out are Act views of device memory) ---
  virtual void embed(const EmbeddingTable& table, Act out) = 0;  // planned token ids
  // out = x * rsqrt(mean(x^2) + eps) * (zero_centred ? 1 + w : w), per row of x.cols.
  virtual void rms_norm(Act x, const float* w, float eps, bool zero_centred, Act out) = 0;
  // Per row of x.cols: w * x * rsqrt(mean(x^2)+eps) * silu(z).
  virtual void gated_rms_norm(Act x, Act z, const float* w, float eps, Act out) = 0;
  // In place per head of head_dim: x / sqrt(sum(x^2) + eps) * scale.
  virtual void l2_norm_heads(Act x, int head_dim, float eps, float scale) = 0;
  // y[m][n] = x[m][k] W^T (+ bias), any prepared format.
  virtual void linear(const PreparedWeight& w, Act x, Act y) = 0;
  // Several weights reading the same input, as one dispatch: y[i] = x W_i^T.
  virtual void linear_shared_input(Act x, const PreparedWeight* const* w, const Act* y, int n) = 0;
  // Partial interleaved M-RoPE in place on x [T][heads*head_dim] at the planned positions.
  virtual void rope_mrope(Act x, int heads, int head_dim, int rot_dim, double theta, const int32_t* mrope_section) = 0;
  // q_proj output [T][heads][2][hd] (query, gate per head) -> q, gate [T][heads*hd].
  virtual void split_query_gate(Act qg, int heads, int head_dim, Act q, Act gate) = 0;
  // Appends each sequence's new k/v rows to attention layer `layer`'s paged cache, then causal
  // GQA softmax attention of every new token over its sequence's cached positions.
  virtual void attention(int layer, Act q, Act k, Act v, int heads, int kv_heads, int head_dim, float scale,
                         Act out) = 0;
  // Causal depthwise conv + SiLU per sequence, with GDN layer `layer`'s conv state. w: [C][kernel].
  virtual void conv1d_causal(int layer, Act x, const float* w, const float* bias, int kernel, Act y) = 0;
  // g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b), [T][Hv] fp32 each.
  virtual void gdn_gates(Act a, Act b, const float* A_log, const float* dt_bias, Act g, Act beta) = 0;
  // Gated delta rule per sequence and value head over GDN layer `layer`'s SSM state (value head h
  // reads key head h / (Hv/Hk)). q, k: [T][Hk*dk] (normalised, q scaled), v: [T][Hv*dv], o:
  // [T][Hv*dv]. gdn_decode runs the token recurrence, gdn_prefill the chunked form.
  virtual void gdn_decode(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv,
                          Act o) = 0;
  virtual void gdn_prefill(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv,
                           Act o) = 0;
  // Router: fp32 softmax over logits [T][E], top_k ids [T][top_k] (device int32) and weights.
  virtual void moe_route(Act logits, int top_k, bool renormalize, int32_t* ids, Act weights) = 0;
  // out[T][H] = sum over each token's slots of weight * down(silu(gate(x)) * up(x)); gate, up and
  // down hold num_experts weights each (ids index them), given to prepare_experts at load.
  virtual void moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int num_experts, const PreparedWeight* const* gate,
                           const PreparedWeight* const* up, const PreparedWeight* const* down, Act out) = 0;
  virtual void silu_mul(Act gate, Act up, Act out) = 0;
  virtual void sigmoid_gate(Act x, Act gate) = 0;  // x *= sigmoid(gate)
  virtual void add(Act x, Act y) = 0;              // x += y
  // x[r] += sigmoid(gate_logit[r][0]) * y[r] (the shared expert's gate).
  virtual void add_sigmoid_gated(Act x, Act y, Act gate_logit) = 0;
  // out[i] = h[planned logit_rows[first + i]] for i < out.rows.
  virtual void gather_logit_rows(Act h, int64_t first, Act out) = 0;
  // rows x width_bytes from src to dst, the rows dst_pitch / src_pitch bytes apart (both device
  // memory, not overlapping), on the backend's stream; neither allocates nor synchronises. The
  // communicators place a rank's column block with it (all_gather_cols).
  virtual void copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                         size_t rows) = 0;

  // --- results (end the step: they synchronise and return host data) ---
  // One SamplingRow per logits row: processed, sampled, logprobs of the raw row when asked.
  virtual void sample(Act logits, const SamplingRow* rows, SampleResult* out) = 0;
  // For each row r with targets[r] >= 0: that token's logprob and rank plus the top top_k[r].
  virtual void target_logprobs(Act logits, const int32_t* targets, const int32_t* top_k, PositionLogprobs* out) = 0;
};

}  // namespace ds::backend
