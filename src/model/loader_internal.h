// Internal to the loader: binding named tensors and Linear modules of one checkpoint, checking each
// against its resolved quantization scheme (linear_bind.cpp), shared by loader.cpp.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/quant_rules.h"
#include "deltaserve/model/safetensors.h"

namespace ds::model::detail {

struct LoadContext {
  const ModelConfig* cfg = nullptr;
  QuantRules* rules = nullptr;
  const WeightStorage* storage = nullptr;  // nullptr: config-only, views are estimates without data
  DType model_dtype = DType::kBF16;        // estimate dtype of unquantized tensors
  std::set<std::string> used;              // tensor names consumed

  bool config_only() const { return storage == nullptr; }
};

// A plain tensor of the given shape (norms, conv1d, A_log, embeddings). Missing + required: error.
Result<TensorView> bind_tensor(LoadContext& ctx, const std::string& name, const std::vector<int64_t>& shape,
                               bool required = true, DType estimate_dtype = DType::kUnknown);

// One Linear [N, K] named `name` (without .weight/.qweight); core: a module quantizers normally handle.
Result<LinearWeight> bind_linear(LoadContext& ctx, const std::string& name, int64_t n, int64_t k, bool core,
                                 bool is_lm_head = false);

// Routed experts of one MoE layer, fused 3-D bf16 or per expert. `mlp_prefix` ends in "mlp.".
Status bind_experts(LoadContext& ctx, const std::string& mlp_prefix, bool core, MoeWeights* moe);

// Tensor shapes a quantized Linear must have (or has, in config-only estimates).
struct PackedShapes {
  std::vector<int64_t> qweight, qzeros, scales, g_idx;
};
PackedShapes packed_shapes(int64_t n, int64_t k, const QuantScheme& s);

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace ds::model::detail
