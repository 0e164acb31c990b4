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

struct ShardedWeight;

struct ModelOptions {
  CacheConfig cache;
  int64_t max_step_tokens = 4096;  // the largest step (engine: max_num_batched_tokens)
  int max_step_seqs = 256;         // the most sequences in one step (engine: max_num_seqs)
  int64_t max_model_len = 0;       // longest sequence (block-table width); 0: the whole KV pool
  bool chunked_gdn_prefill = false;  // chunked WY form (C=64) for multi-token steps; else token recurrence
  // Decode steps as captured graphs (backends with supports_graphs()): a step of S one-token
  // sequences, none at position 0, every context within graph_max_context (0: max_model_len) runs
  // as the graph of the smallest size >= S, padded with dummy sequences. Empty: every step eager.
  std::vector<int> graph_batch_sizes;
  int64_t graph_max_context = 0;
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
  // Replaces the cache pools (memory planning sizes them after a profiling step). Captured graphs
  // held the old pools' addresses and are dropped.
  Status allocate_cache(const CacheConfig& cache);
  // Runs one step of the largest size the workspace was planned for (one sequence of
  // min(max_step_tokens, max_model_len) tokens, sampled), so every lazily created device resource
  // exists before memory is measured. Needs a cache of at least that many tokens and one slot.
  Status profile_step();
  // Captures the decode graphs of every size in graph_batch_sizes now (vLLM captures at start-up;
  // forward() captures a missing one on first use). Returns how many exist.
  Result<int> capture_graphs();
  const std::vector<int>& graph_sizes() const { return graph_sizes_; }
  int64_t graph_steps() const { return graph_steps_; }  // steps run by replaying a graph
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
  Status plan_rank(const ModelDesc& desc);  // dims_, and the refusals of this tensor-parallel size
  Status prepare_weights(const ModelDesc& desc);
  Status allocate_workspace();
  Status build_meta(const StepPlan& plan);
  Status gdn_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status attention_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status mlp_block(const Layer& L, int64_t T, backend::Act x, backend::Act out);
  Status logits_pass(const StepPlan& plan, bool first_pass_computed, StepOutput* out);
  backend::CacheSpec cache_spec() const;
  Status run_layers(int64_t T);
  Status compute_logits(int64_t first_row, int64_t rows);
  // The graph path (qwen35_graphs.cpp).
  int graph_for(const StepPlan& plan) const;  // index into graph_sizes_; -1: run eagerly
  void pad_meta(int B);
  Status capture_graph(size_t g);

  ModelConfig cfg_;
  ModelOptions opt_;
  std::shared_ptr<WeightStorage> storage_;
  std::shared_ptr<backend::Backend> be_;
  std::shared_ptr<dist::Communicator> comm_;
  // This rank's share of the heads and features (tensor-parallel.md §1.2; the whole model at TP 1):
  // attention and GDN heads, GDN conv channels, vocabulary rows of the embedding and lm_head. The
  // tiny in_proj_a/b are replicated: each rank reads its own value heads' columns [hv_first, +hv).
  struct RankDims {
    int nh = 0, nkv = 0, hk = 0, hv = 0, hv_first = 0;
    int64_t conv_dim = 0, vocab = 0;
  } dims_;
  int64_t embed_rows_ = 0;  // token ids the whole embedding holds (every rank checks against it)
  // Host copies of this rank's weight shards that prepared weights still read (aliases_source).
  std::vector<std::unique_ptr<ShardedWeight>> shards_;
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
  // Decode graphs by batch size, and the sizes allowed (options clamped to the workspace). With
  // graphs the cache holds one KV block and one state slot more than the engine sees: the dummy
  // sequences padding a step write there.
  std::vector<int> graph_sizes_;
  int64_t graph_context_ = 0;
  std::vector<std::unique_ptr<backend::StepGraph>> graphs_;  // indexed like graph_sizes_
  int64_t graph_steps_ = 0;
};

// A model on the CPU backend with a single rank: what the offline commands and tests use.
Result<std::unique_ptr<Qwen35Model>> create_cpu_model(const ModelDesc& desc, const ModelOptions& options);

}  // namespace ds::model
