#include "deltaserve/model/memory_plan.h"

#include <algorithm>
#include <set>

#include "deltaserve/model/quant_rules.h"
#include "src/model/shard.h"

namespace ds::model {

namespace {

uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Fraction of a kv-head-split tensor one rank holds: max(1, nkv/TP) of nkv heads.
uint64_t kv_share(uint64_t bytes, int tp, int nkv) {
  return div_up(bytes * static_cast<uint64_t>(kv_heads_per_rank(nkv, tp)), static_cast<uint64_t>(nkv));
}

}  // namespace

uint64_t linear_bytes_per_rank(const LinearWeight& w, TpSplit split, int tp, int num_kv_heads) {
  const uint64_t t = static_cast<uint64_t>(tp);
  switch (split) {
    case TpSplit::kReplicated:
      return w.stored_bytes();
    case TpSplit::kKvHeads:  // like a column split by heads; g_idx indexes K and stays whole
      return kv_share(w.weight.nbytes + w.qweight.nbytes + w.scales.nbytes + w.qzeros.nbytes + w.bias.nbytes, tp,
                      num_kv_heads) +
             w.g_idx.nbytes;
    case TpSplit::kVocab:
    case TpSplit::kHeads:
      return div_up(w.stored_bytes(), t);
    case TpSplit::kColumn:  // g_idx indexes K, which stays whole
      return div_up(w.weight.nbytes + w.qweight.nbytes + w.scales.nbytes + w.qzeros.nbytes + w.bias.nbytes, t) +
             w.g_idx.nbytes;
    case TpSplit::kRow: {
      // Act-order and channelwise scales are needed in full on every rank (vLLM
      // marlin_repeat_scales_on_all_ranks).
      const bool full_scales = w.scheme.quantized() && (w.scheme.desc_act || w.scheme.group_size < 0);
      const uint64_t sz = w.scales.nbytes + w.qzeros.nbytes;
      return div_up(w.weight.nbytes + w.qweight.nbytes + w.g_idx.nbytes, t) + (full_scales ? sz : div_up(sz, t)) +
             w.bias.nbytes;
    }
  }
  return w.stored_bytes();
}

uint64_t tensor_bytes_per_rank(const TensorView& v, TpSplit split, int tp, int num_kv_heads) {
  switch (split) {
    case TpSplit::kReplicated: return v.nbytes;
    case TpSplit::kKvHeads: return kv_share(v.nbytes, tp, num_kv_heads);
    default: return div_up(v.nbytes, static_cast<uint64_t>(tp));
  }
}

Result<MemoryPlan> plan_memory(const ModelDesc& m, const MemoryOptions& o) {
  const ModelConfig& c = m.config;
  MemoryPlan p;
  p.options = o;
  const int tp = o.tensor_parallel_size;
  if (tp < 1) return invalid_argument("tensor-parallel-size must be at least 1");
  if (o.gpu_memory_utilization <= 0 || o.gpu_memory_utilization > 1)
    return invalid_argument("gpu-memory-utilization must be in (0, 1]");
  if (o.max_num_seqs < 1) return invalid_argument("max-num-seqs must be at least 1");
  if (o.max_num_batched_tokens < 1) return invalid_argument("max-num-batched-tokens must be at least 1");
  p.max_model_len = o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings;
  if (o.max_model_len < 0) return invalid_argument("max-model-len must be positive");
  if (p.max_model_len > c.max_position_embeddings && c.rope.type != "yarn")
    p.notes.push_back("max-model-len " + std::to_string(p.max_model_len) + " exceeds max_position_embeddings " +
                      std::to_string(c.max_position_embeddings) + " (vLLM refuses this without rope scaling)");

  DS_RETURN_IF_ERROR(check_tp_config(c, tp));

  std::vector<ComponentMemory> comps(kNumComponents);
  std::vector<std::set<std::string>> formats(kNumComponents);
  for (int i = 0; i < kNumComponents; ++i) comps[static_cast<size_t>(i)].component = static_cast<Component>(i);
  Status bad;
  visit_linears(m, [&](const LinearRef& r) {
    if (bad.is_ok()) bad = check_quant_shard(*r.w, r.split, tp);
    auto& cm = comps[static_cast<size_t>(r.component)];
    cm.bytes += r.w->stored_bytes();
    cm.bytes_per_rank += linear_bytes_per_rank(*r.w, r.split, tp, c.num_kv_heads);
    cm.modules += 1;
    const DType dt = r.w->weight.dtype == DType::kUnknown ? DType::kBF16 : r.w->weight.dtype;
    formats[static_cast<size_t>(r.component)].insert(describe_scheme(r.w->scheme, dt));
  });
  if (!bad.is_ok()) return bad;
  visit_tensors(m, [&](const TensorRef& r) {
    auto& cm = comps[static_cast<size_t>(r.component)];
    cm.bytes += r.t->nbytes;
    cm.bytes_per_rank += tensor_bytes_per_rank(*r.t, r.split, tp, c.num_kv_heads);
    if (r.component == Component::kEmbedding || r.component == Component::kVision) {
      std::string n = dtype_name(r.t->dtype);
      std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
      formats[static_cast<size_t>(r.component)].insert(n);
    }
  });
  if (c.tie_word_embeddings) formats[static_cast<size_t>(Component::kLmHead)].insert("tied to embedding");
  for (int i = 0; i < kNumComponents; ++i) {
    auto& cm = comps[static_cast<size_t>(i)];
    cm.formats.assign(formats[static_cast<size_t>(i)].begin(), formats[static_cast<size_t>(i)].end());
    if (cm.component == Component::kMtp) cm.counted = o.include_mtp;
    if (cm.component == Component::kVision) cm.counted = o.include_vision;
    if (cm.bytes == 0 && cm.formats.empty()) continue;
    if (cm.counted) {
      p.weight_bytes += cm.bytes;
      p.weight_bytes_per_rank += cm.bytes_per_rank;
    }
    p.components.push_back(cm);
  }

  // Caches. KV: attention layers only, K and V, kv heads replicated when TP > nkv.
  for (LayerKind k : c.layer_types) (k == LayerKind::kFullAttention ? p.num_attention_layers : p.num_gdn_layers)++;
  const int attn_layers = p.num_attention_layers + (o.include_mtp && m.mtp.present ? static_cast<int>(m.mtp.layers.size()) : 0);
  p.kv_heads_per_rank = kv_heads_per_rank(c.num_kv_heads, tp);
  p.kv_bytes_per_token = 2ull * static_cast<uint64_t>(p.kv_heads_per_rank) * static_cast<uint64_t>(c.head_dim) *
                         static_cast<uint64_t>(o.kv_cache_dtype_bytes) * static_cast<uint64_t>(attn_layers);
  const uint64_t act_dtype = c.torch_dtype == "float32" ? 4 : 2;
  p.conv_state_bytes_per_seq = static_cast<uint64_t>(c.conv_dim() / tp) *
                               static_cast<uint64_t>(c.linear_conv_kernel_dim - 1) * act_dtype *
                               static_cast<uint64_t>(p.num_gdn_layers);
  p.ssm_state_bytes_per_seq = static_cast<uint64_t>(c.linear_num_value_heads / tp) *
                              static_cast<uint64_t>(c.linear_key_head_dim) *
                              static_cast<uint64_t>(c.linear_value_head_dim) * 4ull *
                              static_cast<uint64_t>(p.num_gdn_layers);
  p.gdn_state_bytes_per_seq = p.conv_state_bytes_per_seq + p.ssm_state_bytes_per_seq;

  // Reserve: activations of one prefill chunk through the widest per-rank projection (bf16), the
  // fp32 residual stream, fp32 logits for a full batch, and a fixed runtime overhead.
  const int64_t h = c.hidden_size;
  const int64_t vd = int64_t{c.linear_num_value_heads} * c.linear_value_head_dim;
  int64_t widest = (c.conv_dim() + vd + 2 * c.linear_num_value_heads) / tp;
  widest = std::max<int64_t>(widest, (2 * int64_t{c.num_heads} * c.head_dim) / tp + 2 * int64_t{p.kv_heads_per_rank} * c.head_dim);
  if (c.is_moe)
    widest = std::max<int64_t>(widest, (int64_t{c.num_experts_per_tok} * 2 * c.moe_intermediate_size +
                                        2 * c.shared_expert_intermediate_size) / tp);
  else
    widest = std::max<int64_t>(widest, 2 * c.intermediate_size / tp);
  const uint64_t per_token = static_cast<uint64_t>(2 * (4 * h + widest) + 4 * h);
  p.activation_bytes = per_token * static_cast<uint64_t>(o.max_num_batched_tokens);
  p.logits_bytes = static_cast<uint64_t>(o.max_num_seqs) * static_cast<uint64_t>(c.vocab_size) * 4ull;
  p.runtime_overhead_bytes = static_cast<uint64_t>(o.runtime_overhead_gib * (1ull << 30));
  p.reserve_bytes = p.activation_bytes + p.logits_bytes + p.runtime_overhead_bytes;

  if (o.gpu_memory_gib > 0) {
    p.fit_computed = true;
    p.budget_bytes = static_cast<uint64_t>(o.gpu_memory_utilization * o.gpu_memory_gib * static_cast<double>(1ull << 30));
    p.cache_bytes = static_cast<int64_t>(p.budget_bytes) - static_cast<int64_t>(p.weight_bytes_per_rank) -
                    static_cast<int64_t>(p.reserve_bytes);
    if (p.cache_bytes > 0 && p.kv_bytes_per_token > 0) {
      const int64_t state_all = static_cast<int64_t>(p.gdn_state_bytes_per_seq) * o.max_num_seqs;
      p.kv_tokens = std::max<int64_t>(0, (p.cache_bytes - state_all) / static_cast<int64_t>(p.kv_bytes_per_token));
      const uint64_t per_seq = p.gdn_state_bytes_per_seq + p.kv_bytes_per_token * static_cast<uint64_t>(p.max_model_len);
      p.max_seqs_at_max_len = static_cast<int64_t>(static_cast<uint64_t>(p.cache_bytes) / per_seq);
    }
    p.fits = p.max_seqs_at_max_len >= 1;
    if (p.cache_bytes <= 0)
      p.notes.push_back("weights and reserve exceed the memory budget: raise --gpu-memory-utilization, use more GPUs "
                        "(--tensor-parallel-size) or a smaller quantization");
    else if (!p.fits)
      p.notes.push_back("not even one sequence of max-model-len " + std::to_string(p.max_model_len) +
                        " fits: lower --max-model-len");
    else if (p.kv_tokens < p.max_model_len)
      p.notes.push_back("GDN state for max-num-seqs " + std::to_string(o.max_num_seqs) + " sequences (" +
                        std::to_string(p.gdn_state_bytes_per_seq * static_cast<uint64_t>(o.max_num_seqs) >> 20) +
                        " MiB) leaves fewer KV tokens than max-model-len: use --max-num-seqs " +
                        std::to_string(p.max_seqs_at_max_len) + " or less for full-length contexts");
  }
  if (c.num_kv_heads < tp)
    p.notes.push_back("num_key_value_heads " + std::to_string(c.num_kv_heads) + " < tensor-parallel-size " +
                      std::to_string(tp) + ": each rank keeps one replicated kv head");
  return p;
}

}  // namespace ds::model
