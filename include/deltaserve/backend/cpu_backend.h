// The CPU backend: weights repacked once at load into 16-row interleaved int4/int8 blocks (dense
// bf16/fp16/fp32 weights stay in place, zero-copy), fp32 activations and KV, ops split over
// ThreadPool::global(). The ISA (scalar reference, AVX2, AVX-512) is chosen at construction.
// "Device" memory is host memory; the stream is the calling thread, so synchronize() is a no-op.
#pragma once

#include <memory>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/kernels/cpu.h"

namespace ds::backend {

class CpuWeight : public PreparedWeight {
 public:
  kernels::PackedLinear view;  // points into the vectors below or into the checkpoint mapping
  std::vector<uint8_t> packed;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  std::vector<int32_t> group_start, perm;
  std::vector<float> bias;
};

// Repacks one checkpoint Linear into the CPU layout (kernels/cpu.h), never materialising fp32 weights.
Result<std::unique_ptr<CpuWeight>> prepare_cpu_weight(const WeightSource& src);

// Page-aligned host memory; untouched pages cost nothing until first written.
class HostBuffer : public DeviceBuffer {
 public:
  static Result<std::unique_ptr<DeviceBuffer>> make(size_t bytes, const std::string& what);
  ~HostBuffer() override;
};

// One planned sequence of the step, as the CPU ops read it.
struct CpuSeq {
  int64_t token_begin = 0, n_tokens = 0, start_pos = 0;
  const int32_t* block_table = nullptr;
  int32_t slot = -1;
};

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(kernels::CpuIsa isa = kernels::detect_cpu_isa());
  kernels::CpuIsa isa() const { return isa_; }
  std::string name() const override;
  DType activation_dtype() const override { return DType::kF32; }
  DType kv_cache_dtype() const override { return DType::kF32; }

  Result<std::unique_ptr<DeviceBuffer>> alloc(size_t bytes, const std::string& what) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void synchronize() override {}

  Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) override;
  Status allocate_cache(const CacheSpec& spec) override;
  size_t cache_bytes() const override;
  Status reserve_step(const StepLimits& limits) override;
  Status plan(const StepMeta& meta) override;
  void reset_states() override;

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

 private:
  // One y = x W^T of a batch of independent linears run under one parallel dispatch.
  struct LinearCall {
    const PreparedWeight* w = nullptr;
    const float* x = nullptr;  // [m][ldx]
    int64_t ldx = 0;
    int64_t m = 0;
    float* y = nullptr;  // [m][ldy]
    int64_t ldy = 0;
  };
  void run_linears(const LinearCall* calls, int n);
  void gdn_run(bool chunked, int layer, Act q, Act k, Act v, Act g, Act beta, int Hk, int Hv, int dk, int dv, Act o);
  float* ssm_state(int layer, int32_t slot) const;
  float* conv_state(int layer, int32_t slot) const;

  kernels::CpuIsa isa_;
  const kernels::CpuKernels* kern_;
  // Cache pools.
  CacheSpec cache_;
  std::vector<std::unique_ptr<DeviceBuffer>> kv_k_, kv_v_, gdn_pool_;
  int64_t ssm_floats_ = 0, conv_floats_ = 0;
  // The planned step (capacity reserved by reserve_step, so plan() does not reallocate).
  StepLimits limits_;
  StepMeta meta_;
  std::vector<CpuSeq> seqs_;
  // Scratch grown to its high-water mark: gathered act-order inputs + group sums, MoE buffers.
  std::vector<std::vector<float>> input_scratch_;
  std::vector<float> moe_scratch_;
};

}  // namespace ds::backend
