// The Qwen3.5 / Qwen3.6 text decoder on the CPU backend (qwen35-arch.md §3): hybrid Gated DeltaNet
// + gated full attention, dense MLP or MoE, written once over the backend op table. It owns the
// prepared weights and both cache pools (paged fp32 KV blocks per attention layer, GDN state slots
// per linear-attention layer) sized by CacheConfig; forward(StepPlan) runs any mix of prefill
// chunks and decode tokens. A sequence's logits do not depend on how it is batched or chunked.
#pragma once

#include <memory>
#include <vector>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/step_plan.h"

namespace ds::model {

struct CpuModelOptions {
  kernels::CpuIsa isa = kernels::detect_cpu_isa();
  bool chunked_gdn_prefill = false;  // chunked WY form (C=64) for multi-token steps; else token recurrence
};

class CpuQwen35Model : public Model {
 public:
  // desc must outlive the model when its views point into memory the model does not own (tests);
  // the model keeps the desc's WeightStorage alive itself.
  static Result<std::unique_ptr<CpuQwen35Model>> create(const ModelDesc& desc, const CacheConfig& cache,
                                                        const CpuModelOptions& options = {});
  ~CpuQwen35Model() override;

  const CacheConfig& cache_config() const override { return cache_; }
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  Result<StepOutput> forward(const StepPlan& plan) override;

  const ModelConfig& config() const { return cfg_; }
  size_t weight_bytes_per_token() const;  // prepared weight bytes a decode step reads (MoE: active experts)
  size_t cache_bytes() const;             // KV pool + GDN state pool
  std::string backend_name() const { return be_->name(); }

  struct Layer;

 private:
  CpuQwen35Model() = default;
  Status prepare(const ModelDesc& desc);
  void gdn_block(const Layer& L, int64_t T, const std::vector<backend::SeqSpan>& spans, const float* x, float* out);
  void attention_block(const Layer& L, int64_t T, const std::vector<backend::SeqSpan>& spans,
                       const std::vector<int64_t>& pos, const float* x, float* out);
  void mlp_block(const Layer& L, int64_t T, const float* x, float* out);

  ModelConfig cfg_;
  CacheConfig cache_;
  CpuModelOptions opt_;
  std::shared_ptr<WeightStorage> storage_;
  std::unique_ptr<backend::CpuBackend> be_;
  backend::EmbeddingTable embed_;
  std::vector<float> final_norm_;
  std::unique_ptr<backend::PreparedWeight> lm_head_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<int32_t> mrope_section_;
  int n_attn_ = 0, n_gdn_ = 0;
  // Cache pools: kv_[attn layer] = {k, v}; state_[gdn layer] = per slot SSM then conv state.
  std::vector<std::vector<float>> kv_k_, kv_v_, gdn_pool_;
  int64_t ssm_floats_ = 0, conv_floats_ = 0;
  // Step scratch (reused across calls).
  std::vector<float> buf_[10];
  std::vector<int32_t> route_ids_;
};

}  // namespace ds::model
