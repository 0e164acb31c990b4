// Walks every stored piece of a ModelDesc once, telling for each which component it belongs to
// (routed experts, shared experts, attention, GDN, ...) and how tensor parallelism splits it
// (DESIGN.md §3, research/tensor-parallel.md §1.2). Memory planning and `inspect` are built on it.
#pragma once

#include <functional>

#include "deltaserve/model/model_desc.h"

namespace ds::model {

enum class Component {
  kEmbedding,
  kLmHead,
  kAttention,  // q/k/v/o + q_norm/k_norm
  kGdn,        // projections, conv1d, A_log, dt_bias, gated norm
  kDenseMlp,
  kSharedExperts,  // shared expert MLP + its scalar gate
  kRoutedExperts,
  kRouter,
  kNorms,  // input/post-attention layer norms and the final norm
  kVision,
  kMtp,
};
const char* component_name(Component c);  // "routed_experts", "embeddings", ... (fixture manifest names)
constexpr int kNumComponents = 11;

enum class TpSplit {
  kReplicated,  // full copy on every rank
  kColumn,      // output features split (q/k/v/z, gate/up, experts' gate/up by intermediate size)
  kRow,         // input features split (o_proj, out_proj, down_proj), partial sums all-reduced
  kKvHeads,     // k/v projections: nkv/TP heads per rank, replicated when TP > nkv
  kVocab,       // embedding / lm_head rows
  kHeads,       // per-head tensors (conv1d channels, A_log, dt_bias)
};

// kv heads one rank holds: max(1, nkv / TP) (vLLM's QKVParallelLinear replicates them when TP > nkv).
inline int kv_heads_per_rank(int nkv, int tp) { return nkv >= tp ? nkv / tp : 1; }

struct LinearRef {
  const LinearWeight* w;
  Component component;
  TpSplit split;
  int layer;  // -1 outside the decoder stack
};

struct TensorRef {
  const TensorView* t;
  Component component;
  TpSplit split;
  int layer;
};

// Every Linear: lm_head (skipped when tied to the embedding), per-layer projections, MTP.
void visit_linears(const ModelDesc& m, const std::function<void(const LinearRef&)>& fn);
// Every non-Linear tensor: embedding, norms, conv1d, A_log, dt_bias, vision, MTP norms.
void visit_tensors(const ModelDesc& m, const std::function<void(const TensorRef&)>& fn);

}  // namespace ds::model
