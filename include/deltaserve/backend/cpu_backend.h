// The CPU backend: weights repacked once at load into 16-row interleaved int4/int8 blocks (dense
// bf16/fp16/fp32 weights stay in place, zero-copy), fp32 activations, ops split over
// ThreadPool::global(). The ISA (scalar reference, AVX2, AVX-512) is chosen at construction.
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

// One y = x W^T of a batch of independent linears run under one parallel dispatch.
struct LinearCall {
  const PreparedWeight* w = nullptr;
  const float* x = nullptr;  // [m][k]
  int64_t m = 0;
  float* y = nullptr;  // [m][ldy]
  int64_t ldy = 0;
};

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(kernels::CpuIsa isa);
  kernels::CpuIsa isa() const { return isa_; }
  std::string name() const override;

  Result<std::unique_ptr<PreparedWeight>> prepare_weight(const WeightSource& src) const override;
  void embed(const EmbeddingTable& table, const int32_t* ids, int64_t n, float* out) override;
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, bool zero_centred,
                float* out) override;
  void gated_rms_norm(const float* x, const float* z, const float* w, int64_t rows, int64_t dim, float eps,
                      float* out) override;
  void linear(const PreparedWeight& w, const float* x, int64_t m, float* y, int64_t ldy) override;
  void linear_multi(const LinearCall* calls, int n);
  void lm_head(const PreparedWeight& w, const float* x, int64_t m, float* logits) override;
  void rope_mrope(float* x, int64_t T, int heads, int head_dim, int64_t stride, int rot_dim, double theta,
                  const int32_t* mrope_section, const int64_t* pos) override;
  void attention(const float* q, const float* k, const float* v, const SeqSpan* seqs, int n_seqs, int nh,
                 int nkv, int hd, float scale, const KvCacheView& cache, float* out) override;
  void conv1d_causal(const float* x, int64_t ldx, const SeqSpan* seqs, int n_seqs, int64_t C, int K,
                     const float* w, const float* bias, float* y, int64_t ldy) override;
  void gdn_decode(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v, const float* g,
                  const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv, int dk, int dv,
                  float* o) override;
  void gdn_prefill(const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
                   const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv, int dk,
                   int dv, float* o) override;
  void moe_route(const float* logits, int64_t T, int64_t E, int top_k, bool renormalize, int32_t* ids,
                 float* weights) override;
  void moe_experts(const float* x, int64_t T, int64_t H, const int32_t* ids, const float* weights, int top_k,
                   const PreparedWeight* const* gate, const PreparedWeight* const* up,
                   const PreparedWeight* const* down, float* out) override;
  void silu_mul(const float* gate, const float* up, int64_t n, float* out) override;
  void sigmoid_gate(float* x, const float* gate, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;

 private:
  void gdn_run(bool chunked, const float* q, const float* k, int64_t ld_qk, const float* v, int64_t ld_v,
               const float* g, const float* beta, const SeqSpan* seqs, int n_seqs, int Hk, int Hv, int dk,
               int dv, float* o);

  kernels::CpuIsa isa_;
  const kernels::CpuKernels* kern_;
  std::vector<std::vector<float>> input_scratch_;  // gathered activations + group sums per call
  std::vector<float> moe_scratch_;
};

}  // namespace ds::backend
