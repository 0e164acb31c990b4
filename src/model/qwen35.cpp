// Qwen35Model: workspace sizing, the step plan and the step loop
// (qwen35-arch.md §3.1).
#include "deltaserve/model/qwen35.h"

#include <algorithm>
#include <cstring>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/core/log.h"
#include "src/model/qwen35_internal.h"
#include "src/model/shard.h"  // ShardedWeight, which the model keeps

namespace ds::model {

Qwen35Model::~Qwen35Model() = default;

// The pools for opt_.cache, plus the padding block and slot of the graph path.
backend::CacheSpec Qwen35Model::cache_spec() const {
  const ModelConfig& c = cfg_;
  const int pad = graph_sizes_.empty() ? 0 : 1;
  backend::CacheSpec cs;
  cs.num_attn_layers = n_attn_;
  cs.num_kv_blocks = opt_.cache.num_kv_blocks + pad;
  cs.block_size = opt_.cache.block_size;
  cs.kv_heads = dims_.nkv;
  cs.head_dim = c.head_dim;
  cs.num_gdn_layers = n_gdn_;
  cs.num_state_slots = opt_.cache.num_state_slots + pad;
  cs.v_heads = dims_.hv;
  cs.k_dim = c.linear_key_head_dim;
  cs.v_dim = c.linear_value_head_dim;
  cs.conv_kernel = c.linear_conv_kernel_dim;
  cs.conv_dim = dims_.conv_dim;
  return cs;
}

Status Qwen35Model::allocate_cache(const CacheConfig& cache) {
  if (cache.block_size != opt_.cache.block_size || cache.num_kv_blocks < 0 || cache.num_state_slots < 0)
    return invalid_argument("bad cache configuration (the block size is fixed at create)");
  if (opt_.max_model_len <= 0 && cache.num_kv_blocks > opt_.cache.num_kv_blocks)
    return invalid_argument(
        "a larger KV pool needs max_model_len (the block tables were sized for the old pool)");
  graphs_.clear();
  graphs_.resize(graph_sizes_.size());
  opt_.cache = cache;
  return be_->allocate_cache(cache_spec());
}

Status Qwen35Model::allocate_workspace() {
  const ModelConfig& c = cfg_;
  auto ws = std::make_unique<Workspace>();
  const int64_t T = opt_.max_step_tokens;
  ws->max_tokens = T;
  ws->max_logit_rows = std::min<int64_t>(T, std::max<int64_t>(opt_.max_step_seqs, 64));
  const DType act = be_->activation_dtype();
  // This rank's widths (the whole model at TP 1); in_proj_a/b are replicated, so a and b are whole.
  const int64_t H = c.hidden_size, C = dims_.conv_dim;
  const int64_t vdim = int64_t{dims_.hv} * c.linear_value_head_dim;
  const int64_t Hv = dims_.hv, Hv_all = c.linear_num_value_heads;
  const int64_t qdim = int64_t{dims_.nh} * c.head_dim, kvdim = int64_t{dims_.nkv} * c.head_dim;
  int64_t I = 0;
  for (const auto& L : layers_)
    if (L->gate) I = std::max(I, L->gate->n);
  const int64_t E = c.num_experts, top_k = std::max(1, c.num_experts_per_tok);
  // Views are laid out at 256-byte aligned offsets; the three block kinds share one scratch region.
  struct Slot {
    backend::Act* view;
    int64_t rows, cols;
    DType dtype;
  };
  size_t offset = 0;
  std::vector<std::pair<Slot, size_t>> placed;
  auto place = [&](backend::Act* view, int64_t rows, int64_t cols, DType dt) {
    placed.push_back({{view, rows, cols, dt}, offset});
    offset += (static_cast<size_t>(rows * cols) * dtype_size(dt) + 255) / 256 * 256;
  };
  const int64_t R = ws->max_logit_rows;
  place(&ws->h, T, H, act);
  place(&ws->xn, T, H, act);
  place(&ws->out, T, H, act);
  place(&ws->last_h, R, H, act);
  place(&ws->last_xn, R, H, act);
  place(&ws->logits, R, c.vocab_size, DType::kF32);
  if (comm_->size() > 1) place(&ws->logits_local, R, dims_.vocab, DType::kF32);
  const size_t scratch = offset;
  size_t scratch_end = scratch;
  if (n_gdn_ > 0) {
    place(&ws->qkv, T, C, act);
    place(&ws->z, T, vdim, act);
    place(&ws->a, T, Hv_all, act);
    place(&ws->b, T, Hv_all, act);
    place(&ws->conv, T, C, act);
    place(&ws->g, T, Hv, DType::kF32);
    place(&ws->beta, T, Hv, DType::kF32);
    place(&ws->core, T, vdim, act);
    place(&ws->normed, T, vdim, act);
    scratch_end = std::max(scratch_end, offset);
    offset = scratch;
  }
  if (n_attn_ > 0) {
    place(&ws->qg, T, 2 * qdim, act);
    place(&ws->q, T, qdim, act);
    place(&ws->gate, T, qdim, act);
    place(&ws->k, T, kvdim, act);
    place(&ws->v, T, kvdim, act);
    place(&ws->attn, T, qdim, act);
    scratch_end = std::max(scratch_end, offset);
    offset = scratch;
  }
  place(&ws->gu, T, 2 * std::max<int64_t>(I, 1), act);
  if (E > 0) {
    place(&ws->router_logits, T, E, DType::kF32);
    place(&ws->route_weights, T, top_k, DType::kF32);
    place(&ws->shared, T, H, act);
    place(&ws->shared_gate, T, 1, act);
  }
  backend::Act ids;
  place(&ids, T, top_k, DType::kI32);
  offset = std::max(scratch_end, offset);
  DS_ASSIGN_OR_RETURN(ws->buffer, be_->alloc(offset, "the activation workspace (" + std::to_string(T) + " tokens)"));
  for (auto& [s, off] : placed)
    *s.view = {static_cast<char*>(ws->buffer->data()) + off, s.dtype, s.rows, s.cols, s.cols};
  ws->route_ids = ids.as<int32_t>();
  ws_ = std::move(ws);

  backend::StepLimits lim;
  lim.max_tokens = T;
  lim.max_seqs = opt_.max_step_seqs;
  const int64_t bs = opt_.cache.block_size;
  lim.max_blocks_per_seq = static_cast<int>(opt_.max_model_len > 0 ? (opt_.max_model_len + bs - 1) / bs
                                                                     : opt_.cache.num_kv_blocks);
  lim.max_logit_rows = R;
  DS_RETURN_IF_ERROR(be_->reserve_step(lim));
  // The largest collective: the residual stream of a whole step, or a pass of gathered logits.
  const size_t widest = std::max(static_cast<size_t>(T * H) * dtype_size(act), static_cast<size_t>(R * c.vocab_size) * 4);
  return comm_->reserve(*be_, widest);
}

Result<std::unique_ptr<Qwen35Model>> Qwen35Model::create(const ModelDesc& desc, std::shared_ptr<backend::Backend> be,
                                                         std::shared_ptr<dist::Communicator> comm,
                                                         const ModelOptions& options) {
  if (desc.config_only) return invalid_argument("model was described from config.json only; weights are required");
  const CacheConfig& cache = options.cache;
  if (cache.block_size <= 0 || cache.num_kv_blocks < 0 || cache.num_state_slots < 0)
    return invalid_argument("bad cache configuration");
  if (options.max_step_tokens <= 0 || options.max_step_seqs <= 0) return invalid_argument("bad step limits");
  if (!be || !comm) return invalid_argument("a model needs a backend and a communicator");
  std::unique_ptr<Qwen35Model> m(new Qwen35Model());
  m->cfg_ = desc.config;
  m->opt_ = options;
  m->storage_ = desc.storage;
  m->be_ = std::move(be);
  m->comm_ = std::move(comm);
  DS_RETURN_IF_ERROR(m->plan_rank(desc));
  DS_RETURN_IF_ERROR(m->prepare_weights(desc));
  if (m->be_->supports_graphs()) {
    const int64_t cap = std::min<int64_t>(options.max_step_seqs, options.max_step_tokens);
    for (int b : options.graph_batch_sizes)
      if (b >= 1 && b <= cap) m->graph_sizes_.push_back(b);
    std::sort(m->graph_sizes_.begin(), m->graph_sizes_.end());
    m->graph_sizes_.erase(std::unique(m->graph_sizes_.begin(), m->graph_sizes_.end()), m->graph_sizes_.end());
    const int64_t whole =
        options.max_model_len > 0 ? options.max_model_len : int64_t{cache.num_kv_blocks} * cache.block_size;
    m->graph_context_ = options.graph_max_context > 0 ? std::min(options.graph_max_context, whole) : whole;
    if (m->graph_context_ <= 0) m->graph_sizes_.clear();
  }
  DS_RETURN_IF_ERROR(m->allocate_cache(cache));
  DS_RETURN_IF_ERROR(m->allocate_workspace());
  return m;
}

Result<std::unique_ptr<Qwen35Model>> create_cpu_model(const ModelDesc& desc, const ModelOptions& options) {
  return Qwen35Model::create(desc, std::make_shared<backend::CpuBackend>(), dist::single_rank(), options);
}

size_t Qwen35Model::weight_bytes_per_token() const {
  size_t b = lm_head_->bytes;
  auto add = [&](const PreparedLinear& w) { b += w ? w->bytes : 0; };
  for (const auto& L : layers_) {
    for (const PreparedLinear* w : {&L->q_proj, &L->k_proj, &L->v_proj, &L->o_proj, &L->in_qkv, &L->in_z, &L->in_a,
                                    &L->in_b, &L->out_proj, &L->gate, &L->up, &L->down, &L->router, &L->shared_gate})
      add(*w);
    if (L->moe && !L->e_gate.empty()) {
      const size_t per = L->e_gate[0]->bytes + L->e_up[0]->bytes + L->e_down[0]->bytes;
      b += per * static_cast<size_t>(cfg_.num_experts_per_tok);
    }
  }
  return b;
}

// Validates the plan and flattens it into meta_ (token ids, positions, cu_seqlens, block tables,
// slots to reset, which rows get logits: sampled rows first, then the rest in sequence order).
Status Qwen35Model::build_meta(const StepPlan& plan) {
  backend::StepMeta& m = meta_;
  m.token_ids.clear();
  m.positions.clear();
  m.cu_seqlens.assign(1, 0);
  m.start_pos.clear();
  m.state_slots.clear();
  m.block_tables.clear();
  m.reset_slots.clear();
  m.logit_rows.clear();
  logit_rows_.clear();
  const int64_t bs = opt_.cache.block_size;
  int width = 1;
  for (const SeqStep& s : plan.seqs)
    width = std::max<int>(width, static_cast<int>((s.start_pos + static_cast<int64_t>(s.token_ids.size()) + bs - 1) / bs));
  m.blocks_per_seq = width;
  int64_t T = 0;
  for (const SeqStep& s : plan.seqs) {
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    const std::string who = "sequence " + std::to_string(s.seq_id);
    if (n == 0) return invalid_argument(who + " has no new tokens");
    if (s.start_pos < 0) return invalid_argument("negative start_pos");
    const int64_t need = (s.start_pos + n + bs - 1) / bs;
    if (n_attn_ > 0) {
      if (static_cast<int64_t>(s.block_table.size()) < need)
        return invalid_argument(who + ": block table covers " + std::to_string(s.block_table.size()) + " blocks, needs " +
                                std::to_string(need));
      for (int64_t b = 0; b < need; ++b)
        if (s.block_table[static_cast<size_t>(b)] < 0 || s.block_table[static_cast<size_t>(b)] >= opt_.cache.num_kv_blocks)
          return invalid_argument(who + ": KV block id out of range");
    }
    if (n_gdn_ > 0 && (s.state_slot < 0 || s.state_slot >= opt_.cache.num_state_slots))
      return invalid_argument(who + ": state slot out of range");
    if (!s.logprob_targets.empty() && (!s.all_logits || static_cast<int64_t>(s.logprob_targets.size()) != n))
      return invalid_argument(who + ": logprob_targets needs all_logits and one target per new token");
    for (int32_t id : s.token_ids)
      if (id < 0 || id >= embed_rows_) return invalid_argument("token id " + std::to_string(id) + " out of range");
    m.token_ids.insert(m.token_ids.end(), s.token_ids.begin(), s.token_ids.end());
    if (!s.mrope_positions.empty()) {
      if (static_cast<int64_t>(s.mrope_positions.size()) != 3 * n)
        return invalid_argument(who + ": mrope_positions needs 3 per new token");
      m.positions.insert(m.positions.end(), s.mrope_positions.begin(), s.mrope_positions.end());
    } else {
      for (int64_t i = 0; i < n; ++i)
        for (int r = 0; r < 3; ++r) m.positions.push_back(s.start_pos + i);
    }
    T += n;
    m.cu_seqlens.push_back(static_cast<int32_t>(T));
    m.start_pos.push_back(s.start_pos);
    m.state_slots.push_back(s.state_slot);
    for (int b = 0; b < width; ++b)
      m.block_tables.push_back(b < need && b < static_cast<int64_t>(s.block_table.size()) ? s.block_table[static_cast<size_t>(b)] : -1);
    if (s.start_pos == 0 && n_gdn_ > 0) m.reset_slots.push_back(s.state_slot);
  }
  // Logits rows: sampled rows (each sampling sequence's last token) first, so sample() sees them
  // contiguous; then every other row a sequence asked for, in order.
  for (size_t i = 0; i < plan.seqs.size(); ++i)
    if (plan.seqs[i].sampling) {
      const int64_t last = static_cast<int64_t>(plan.seqs[i].token_ids.size()) - 1;
      logit_rows_.push_back({static_cast<int>(i), last});
      m.logit_rows.push_back(m.cu_seqlens[i] + static_cast<int32_t>(last));
    }
  n_sample_rows_ = static_cast<int>(logit_rows_.size());
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const SeqStep& s = plan.seqs[i];
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    const bool wants = s.return_logits || !s.logprob_targets.empty();
    if (!wants) continue;
    for (int64_t t = s.all_logits ? 0 : n - 1; t < n; ++t) {
      if (s.sampling && t == n - 1) continue;  // already listed
      logit_rows_.push_back({static_cast<int>(i), t});
      m.logit_rows.push_back(m.cu_seqlens[i] + static_cast<int32_t>(t));
    }
  }
  return Status::ok();
}

Result<StepOutput> Qwen35Model::forward(const StepPlan& plan) {
  DS_RETURN_IF_ERROR(build_meta(plan));
  const int64_t T = meta_.num_tokens();
  if (T > ws_->max_tokens)
    return invalid_argument("step of " + std::to_string(T) + " tokens exceeds the workspace planned for " +
                            std::to_string(ws_->max_tokens) + " (max_num_batched_tokens)");
  StepOutput so;
  if (const int gi = graph_for(plan); gi >= 0) {
    const auto g = static_cast<size_t>(gi);
    pad_meta(graph_sizes_[g]);
    DS_RETURN_IF_ERROR(be_->plan(meta_));
    if (!graphs_[g]) DS_RETURN_IF_ERROR(capture_graph(g));
    DS_RETURN_IF_ERROR(be_->replay(*graphs_[g]));
    ++graph_steps_;
    DS_RETURN_IF_ERROR(logits_pass(plan, true, &so));
  } else {
    DS_RETURN_IF_ERROR(be_->plan(meta_));
    DS_RETURN_IF_ERROR(run_layers(T));
    DS_RETURN_IF_ERROR(logits_pass(plan, false, &so));
  }
  be_->synchronize();
  return so;
}

// The planned step up to the residual stream after the last layer (ws_->h rows [0, T)).
Status Qwen35Model::run_layers(int64_t T) {
  backend::Backend& be = *be_;
  be.reset_states();
  const backend::Act h = ws_->h.rows_view(0, T), xn = ws_->xn.rows_view(0, T), out = ws_->out.rows_view(0, T);
  be.embed(embed_, h);
  DS_RETURN_IF_ERROR(comm_->all_reduce_sum(be, h));  // each rank looked up its own vocabulary rows
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  for (const auto& Lp : layers_) {
    const Layer& L = *Lp;
    be.rms_norm(h, L.input_norm, eps, true, xn);
    if (L.kind == LayerKind::kLinearAttention) {
      DS_RETURN_IF_ERROR(gdn_block(L, T, xn, out));
    } else {
      DS_RETURN_IF_ERROR(attention_block(L, T, xn, out));
    }
    be.add(h, out);
    be.rms_norm(h, L.post_norm, eps, true, xn);
    DS_RETURN_IF_ERROR(mlp_block(L, T, xn, out));
    be.add(h, out);
  }
  return Status::ok();
}

// Logits of planned logit rows [first_row, first_row + rows) into ws_->logits rows [0, rows). Under
// tensor parallelism each rank computes its vocabulary columns, then every rank gathers them all.
Status Qwen35Model::compute_logits(int64_t first_row, int64_t rows) {
  const backend::Act rows_h = ws_->last_h.rows_view(0, rows), rows_xn = ws_->last_xn.rows_view(0, rows);
  be_->gather_logit_rows(ws_->h, first_row, rows_h);
  be_->rms_norm(rows_h, final_norm_, static_cast<float>(cfg_.rms_norm_eps), true, rows_xn);
  if (comm_->size() == 1) {
    be_->linear(*lm_head_, rows_xn, ws_->logits.rows_view(0, rows));
    return Status::ok();
  }
  be_->linear(*lm_head_, rows_xn, ws_->logits_local.rows_view(0, rows));
  return comm_->all_gather_cols(*be_, ws_->logits_local.rows_view(0, rows), ws_->logits.rows_view(0, rows));
}

// Final norm + lm_head over the planned logits rows, a pass of at most max_logit_rows at a time;
// each pass ends in what crosses to the host: sampled ids, target logprobs, requested logits.
// first_pass_computed: the first pass's logits are already in the workspace (a replayed graph).
Status Qwen35Model::logits_pass(const StepPlan& plan, bool first_pass_computed, StepOutput* so) {
  const int64_t V = cfg_.vocab_size, R = static_cast<int64_t>(logit_rows_.size());
  const size_t S = plan.seqs.size();
  so->vocab_size = V;
  so->sampled.assign(S, backend::SampleResult{});
  so->target_logprobs.assign(S, {});
  so->row_offset.assign(S, 0);
  // Host layout of returned logits: each sequence's rows contiguous, in token order.
  std::vector<int64_t> first_row(S, 0);
  int64_t returned = 0;
  for (size_t i = 0; i < S; ++i) {
    so->row_offset[i] = returned;
    first_row[i] = returned;
    const SeqStep& s = plan.seqs[i];
    if (s.return_logits) returned += s.all_logits ? static_cast<int64_t>(s.token_ids.size()) : 1;
    if (!s.logprob_targets.empty()) so->target_logprobs[i].resize(s.token_ids.size());
  }
  so->logits.resize(static_cast<size_t>(returned * V));
  std::vector<backend::SamplingRow> samplers;
  std::vector<int32_t> targets, top_k;
  std::vector<backend::SampleResult> sampled;
  std::vector<backend::PositionLogprobs> lps;
  for (int64_t r0 = 0; r0 < R; r0 += ws_->max_logit_rows) {
    const int64_t n = std::min(ws_->max_logit_rows, R - r0);
    const backend::Act logits = ws_->logits.rows_view(0, n);
    if (r0 > 0 || !first_pass_computed) DS_RETURN_IF_ERROR(compute_logits(r0, n));
    if (comm_->rank() != 0) continue;  // rank 0 samples; the others only took part in the collectives
    const int64_t n_sample = std::clamp<int64_t>(n_sample_rows_ - r0, 0, n);
    if (n_sample > 0) {
      samplers.clear();
      for (int64_t r = r0; r < r0 + n_sample; ++r)
        samplers.push_back(*plan.seqs[static_cast<size_t>(logit_rows_[static_cast<size_t>(r)].seq)].sampling);
      sampled.assign(static_cast<size_t>(n_sample), {});
      be_->sample(logits.rows_view(0, n_sample), samplers.data(), sampled.data());
      for (int64_t r = 0; r < n_sample; ++r)
        so->sampled[static_cast<size_t>(logit_rows_[static_cast<size_t>(r0 + r)].seq)] = std::move(sampled[static_cast<size_t>(r)]);
    }
    targets.assign(static_cast<size_t>(n), -1);
    top_k.assign(static_cast<size_t>(n), 0);
    bool any_target = false;
    for (int64_t r = 0; r < n; ++r) {
      const LogitRow& lr = logit_rows_[static_cast<size_t>(r0 + r)];
      const SeqStep& s = plan.seqs[static_cast<size_t>(lr.seq)];
      if (!s.logprob_targets.empty()) {
        targets[static_cast<size_t>(r)] = s.logprob_targets[static_cast<size_t>(lr.token)];
        top_k[static_cast<size_t>(r)] = s.target_top_k;
        any_target |= targets[static_cast<size_t>(r)] >= 0;
      }
      if (s.return_logits) {
        const int64_t dst = first_row[static_cast<size_t>(lr.seq)] + (s.all_logits ? lr.token : 0);
        be_->download(so->logits.data() + dst * V, logits.as<float>() + r * logits.ld, static_cast<size_t>(V) * sizeof(float));
      }
    }
    if (any_target) {
      lps.assign(static_cast<size_t>(n), {});
      be_->target_logprobs(logits, targets.data(), top_k.data(), lps.data());
      for (int64_t r = 0; r < n; ++r)
        if (targets[static_cast<size_t>(r)] >= 0) {
          const LogitRow& lr = logit_rows_[static_cast<size_t>(r0 + r)];
          so->target_logprobs[static_cast<size_t>(lr.seq)][static_cast<size_t>(lr.token)] = std::move(lps[static_cast<size_t>(r)]);
        }
    }
  }
  return Status::ok();
}

}  // namespace ds::model
