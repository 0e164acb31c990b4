// The Qwen3.5 / Qwen3.6 text decoder (qwen35-arch.md §3), written once for every backend and every
// tensor-parallel rank: hybrid Gated DeltaNet + gated full attention, dense MLP or MoE with a
// shared expert. The graph only wires backend ops; the backend owns the prepared weights, both
// cache pools and the activation workspace, all sized at create(). forward(StepPlan) plans the
// step once (backend.plan) and then runs ops that neither allocate nor depend on host pointers,
// for any mix of prefill chunks and decode tokens. A sequence's results do not depend on how it is
// batched or chunked.
#pragma once

#include <memory>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/dist/communicator.h"
#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/step_plan.h"

namespace ds::model {

struct ModelOptions {
  CacheConfig cache;
  int64_t max_step_tokens = 4096;  // the largest step (engine: max_num_batched_tokens)
  int max_step_seqs = 256;         // the most sequences in one step (engine: max_num_seqs)
  int64_t max_model_len = 0;       // longest sequence (block-table width); 0: the whole KV pool
  bool chunked_gdn_prefill = false;  // chunked WY form (C=64) for multi-token steps; else token recurrence
};

class Qwen35Model : public Model {
 public:
  // desc must outlive the model when its views point into memory the model does not own (tests);
  // the model keeps the desc's WeightStorage alive itself.
  static Result<std::unique_ptr<Qwen35Model>> create(const ModelDesc& desc, std::shared_ptr<backend::Backend> be,
                                                     std::shared_ptr<dist::Communicator> comm,
                                                     const ModelOptions& options);
  ~Qwen35Model() override;

  const CacheConfig& cache_config() const override { return opt_.cache; }
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  Result<StepOutput> forward(const StepPlan& plan) override;

  const ModelConfig& config() const { return cfg_; }
  size_t weight_bytes_per_token() const;  // prepared weight bytes a decode step reads (MoE: active experts)
  size_t cache_bytes() const { return be_->cache_bytes(); }
  std::string backend_name() const { return be_->name(); }
  backend::Backend& backend() { return *be_; }

  struct Layer;
  struct Workspace;

 private:
  Qwen35Model() = default;
  Status prepare_weights(const ModelDesc& desc);
  Status allocate_workspace();
  Status build_meta(const StepPlan& plan);
  Status gdn_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status attention_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status mlp_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status logits_pass(const StepPlan& plan, StepOutput* out);

  ModelConfig cfg_;
  ModelOptions opt_;
  std::shared_ptr<WeightStorage> storage_;
  std::shared_ptr<backend::Backend> be_;
  std::shared_ptr<dist::Communicator> comm_;
  backend::EmbeddingTable embed_;
  std::unique_ptr<backend::DeviceBuffer> params_;  // every small fp32 parameter (norms, conv, gates)
  const float* final_norm_ = nullptr;
  std::unique_ptr<backend::PreparedWeight> lm_head_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<int32_t> mrope_section_;
  int n_attn_ = 0, n_gdn_ = 0;
  std::unique_ptr<Workspace> ws_;
  // Host side of the step plan, kept between steps so its capacity is reused.
  backend::StepMeta meta_;
  struct LogitRow {
    int seq;
    int64_t token;  // index among the sequence's new tokens
  };
  std::vector<LogitRow> logit_rows_;
  int n_sample_rows_ = 0;  // the first logit rows are the sampled ones
};

// A model on the CPU backend with a single rank: what the offline commands and tests use.
Result<std::unique_ptr<Qwen35Model>> create_cpu_model(const ModelDesc& desc, const ModelOptions& options);

}  // namespace ds::model
