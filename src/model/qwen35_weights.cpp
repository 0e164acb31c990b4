// Qwen35Model's weights: this rank's shard of every checkpoint tensor prepared on the backend
// (tensor-parallel.md §1.2), the small fp32 parameters in one buffer.
#include <sys/mman.h>
#include <unistd.h>

#include "deltaserve/model/model_walk.h"
#include "src/model/qwen35_internal.h"
#include "src/model/shard.h"

namespace ds::model {

namespace {

Status to_f32(const TensorView& t, const std::string& what, int64_t expect_numel, std::vector<float>* out) {
  if (!t.present()) return not_found(what + ": tensor missing");
  if (expect_numel >= 0 && t.numel() != expect_numel)
    return corrupt(what + ": expected " + std::to_string(expect_numel) + " elements, found " + std::to_string(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype) {
      case DType::kF32: out->push_back(static_cast<const float*>(t.data)[i]); break;
      case DType::kBF16: out->push_back(bf16_to_f32(static_cast<const uint16_t*>(t.data)[i])); break;
      case DType::kF16: out->push_back(f16_to_f32(static_cast<const uint16_t*>(t.data)[i])); break;
      default: return unsupported(what + ": dtype " + dtype_name(t.dtype) + " is not supported");
    }
  }
  return Status::ok();
}

// After repacking, the checkpoint's GPTQ tensors are never read again: drop their mapped pages so
// resident memory is the packed copy, not both (file-backed, read-only: the kernel re-reads on access).
void release_pages(const TensorView& t) {
  if (!t.present() || t.nbytes == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(t.data) + page - 1) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(t.data) + t.nbytes) & ~(page - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void release_quantized(const LinearWeight& w) {
  if (!w.scheme.quantized()) return;
  for (const TensorView* t : {&w.qweight, &w.qzeros, &w.scales, &w.g_idx}) release_pages(*t);
}

// Collects the small fp32 parameters into one host array; their device addresses are patched in
// once the whole array is uploaded as one buffer.
struct ParamPack {
  std::vector<float> host;
  std::vector<std::pair<const float**, size_t>> fixups;
  Status add(const TensorView& t, const std::string& what, int64_t numel, const float** where) {
    const size_t off = host.size();
    DS_RETURN_IF_ERROR(to_f32(t, what, numel, &host));
    fixups.emplace_back(where, off);
    return Status::ok();
  }
};

}  // namespace


// vLLM refuses a tensor-parallel size that splits a head, a group of quantized inputs or a packed
// word (the same checks `inspect -tp N` plans with).
Status Qwen35Model::plan_rank(const ModelDesc& desc) {
  const ModelConfig& c = cfg_;
  const int tp = comm_->size(), rank = comm_->rank();
  if (tp > 1) {
    DS_RETURN_IF_ERROR(check_tp_config(c, tp));
    Status bad;
    visit_linears(desc, [&](const LinearRef& r) {
      if (bad.is_ok() && r.component != Component::kMtp) bad = check_quant_shard(*r.w, r.split, tp);
    });
    DS_RETURN_IF_ERROR(bad);
  }
  dims_.nh = c.num_heads / tp;
  dims_.nkv = c.num_kv_heads > 0 ? kv_heads_per_rank(c.num_kv_heads, tp) : 0;
  dims_.hk = c.linear_num_key_heads / tp;
  dims_.hv = c.linear_num_value_heads / tp;
  dims_.hv_first = rank * dims_.hv;
  dims_.conv_dim = c.conv_dim() / tp;
  dims_.vocab = c.vocab_size / tp;
  return Status::ok();
}

Status Qwen35Model::prepare_weights(const ModelDesc& desc) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden_size;
  const bool mapped = desc.storage != nullptr;  // views point into mmapped shards (else: caller's memory)
  const int rank = comm_->rank(), tp = comm_->size();
  // This rank's share (tensor-parallel.md §1.2): a column shard takes `spans` of the output
  // features (every rank the whole weight at TP 1), a row shard its slice of the input features.
  enum class Cut { kWhole, kColumn, kRow };
  // Prepares one Linear as this rank's shard; with mapped shards, drops the checkpoint pages of its
  // GPTQ tensors right away so peak resident memory stays near the packed size.
  auto prep = [&](const LinearWeight& lw, int64_t n, int64_t k, Cut cut,
                  std::vector<Span> spans = {}) -> Result<PreparedLinear> {
    if (!lw.present()) return not_found(lw.name + ": weight missing");
    if (lw.out_features != n || lw.in_features != k)
      return corrupt(lw.name + ": shape [" + std::to_string(lw.out_features) + ", " + std::to_string(lw.in_features) +
                     "], expected [" + std::to_string(n) + ", " + std::to_string(k) + "]");
    const backend::WeightSource full = weight_source(lw);
    std::unique_ptr<ShardedWeight> shard;
    if (tp > 1 && cut == Cut::kColumn) {
      DS_ASSIGN_OR_RETURN(shard, shard_column(full, spans.empty() ? column_spans(n, {}, rank, tp) : spans));
    } else if (tp > 1 && cut == Cut::kRow) {
      DS_ASSIGN_OR_RETURN(shard, shard_row(full, rank, tp));
    }
    auto w = be_->prepare_weight(shard ? shard->src : full);
    if (w.is_ok() && shard && (*w)->aliases_source) shards_.push_back(std::move(shard));
    if (w.is_ok() && mapped) release_quantized(lw);
    return w;
  };
  std::vector<uint8_t> param_shard;  // one parameter's rows for this rank, until ParamPack::add copies them
  // A per-channel or per-head parameter's rows for this rank.
  auto rows_of = [&](const TensorView& t, int64_t row_elems, const std::vector<Span>& spans) -> Result<TensorView> {
    if (tp == 1) return t;
    return shard_tensor_rows(t, row_elems, spans, &param_shard);
  };
  ParamPack params;
  if (H <= 0 || c.num_layers <= 0 || c.vocab_size <= 0) return invalid_argument("model config has no layers");
  if (static_cast<int>(desc.layers.size()) != c.num_layers) return corrupt("layer count disagrees with config");
  if (!desc.embed_tokens.present() || desc.embed_tokens.shape.size() != 2) return not_found("embed_tokens missing");
  // Vocabulary-parallel embedding: rank r holds rows [r * rows / tp, ...); the others read zeros and
  // the all-reduce after embed() sums them. Rows are contiguous: the view needs no copy.
  embed_rows_ = desc.embed_tokens.shape[0];
  if (embed_rows_ % tp != 0)
    return invalid_argument("tensor-parallel-size " + std::to_string(tp) + " does not divide the embedding's " +
                            std::to_string(embed_rows_) + " rows");
  {
    const int64_t rows = embed_rows_ / tp, dim = desc.embed_tokens.shape[1];
    const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(desc.embed_tokens.dtype);
    const char* first = static_cast<const char*>(desc.embed_tokens.data) + static_cast<size_t>(rank * rows) * row_bytes;
    DS_ASSIGN_OR_RETURN(embed_, be_->prepare_embedding({desc.embed_tokens.dtype, first, rows, dim, rank * rows}));
  }
  if (embed_.dim != H) return corrupt("embed_tokens width disagrees with hidden_size");
  DS_RETURN_IF_ERROR(params.add(desc.final_norm, "model.norm", H, &final_norm_));
  DS_ASSIGN_OR_RETURN(lm_head_, prep(desc.lm_head, c.vocab_size, H, Cut::kColumn));
  for (int r : c.rope.mrope_section) mrope_section_.push_back(r);
  const int nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int Hk = c.linear_num_key_heads, Hv = c.linear_num_value_heads, dk = c.linear_key_head_dim,
            dv = c.linear_value_head_dim, Kc = c.linear_conv_kernel_dim;
  const int64_t C = c.conv_dim();
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& lw = desc.layers[static_cast<size_t>(i)];
    auto L = std::make_unique<Layer>();
    L->kind = lw.kind;
    const std::string p = "layer " + std::to_string(i);
    DS_RETURN_IF_ERROR(params.add(lw.input_layernorm, p + " input_layernorm", H, &L->input_norm));
    DS_RETURN_IF_ERROR(params.add(lw.post_attention_layernorm, p + " post_attention_layernorm", H, &L->post_norm));
    if (lw.kind == LayerKind::kFullAttention) {
      if (nh <= 0 || nkv <= 0 || nh % nkv != 0 || hd <= 0) return invalid_argument("bad attention head config");
      L->cache_index = n_attn_++;
      // q_proj rows are per head (query then gate), so a contiguous cut keeps each pair together.
      const std::vector<Span> kv = kv_head_spans(nkv, hd, rank, tp);
      DS_ASSIGN_OR_RETURN(L->q_proj, prep(lw.attn.q_proj, 2LL * nh * hd, H, Cut::kColumn));
      DS_ASSIGN_OR_RETURN(L->k_proj, prep(lw.attn.k_proj, static_cast<int64_t>(nkv) * hd, H, Cut::kColumn, kv));
      DS_ASSIGN_OR_RETURN(L->v_proj, prep(lw.attn.v_proj, static_cast<int64_t>(nkv) * hd, H, Cut::kColumn, kv));
      DS_ASSIGN_OR_RETURN(L->o_proj, prep(lw.attn.o_proj, H, static_cast<int64_t>(nh) * hd, Cut::kRow));
      DS_RETURN_IF_ERROR(params.add(lw.attn.q_norm, p + " q_norm", hd, &L->q_norm));
      DS_RETURN_IF_ERROR(params.add(lw.attn.k_norm, p + " k_norm", hd, &L->k_norm));
    } else {
      if (Hk <= 0 || Hv <= 0 || Hv % Hk != 0 || dk <= 0 || dv <= 0) return invalid_argument("bad linear-attention head config");
      L->cache_index = n_gdn_++;
      // in_proj_qkv rows are q | k | v (not interleaved): each block is cut separately, and the conv
      // channels the same way, so a rank's conv input is its own [q_r | k_r | v_r].
      const int64_t Kd = int64_t{Hk} * dk, Vd = int64_t{Hv} * dv;
      const std::vector<Span> channels = column_spans(C, {Kd, Kd, Vd}, rank, tp);
      const std::vector<Span> heads = column_spans(Hv, {}, rank, tp);
      DS_ASSIGN_OR_RETURN(L->in_qkv, prep(lw.gdn.in_proj_qkv, C, H, Cut::kColumn, channels));
      DS_ASSIGN_OR_RETURN(L->in_z, prep(lw.gdn.in_proj_z, Vd, H, Cut::kColumn));
      DS_ASSIGN_OR_RETURN(L->in_a, prep(lw.gdn.in_proj_a, Hv, H, Cut::kWhole));
      DS_ASSIGN_OR_RETURN(L->in_b, prep(lw.gdn.in_proj_b, Hv, H, Cut::kWhole));
      DS_ASSIGN_OR_RETURN(L->out_proj, prep(lw.gdn.out_proj, H, Vd, Cut::kRow));
      const int64_t C_r = C / tp, Hv_r = Hv / tp;
      TensorView t;
      DS_ASSIGN_OR_RETURN(t, rows_of(lw.gdn.conv1d, Kc, channels));
      DS_RETURN_IF_ERROR(params.add(t, p + " conv1d", C_r * Kc, &L->conv_w));
      if (lw.gdn.conv1d_bias.present()) {
        DS_ASSIGN_OR_RETURN(t, rows_of(lw.gdn.conv1d_bias, 1, channels));
        DS_RETURN_IF_ERROR(params.add(t, p + " conv1d.bias", C_r, &L->conv_b));
      }
      DS_ASSIGN_OR_RETURN(t, rows_of(lw.gdn.A_log, 1, heads));
      DS_RETURN_IF_ERROR(params.add(t, p + " A_log", Hv_r, &L->A_log));
      DS_ASSIGN_OR_RETURN(t, rows_of(lw.gdn.dt_bias, 1, heads));
      DS_RETURN_IF_ERROR(params.add(t, p + " dt_bias", Hv_r, &L->dt_bias));
      DS_RETURN_IF_ERROR(params.add(lw.gdn.norm, p + " linear_attn.norm", dv, &L->gdn_norm));
    }
    L->moe = lw.is_moe;
    if (lw.is_moe) {
      const int64_t E = c.num_experts, I = c.moe_intermediate_size;
      if (static_cast<int64_t>(lw.moe.experts.size()) != E) return corrupt(p + ": expert count disagrees with config");
      if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > E) return invalid_argument("bad num_experts_per_tok");
      DS_ASSIGN_OR_RETURN(L->router, prep(lw.moe.router, E, H, Cut::kWhole));
      for (int64_t e = 0; e < E; ++e) {
        const MlpWeights& ew = lw.moe.experts[static_cast<size_t>(e)];
        PreparedLinear g, u, d;
        DS_ASSIGN_OR_RETURN(g, prep(ew.gate_proj, I, H, Cut::kColumn));
        DS_ASSIGN_OR_RETURN(u, prep(ew.up_proj, I, H, Cut::kColumn));
        DS_ASSIGN_OR_RETURN(d, prep(ew.down_proj, H, I, Cut::kRow));
        L->e_gate_p.push_back(g.get());
        L->e_up_p.push_back(u.get());
        L->e_down_p.push_back(d.get());
        L->e_gate.push_back(std::move(g));
        L->e_up.push_back(std::move(u));
        L->e_down.push_back(std::move(d));
      }
      DS_RETURN_IF_ERROR(be_->prepare_experts(L->e_gate_p.data(), L->e_up_p.data(), L->e_down_p.data(),
                                              static_cast<int>(E)));
      if (lw.moe.shared_expert.gate_proj.present()) {
        const int64_t Is = c.shared_expert_intermediate_size;
        DS_ASSIGN_OR_RETURN(L->gate, prep(lw.moe.shared_expert.gate_proj, Is, H, Cut::kColumn));
        DS_ASSIGN_OR_RETURN(L->up, prep(lw.moe.shared_expert.up_proj, Is, H, Cut::kColumn));
        DS_ASSIGN_OR_RETURN(L->down, prep(lw.moe.shared_expert.down_proj, H, Is, Cut::kRow));
        DS_ASSIGN_OR_RETURN(L->shared_gate, prep(lw.moe.shared_expert_gate, 1, H, Cut::kWhole));
      }
    } else {
      const int64_t I = c.intermediate_size;
      DS_ASSIGN_OR_RETURN(L->gate, prep(lw.mlp.gate_proj, I, H, Cut::kColumn));
      DS_ASSIGN_OR_RETURN(L->up, prep(lw.mlp.up_proj, I, H, Cut::kColumn));
      DS_ASSIGN_OR_RETURN(L->down, prep(lw.mlp.down_proj, H, I, Cut::kRow));
    }
    layers_.push_back(std::move(L));
  }
  DS_ASSIGN_OR_RETURN(params_, be_->alloc(params.host.size() * sizeof(float), "model parameters"));
  be_->upload(params_->data(), params.host.data(), params.host.size() * sizeof(float));
  for (auto& [where, off] : params.fixups) *where = static_cast<const float*>(params_->data()) + off;

  return Status::ok();
}

}  // namespace ds::model
