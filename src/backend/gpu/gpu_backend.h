// The GPU backend: the Backend contract over one device (CUDA, HIP, or the CPU emulation of either),
// every op a kernel from kernels/gpu/ (one source for all three), dense bf16/fp16 linears through
// the vendor BLAS where present. Weights, cache pools, step metadata and op scratch live in device
// memory allocated at load (prepare_weight, allocate_cache, reserve_step); plan() uploads one step's
// metadata; ops launch on the runtime's stream and neither allocate nor synchronise. Only sample,
// target_logprobs and download bring data back.
//
// Files: gpu_backend.cpp (memory, weights, cache, plan), gpu_ops_norm.cpp (embed, norms, rope,
// elementwise, gates), gpu_ops_gdn.cpp (conv1d, GDN decode/prefill, state reset),
// gpu_ops_attention.cpp (paged attention), gpu_ops_moe.cpp (linear, router, experts),
// gpu_ops_sample.cpp (sampling, logprobs), gpu_graphs.cpp (step capture and replay, device memory).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "kernels/gpu/ops_qgemm.h"
#include "src/backend/gpu/runtime.h"
#include "src/backend/gpu/staging.h"

namespace ds::backend::gpu {

// Every weight the GPU backend prepares. A MoE layer's first gate weight also keeps the layer's
// device table of expert pointers (built by prepare_experts; it dies with the weight).
class GpuWeight : public PreparedWeight {
 public:
  mutable std::unique_ptr<DeviceBuffer> expert_table;
  mutable std::vector<const PreparedWeight*> expert_table_of;  // gate, up, down arrays it was built from
};

// A dense weight in device memory: w [n][k] of dtype (bf16/fp16/f32), optional bias [n] fp32.
class GpuDenseWeight : public GpuWeight {
 public:
  void* w = nullptr;
  DType dtype = DType::kUnknown;
  float* bias = nullptr;
};

// A GPTQ/AutoRound weight repacked at load for the quantized GEMM (kernels/gpu/qgemm.cu).
class GpuQuantWeight : public GpuWeight {
 public:
  ds::gpu::QLayout layout;
  ds::gpu::QWeightPtrs ptrs;
  const int32_t* perm = nullptr;  // act-order: the checkpoint row of each sorted row
  float* bias = nullptr;
};

// A GPTQ/AutoRound weight as the checkpoint stores it, in device memory, dequantised per use by the
// portable kernel (kernels/gpu/gptq_linear.cu): the layouts the quantized GEMM does not take (fp32
// activations, group sizes not a multiple of 16, act-order groups of unequal size).
class GpuGptqWeight : public GpuWeight {
 public:
  const int32_t* qweight = nullptr;
  const int32_t* qzeros = nullptr;
  const uint16_t* scales = nullptr;
  const int32_t* g_idx = nullptr;
  float* bias = nullptr;
  int bits = 4, group_size = 128;
  bool sym = true, zeros_v2 = false, bf16_scales = false;
};

// Device memory owned by the backend's runtime.
class GpuBuffer : public DeviceBuffer {
 public:
  GpuBuffer(Runtime* rt, void* p, size_t bytes) : rt_(rt) {
    data_ = p;
    bytes_ = bytes;
  }
  ~GpuBuffer() override { rt_->free(data_); }

 private:
  Runtime* rt_;
};

// One step's metadata in device memory (plan() fills it; every op reads it), plus the host copy
// that sizes launch grids.
struct DeviceStep {
  int32_t* token_ids = nullptr;     // [T]
  int64_t* positions = nullptr;     // [T][3]
  int32_t* cu_seqlens = nullptr;    // [S+1]
  int64_t* start_pos = nullptr;     // [S]
  int32_t* state_slots = nullptr;   // [S]
  int32_t* block_tables = nullptr;  // [S][blocks_per_seq]
  int32_t* reset_slots = nullptr;   // [n_reset]
  int32_t* logit_rows = nullptr;    // [n_logit_rows]
  int32_t* token_seq = nullptr;     // [T] sequence index of each token row
  int64_t T = 0;
  int S = 0, blocks_per_seq = 0, n_reset = 0, n_logit_rows = 0;
  int64_t max_new_tokens = 0;  // longest sequence's new tokens this step
  int64_t max_context = 0;     // longest sequence's start_pos + new tokens
  bool all_decode = false;     // every sequence has one new token
};

struct GpuOptions {
  DType activation_dtype = DType::kF32;  // f32, bf16 or f16
};

class GpuBackend final : public Backend {
 public:
  GpuBackend(std::unique_ptr<Runtime> rt, GpuOptions options);
  ~GpuBackend() override;

  Runtime& runtime() { return *rt_; }
  std::string name() const override;
  DType activation_dtype() const override { return options_.activation_dtype; }
  DType kv_cache_dtype() const override { return options_.activation_dtype; }

  Result<std::unique_ptr<DeviceBuffer>> alloc(size_t bytes, const std::string& what) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void synchronize() override;
  void* native_stream() const override { return rt_->stream(); }

  Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) override;
  Status allocate_cache(const CacheSpec& spec) override;
  size_t cache_bytes() const override;
  Status reserve_step(const StepLimits& limits) override;
  Result<EmbeddingTable> prepare_embedding(const EmbeddingTable& host) override;
  Status prepare_experts(const PreparedWeight* const* gate, const PreparedWeight* const* up,
                         const PreparedWeight* const* down, int num_experts) override;
  std::optional<DeviceMemory> device_memory() override;
  Status plan(const StepMeta& meta) override;
  void reset_states() override;
  bool supports_graphs() const override { return true; }
  Status begin_capture() override;
  Result<std::unique_ptr<StepGraph>> end_capture() override;
  Status replay(const StepGraph& graph) override;

  void embed(const EmbeddingTable& table, Act out) override;
  void rms_norm(Act x, const float* w, float eps, bool zero_centred, Act out) override;
  void gated_rms_norm(Act x, Act z, const float* w, float eps, Act out) override;
  void l2_norm_heads(Act x, int head_dim, float eps, float scale) override;
  void linear(const PreparedWeight& w, Act x, Act y) override;
  void linear_shared_input(Act x, const PreparedWeight* const* w, const Act* y, int n) override;
  void rope_mrope(Act x, int heads, int head_dim, int rot_dim, double theta, const int32_t* mrope_section) override;
  void split_query_gate(Act qg, int heads, int head_dim, Act q, Act gate) override;
  void attention(int layer, Act q, Act k, Act v, int heads, int kv_heads, int head_dim, float scale,
                 Act out) override;
  void conv1d_causal(int layer, Act x, const float* w, const float* bias, int kernel, Act y) override;
  void gdn_gates(Act a, Act b, const float* A_log, const float* dt_bias, Act g, Act beta) override;
  void gdn_decode(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) override;
  void gdn_prefill(int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o) override;
  void moe_route(Act logits, int top_k, bool renormalize, int32_t* ids, Act weights) override;
  void moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int num_experts, const PreparedWeight* const* gate,
                   const PreparedWeight* const* up, const PreparedWeight* const* down, Act out) override;
  void silu_mul(Act gate, Act up, Act out) override;
  void sigmoid_gate(Act x, Act gate) override;
  void add(Act x, Act y) override;
  void add_sigmoid_gated(Act x, Act y, Act gate_logit) override;
  void gather_logit_rows(Act h, int64_t first, Act out) override;
  void copy_rows(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                 size_t rows) override;
  void sample(Act logits, const SamplingRow* rows, SampleResult* out) override;
  void target_logprobs(Act logits, const int32_t* targets, const int32_t* top_k, PositionLogprobs* out) override;

  // Scratch each op group needs for a step of `limits` (reserve_step allocates the largest).
  static size_t attention_scratch_bytes(const StepLimits& limits, const CacheSpec& cache);
  static size_t gdn_scratch_bytes(const StepLimits& limits, const CacheSpec& cache);
  static size_t moe_scratch_bytes(const StepLimits& limits, const CacheSpec& cache);
  static size_t sample_scratch_bytes(const StepLimits& limits, const CacheSpec& cache);

 private:
  // Fails the process with the op, its shapes and the runtime's error when a launch failed (a
  // failed launch leaves the device unusable; ops have no error channel by contract). `shapes` is a
  // callable returning the description, formatted only on failure (this runs after every launch).
  template <typename Shapes>
  void check(const char* op, Shapes&& shapes) const {
    Status s = rt_->check_launch(op, "");
    if (!s.is_ok()) launch_failed(op, shapes(), s);
  }
  [[noreturn]] void launch_failed(const char* op, const std::string& shapes, const Status& s) const;
  float* ssm_state(int layer) const;   // slot 0 of GDN layer `layer`; slots are gdn_slot_floats_ apart
  float* conv_state(int layer) const;  // conv state of slot 0, inside the same slot
  void* scratch() const { return scratch_ ? scratch_->data() : nullptr; }

  std::unique_ptr<Runtime> rt_;
  GpuOptions options_;
  // Cache pools: per attention layer K and V blocks; per GDN layer one buffer of slots.
  CacheSpec cache_;
  std::vector<std::unique_ptr<DeviceBuffer>> kv_k_, kv_v_, gdn_pool_;
  int64_t gdn_slot_floats_ = 0, ssm_floats_ = 0;
  // Step metadata and op scratch (reserve_step).
  StepLimits limits_;
  std::unique_ptr<DeviceBuffer> meta_buf_, scratch_;
  std::vector<unsigned char> meta_host_;  // staging for plan()'s one upload
  DeviceStep step_;
  // Weights uploaded by prepare_weight (owned here, the PreparedWeight holds raw pointers), through
  // one staging uploader per load (one progress bar), finished when the cache is allocated.
  std::vector<std::unique_ptr<DeviceBuffer>> weights_;
  std::unique_ptr<WeightUploader> uploader_;
  Status upload_weight(void* dst, const void* src, size_t bytes);
  Result<std::unique_ptr<PreparedWeight>> prepare_gptq(const WeightSource& src);
  Status finish_uploads();

  // The quantized GEMM (gpu_quant.cpp): the repack (null when the layout is not one it takes), its
  // split-K and act-order buffers, the linear and the grouped experts.
  Result<std::unique_ptr<PreparedWeight>> prepare_quant(const WeightSource& src);
  Status reserve_quant();  // after limits_ is set
  Status reserve_gather();
  void fill_split_k(ds::gpu::QGemmCall& c) const;
  void quant_linear(const GpuQuantWeight& w, Act x, Act y);
  Result<std::vector<ds::gpu::QWeightPtrs>> quant_expert_table(const PreparedWeight* const* gate,
                                                               const PreparedWeight* const* up,
                                                               const PreparedWeight* const* down, int E) const;
  // The device table prepare_experts built for these experts (the process stops if there is none).
  const void* expert_table(const PreparedWeight* const* gate, const PreparedWeight* const* up,
                           const PreparedWeight* const* down, int E) const;
  void quant_moe_experts(Act x, const int32_t* ids, Act weights, int top_k, int E, const PreparedWeight* const* gate,
                         const PreparedWeight* const* down, const void* table, Act out);
  std::unique_ptr<DeviceBuffer> repack_tmp_;          // checkpoint tensors being repacked
  std::unique_ptr<DeviceBuffer> qws_, qcounters_;     // split-K partials and arrival counters
  std::unique_ptr<DeviceBuffer> qgather_;             // act-order inputs [max_tokens][k_pad]
  int64_t max_act_order_k_ = 0;
  int target_blocks_ = 16;

};

// Opens device `index` of the compiled vendor and makes a backend on it.
Result<std::shared_ptr<Backend>> make_gpu_backend(int index, GpuOptions options);

}  // namespace ds::backend::gpu
