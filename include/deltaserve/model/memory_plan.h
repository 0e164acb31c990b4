// Memory needed per GPU for a ModelDesc at tensor-parallel size N: weight bytes per rank (column/row
// splits, experts split by intermediate size, replicated pieces counted on every rank), KV cache bytes
// per token (full-attention layers only), GDN state bytes per sequence, a stated activation/overhead
// reserve, and how many tokens / sequences fit in --gpu-memory-utilization x device memory after that.
// The engine sizes its cache pools from the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/model_walk.h"

namespace ds::model {

struct MemoryOptions {
  int tensor_parallel_size = 1;
  int64_t max_model_len = 0;  // 0: max_position_embeddings
  double gpu_memory_utilization = 0.9;
  double gpu_memory_gib = 0;  // device memory per GPU; 0: unknown (no fit computed)
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;  // prefill chunk the activation reserve is sized for
  int kv_cache_dtype_bytes = 2;           // fp16/bf16 cache
  bool include_mtp = false;               // MTP weights + its KV layer (speculative decoding on)
  bool include_vision = true;
  double runtime_overhead_gib = 1.0;      // device context, kernel workspaces, allocator slack
};

struct ComponentMemory {
  Component component;
  uint64_t bytes = 0;           // whole model
  uint64_t bytes_per_rank = 0;  // on each rank at this TP
  int64_t modules = 0;          // Linear modules in it
  std::vector<std::string> formats;  // distinct storage formats, e.g. "int4 g32 sym (gptq v1)", "bf16"
  bool counted = true;          // false: reported but not in weights_per_rank (MTP when off)
};

struct MemoryPlan {
  MemoryOptions options;
  std::vector<ComponentMemory> components;  // in Component order, empty ones left out
  uint64_t weight_bytes = 0;                // counted components, whole model
  uint64_t weight_bytes_per_rank = 0;
  int num_attention_layers = 0, num_gdn_layers = 0;
  int kv_heads_per_rank = 0;  // max(1, nkv / TP): kv heads are replicated when TP > nkv
  uint64_t kv_bytes_per_token = 0;    // per rank, all attention layers, K and V
  uint64_t conv_state_bytes_per_seq = 0, ssm_state_bytes_per_seq = 0;  // per rank, all GDN layers
  uint64_t gdn_state_bytes_per_seq = 0;
  int64_t max_model_len = 0;
  // Reserve for everything that is not weights or cache.
  uint64_t activation_bytes = 0;  // one prefill chunk of max_num_batched_tokens through the widest layer
  uint64_t logits_bytes = 0;      // fp32 logits for max_num_seqs rows
  uint64_t runtime_overhead_bytes = 0;
  uint64_t reserve_bytes = 0;
  // Fit (only when gpu_memory_gib > 0).
  bool fit_computed = false;
  uint64_t budget_bytes = 0;      // utilization x device memory
  int64_t cache_bytes = 0;        // budget - weights - reserve (negative: weights do not fit)
  int64_t kv_tokens = 0;          // KV tokens that fit after GDN state for max_num_seqs sequences
  int64_t max_seqs_at_max_len = 0;  // sequences of max_model_len tokens that fit (state + KV each)
  bool fits = false;              // at least one max_model_len sequence fits
  std::vector<std::string> notes;
};

// Errors: invalid TP for this model (heads, intermediate sizes, quantized shard alignment), naming
// the module.
Result<MemoryPlan> plan_memory(const ModelDesc& model, const MemoryOptions& options);

// Bytes this Linear / tensor occupies on one rank under `split`.
uint64_t linear_bytes_per_rank(const LinearWeight& w, TpSplit split, int tp, int num_kv_heads);
uint64_t tensor_bytes_per_rank(const TensorView& t, TpSplit split, int tp, int num_kv_heads);

}  // namespace ds::model
