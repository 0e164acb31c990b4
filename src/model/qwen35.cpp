// CpuQwen35Model: weight preparation, cache pools and the step loop (qwen35-arch.md §3.1).
#include "deltaserve/model/qwen35.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "deltaserve/core/log.h"
#include "src/model/qwen35_internal.h"

namespace ds::model {

namespace {

Result<std::vector<float>> to_f32(const TensorView& t, const std::string& what, int64_t expect_numel) {
  if (!t.present()) return not_found(what + ": tensor missing");
  if (expect_numel >= 0 && t.numel() != expect_numel)
    return corrupt(what + ": expected " + std::to_string(expect_numel) + " elements, found " + std::to_string(t.numel()));
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype) {
      case DType::kF32: out[static_cast<size_t>(i)] = static_cast<const float*>(t.data)[i]; break;
      case DType::kBF16: out[static_cast<size_t>(i)] = bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      case DType::kF16: out[static_cast<size_t>(i)] = f16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      default: return unsupported(what + ": dtype " + dtype_name(t.dtype) + " is not supported");
    }
  }
  return out;
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

backend::WeightSource source_of(const LinearWeight& lw) {
  backend::WeightSource s;
  s.name = lw.name;
  s.n = lw.out_features;
  s.k = lw.in_features;
  s.bits = lw.scheme.bits;
  s.group_size = lw.scheme.group_size;
  s.sym = lw.scheme.sym;
  s.zeros_v2 = lw.scheme.zeros_v2;
  if (lw.scheme.quantized()) {
    s.qweight = static_cast<const int32_t*>(lw.qweight.data);
    s.qzeros = lw.qzeros.present() ? static_cast<const int32_t*>(lw.qzeros.data) : nullptr;
    s.scales = lw.scales.data;
    s.scales_dtype = lw.scales.dtype;
    s.scale_groups = lw.scales.shape.empty() ? 0 : lw.scales.shape[0];
    s.g_idx = lw.g_idx.present() ? static_cast<const int32_t*>(lw.g_idx.data) : nullptr;
  } else {
    s.weight = lw.weight.data;
    s.weight_dtype = lw.weight.dtype;
  }
  if (lw.bias.present()) {
    s.bias = lw.bias.data;
    s.bias_dtype = lw.bias.dtype;
  }
  return s;
}

}  // namespace

CpuQwen35Model::~CpuQwen35Model() = default;

// Prepares one Linear; with release_mapped, drops the checkpoint pages of its GPTQ tensors right away
// so peak resident memory stays near the packed size.
static Result<PW> prep(backend::CpuBackend& be, const LinearWeight& lw, int64_t n, int64_t k, bool release_mapped) {
  if (!lw.present()) return not_found(lw.name + ": weight missing");
  if (lw.out_features != n || lw.in_features != k)
    return corrupt(lw.name + ": shape [" + std::to_string(lw.out_features) + ", " + std::to_string(lw.in_features) +
                   "], expected [" + std::to_string(n) + ", " + std::to_string(k) + "]");
  auto w = be.prepare_weight(source_of(lw));
  if (w.is_ok() && release_mapped) release_quantized(lw);
  return w;
}

Status CpuQwen35Model::prepare(const ModelDesc& desc) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden_size;
  const bool mapped = desc.storage != nullptr;  // views point into mmapped shards (else: caller's memory)
  if (H <= 0 || c.num_layers <= 0 || c.vocab_size <= 0) return invalid_argument("model config has no layers");
  if (static_cast<int>(desc.layers.size()) != c.num_layers) return corrupt("layer count disagrees with config");
  if (!desc.embed_tokens.present()) return not_found("embed_tokens missing");
  embed_ = {desc.embed_tokens.dtype, desc.embed_tokens.data, desc.embed_tokens.shape.at(0), desc.embed_tokens.shape.at(1)};
  if (embed_.dim != H) return corrupt("embed_tokens width disagrees with hidden_size");
  DS_ASSIGN_OR_RETURN(final_norm_, to_f32(desc.final_norm, "model.norm", H));
  DS_ASSIGN_OR_RETURN(lm_head_, prep(*be_, desc.lm_head, c.vocab_size, H, mapped));
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
    DS_ASSIGN_OR_RETURN(L->input_norm, to_f32(lw.input_layernorm, p + " input_layernorm", H));
    DS_ASSIGN_OR_RETURN(L->post_norm, to_f32(lw.post_attention_layernorm, p + " post_attention_layernorm", H));
    if (lw.kind == LayerKind::kFullAttention) {
      if (nh <= 0 || nkv <= 0 || nh % nkv != 0 || hd <= 0) return invalid_argument("bad attention head config");
      L->cache_index = n_attn_++;
      DS_ASSIGN_OR_RETURN(L->q_proj, prep(*be_, lw.attn.q_proj, 2LL * nh * hd, H, mapped));
      DS_ASSIGN_OR_RETURN(L->k_proj, prep(*be_, lw.attn.k_proj, static_cast<int64_t>(nkv) * hd, H, mapped));
      DS_ASSIGN_OR_RETURN(L->v_proj, prep(*be_, lw.attn.v_proj, static_cast<int64_t>(nkv) * hd, H, mapped));
      DS_ASSIGN_OR_RETURN(L->o_proj, prep(*be_, lw.attn.o_proj, H, static_cast<int64_t>(nh) * hd, mapped));
      DS_ASSIGN_OR_RETURN(L->q_norm, to_f32(lw.attn.q_norm, p + " q_norm", hd));
      DS_ASSIGN_OR_RETURN(L->k_norm, to_f32(lw.attn.k_norm, p + " k_norm", hd));
    } else {
      if (Hk <= 0 || Hv <= 0 || Hv % Hk != 0 || dk <= 0 || dv <= 0) return invalid_argument("bad linear-attention head config");
      L->cache_index = n_gdn_++;
      DS_ASSIGN_OR_RETURN(L->in_qkv, prep(*be_, lw.gdn.in_proj_qkv, C, H, mapped));
      DS_ASSIGN_OR_RETURN(L->in_z, prep(*be_, lw.gdn.in_proj_z, static_cast<int64_t>(Hv) * dv, H, mapped));
      DS_ASSIGN_OR_RETURN(L->in_a, prep(*be_, lw.gdn.in_proj_a, Hv, H, mapped));
      DS_ASSIGN_OR_RETURN(L->in_b, prep(*be_, lw.gdn.in_proj_b, Hv, H, mapped));
      DS_ASSIGN_OR_RETURN(L->out_proj, prep(*be_, lw.gdn.out_proj, H, static_cast<int64_t>(Hv) * dv, mapped));
      DS_ASSIGN_OR_RETURN(L->conv_w, to_f32(lw.gdn.conv1d, p + " conv1d", C * Kc));
      if (lw.gdn.conv1d_bias.present()) {
        DS_ASSIGN_OR_RETURN(L->conv_b, to_f32(lw.gdn.conv1d_bias, p + " conv1d.bias", C));
      }
      DS_ASSIGN_OR_RETURN(L->A_log, to_f32(lw.gdn.A_log, p + " A_log", Hv));
      DS_ASSIGN_OR_RETURN(L->dt_bias, to_f32(lw.gdn.dt_bias, p + " dt_bias", Hv));
      DS_ASSIGN_OR_RETURN(L->gdn_norm, to_f32(lw.gdn.norm, p + " linear_attn.norm", dv));
    }
    L->moe = lw.is_moe;
    if (lw.is_moe) {
      const int64_t E = c.num_experts, I = c.moe_intermediate_size;
      if (static_cast<int64_t>(lw.moe.experts.size()) != E) return corrupt(p + ": expert count disagrees with config");
      if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > E) return invalid_argument("bad num_experts_per_tok");
      DS_ASSIGN_OR_RETURN(L->router, prep(*be_, lw.moe.router, E, H, mapped));
      for (int64_t e = 0; e < E; ++e) {
        const MlpWeights& ew = lw.moe.experts[static_cast<size_t>(e)];
        PW g, u, d;
        DS_ASSIGN_OR_RETURN(g, prep(*be_, ew.gate_proj, I, H, mapped));
        DS_ASSIGN_OR_RETURN(u, prep(*be_, ew.up_proj, I, H, mapped));
        DS_ASSIGN_OR_RETURN(d, prep(*be_, ew.down_proj, H, I, mapped));
        L->e_gate_p.push_back(g.get());
        L->e_up_p.push_back(u.get());
        L->e_down_p.push_back(d.get());
        L->e_gate.push_back(std::move(g));
        L->e_up.push_back(std::move(u));
        L->e_down.push_back(std::move(d));
      }
      if (lw.moe.shared_expert.gate_proj.present()) {
        const int64_t Is = c.shared_expert_intermediate_size;
        DS_ASSIGN_OR_RETURN(L->gate, prep(*be_, lw.moe.shared_expert.gate_proj, Is, H, mapped));
        DS_ASSIGN_OR_RETURN(L->up, prep(*be_, lw.moe.shared_expert.up_proj, Is, H, mapped));
        DS_ASSIGN_OR_RETURN(L->down, prep(*be_, lw.moe.shared_expert.down_proj, H, Is, mapped));
        DS_ASSIGN_OR_RETURN(L->shared_gate, prep(*be_, lw.moe.shared_expert_gate, 1, H, mapped));
      }
    } else {
      const int64_t I = c.intermediate_size;
      DS_ASSIGN_OR_RETURN(L->gate, prep(*be_, lw.mlp.gate_proj, I, H, mapped));
      DS_ASSIGN_OR_RETURN(L->up, prep(*be_, lw.mlp.up_proj, I, H, mapped));
      DS_ASSIGN_OR_RETURN(L->down, prep(*be_, lw.mlp.down_proj, H, I, mapped));
    }
    layers_.push_back(std::move(L));
  }
  // Cache pools. fp32 KV: exactness against fp32 references, and CPU decode is weight-bound.
  const int64_t kv_floats = static_cast<int64_t>(cache_.num_kv_blocks) * cache_.block_size * nkv * hd;
  kv_k_.assign(static_cast<size_t>(n_attn_), std::vector<float>(static_cast<size_t>(kv_floats)));
  kv_v_.assign(static_cast<size_t>(n_attn_), std::vector<float>(static_cast<size_t>(kv_floats)));
  ssm_floats_ = static_cast<int64_t>(Hv) * dv * dk;
  conv_floats_ = static_cast<int64_t>(Kc - 1) * C;
  gdn_pool_.assign(static_cast<size_t>(n_gdn_),
                   std::vector<float>(static_cast<size_t>(cache_.num_state_slots * (ssm_floats_ + conv_floats_))));
  return Status::ok();
}

Result<std::unique_ptr<CpuQwen35Model>> CpuQwen35Model::create(const ModelDesc& desc, const CacheConfig& cache,
                                                               const CpuModelOptions& options) {
  if (desc.config_only) return invalid_argument("model was described from config.json only; weights are required");
  if (cache.block_size <= 0 || cache.num_kv_blocks < 0 || cache.num_state_slots < 0)
    return invalid_argument("bad cache configuration");
  std::unique_ptr<CpuQwen35Model> m(new CpuQwen35Model());
  m->cfg_ = desc.config;
  m->cache_ = cache;
  m->opt_ = options;
  m->storage_ = desc.storage;
  m->be_ = std::make_unique<backend::CpuBackend>(options.isa);
  DS_RETURN_IF_ERROR(m->prepare(desc));
  return m;
}

size_t CpuQwen35Model::weight_bytes_per_token() const {
  size_t b = lm_head_->bytes;
  auto add = [&](const PW& w) { b += w ? w->bytes : 0; };
  for (const auto& L : layers_) {
    for (const PW* w : {&L->q_proj, &L->k_proj, &L->v_proj, &L->o_proj, &L->in_qkv, &L->in_z, &L->in_a, &L->in_b,
                        &L->out_proj, &L->gate, &L->up, &L->down, &L->router, &L->shared_gate})
      add(*w);
    if (L->moe && !L->e_gate.empty()) {
      const size_t per = L->e_gate[0]->bytes + L->e_up[0]->bytes + L->e_down[0]->bytes;
      b += per * static_cast<size_t>(cfg_.num_experts_per_tok);
    }
  }
  return b;
}

size_t CpuQwen35Model::cache_bytes() const {
  size_t b = 0;
  for (const auto& v : kv_k_) b += v.size() * 4 * 2;
  for (const auto& v : gdn_pool_) b += v.size() * 4;
  return b;
}

Result<StepOutput> CpuQwen35Model::forward(const StepPlan& plan) {
  const int64_t H = cfg_.hidden_size;
  std::vector<backend::SeqSpan> spans;
  std::vector<int32_t> ids;
  std::vector<int64_t> pos;
  int64_t T = 0;
  for (const SeqStep& s : plan.seqs) {
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    if (n == 0) return invalid_argument("sequence " + std::to_string(s.seq_id) + " has no new tokens");
    if (s.start_pos < 0) return invalid_argument("negative start_pos");
    if (n_attn_ > 0) {
      const int64_t need = (s.start_pos + n + cache_.block_size - 1) / cache_.block_size;
      if (static_cast<int64_t>(s.block_table.size()) < need)
        return invalid_argument("sequence " + std::to_string(s.seq_id) + ": block table covers " +
                                std::to_string(s.block_table.size()) + " blocks, needs " + std::to_string(need));
      for (int64_t b = 0; b < need; ++b)
        if (s.block_table[static_cast<size_t>(b)] < 0 || s.block_table[static_cast<size_t>(b)] >= cache_.num_kv_blocks)
          return invalid_argument("sequence " + std::to_string(s.seq_id) + ": KV block id out of range");
    }
    if (n_gdn_ > 0 && (s.state_slot < 0 || s.state_slot >= cache_.num_state_slots))
      return invalid_argument("sequence " + std::to_string(s.seq_id) + ": state slot out of range");
    for (int32_t id : s.token_ids)
      if (id < 0 || id >= embed_.rows) return invalid_argument("token id " + std::to_string(id) + " out of range");
    backend::SeqSpan sp;
    sp.token_begin = T;
    sp.n_tokens = n;
    sp.start_pos = s.start_pos;
    sp.block_table = s.block_table.data();
    spans.push_back(sp);
    ids.insert(ids.end(), s.token_ids.begin(), s.token_ids.end());
    if (!s.mrope_positions.empty()) {
      if (static_cast<int64_t>(s.mrope_positions.size()) != 3 * n)
        return invalid_argument("sequence " + std::to_string(s.seq_id) + ": mrope_positions needs 3 per new token");
      pos.insert(pos.end(), s.mrope_positions.begin(), s.mrope_positions.end());
    } else {
      for (int64_t i = 0; i < n; ++i)
        for (int r = 0; r < 3; ++r) pos.push_back(s.start_pos + i);
    }
    T += n;
  }
  // A sequence starting at position 0 starts from zero GDN state.
  for (size_t i = 0; i < plan.seqs.size(); ++i)
    if (plan.seqs[i].start_pos == 0)
      for (auto& pool : gdn_pool_)
        std::fill_n(pool.begin() + plan.seqs[i].state_slot * (ssm_floats_ + conv_floats_), ssm_floats_ + conv_floats_, 0.0f);

  std::vector<float>& h = buf_[0];
  std::vector<float>& xn = buf_[1];
  std::vector<float>& out = buf_[2];
  h.resize(static_cast<size_t>(T * H));
  xn.resize(h.size());
  out.resize(h.size());
  be_->embed(embed_, ids.data(), T, h.data());
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  for (const auto& Lp : layers_) {
    const Layer& L = *Lp;
    be_->rms_norm(h.data(), L.input_norm.data(), T, H, eps, true, xn.data());
    if (L.kind == LayerKind::kLinearAttention) {
      for (size_t i = 0; i < spans.size(); ++i) {
        float* slot = gdn_pool_[static_cast<size_t>(L.cache_index)].data() + plan.seqs[i].state_slot * (ssm_floats_ + conv_floats_);
        spans[i].gdn_state = slot;
        spans[i].conv_state = slot + ssm_floats_;
      }
      gdn_block(L, T, spans, xn.data(), out.data());
    } else {
      attention_block(L, T, spans, pos, xn.data(), out.data());
    }
    be_->add(h.data(), out.data(), T * H);
    be_->rms_norm(h.data(), L.post_norm.data(), T, H, eps, true, xn.data());
    mlp_block(L, T, xn.data(), out.data());
    be_->add(h.data(), out.data(), T * H);
  }
  // Rows that need logits: every new token (all_logits) or the last one.
  StepOutput so;
  so.vocab_size = cfg_.vocab_size;
  std::vector<int64_t> rows;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    so.row_offset.push_back(static_cast<int64_t>(rows.size()));
    const int64_t first = plan.seqs[i].all_logits ? spans[i].token_begin : spans[i].token_begin + spans[i].n_tokens - 1;
    for (int64_t r = first; r < spans[i].token_begin + spans[i].n_tokens; ++r) rows.push_back(r);
  }
  const int64_t R = static_cast<int64_t>(rows.size());
  for (int64_t r = 0; r < R; ++r)
    std::memcpy(out.data() + r * H, h.data() + rows[static_cast<size_t>(r)] * H, static_cast<size_t>(H) * sizeof(float));
  be_->rms_norm(out.data(), final_norm_.data(), R, H, eps, true, xn.data());
  so.logits.resize(static_cast<size_t>(R * cfg_.vocab_size));
  be_->lm_head(*lm_head_, xn.data(), R, so.logits.data());
  return so;
}

}  // namespace ds::model
