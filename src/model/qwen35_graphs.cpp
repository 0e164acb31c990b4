// Qwen35Model's decode graphs and start-up helpers. A decode step (every sequence one new token)
// is padded to the next captured batch size with dummy sequences, whose token is 0 at position 0,
// whose KV block and state slot are the cache's one extra block and slot (reset every step), and
// whose logits nobody reads; its block tables are as wide as the longest context a graph serves.
// The backend then sees the same shapes every time and replays the recording made for that size
// (vLLM's CUDA graph padding). Steps a graph cannot take (prefill chunks, a sequence at position 0,
// all-position logits, contexts past the bound, more sequences than the largest size) run eagerly.
#include <algorithm>

#include "deltaserve/core/log.h"
#include "deltaserve/model/qwen35.h"
#include "src/model/qwen35_internal.h"

namespace ds::model {

int Qwen35Model::graph_for(const StepPlan& plan) const {
  if (graph_sizes_.empty() || plan.seqs.empty()) return -1;
  const int S = static_cast<int>(plan.seqs.size());
  if (S > graph_sizes_.back()) return -1;
  for (const SeqStep& s : plan.seqs)
    if (s.token_ids.size() != 1 || s.start_pos == 0 || s.start_pos + 1 > graph_context_ || s.all_logits)
      return -1;
  return static_cast<int>(std::lower_bound(graph_sizes_.begin(), graph_sizes_.end(), S) - graph_sizes_.begin());
}

// meta_ (a decode step of S <= B sequences, built by build_meta) padded to B sequences with the
// graph's fixed shapes: block tables graph_context_ wide, one reset (the padding slot), B logit rows
// (the requested ones first, in their order, then the rest), contexts bounded by graph_context_.
void Qwen35Model::pad_meta(int B) {
  backend::StepMeta& m = meta_;
  const int S = m.num_seqs();
  const int64_t bs = opt_.cache.block_size;
  const int width = static_cast<int>((graph_context_ + bs - 1) / bs);
  const int32_t pad_block = opt_.cache.num_kv_blocks, pad_slot = opt_.cache.num_state_slots;
  std::vector<int32_t> tables(static_cast<size_t>(B) * static_cast<size_t>(width), -1);
  for (int s = 0; s < S; ++s)
    std::copy_n(m.block_tables.begin() + static_cast<ptrdiff_t>(s) * m.blocks_per_seq, m.blocks_per_seq,
                tables.begin() + static_cast<ptrdiff_t>(s) * width);
  for (int s = S; s < B; ++s) {
    tables[static_cast<size_t>(s) * static_cast<size_t>(width)] = pad_block;
    m.token_ids.push_back(0);
    m.positions.insert(m.positions.end(), {0, 0, 0});
    m.cu_seqlens.push_back(s + 1);
    m.start_pos.push_back(0);
    m.state_slots.push_back(pad_slot);
  }
  m.block_tables = std::move(tables);
  m.blocks_per_seq = width;
  m.reset_slots.assign(1, pad_slot);
  std::vector<bool> listed(static_cast<size_t>(B), false);
  for (int32_t r : m.logit_rows) listed[static_cast<size_t>(r)] = true;
  for (int r = 0; r < B; ++r)
    if (!listed[static_cast<size_t>(r)]) m.logit_rows.push_back(r);
  m.context_bound = graph_context_;
}

// Records the planned step (meta_ padded to graph g's size B) through the logits of its B rows.
Status Qwen35Model::capture_graph(size_t g) {
  const int B = graph_sizes_[g];
  DS_RETURN_IF_ERROR(be_->begin_capture());
  Status s = run_layers(B);
  if (s.is_ok()) s = compute_logits(0, B);
  auto graph = be_->end_capture();  // always: the stream must leave capture mode
  DS_RETURN_IF_ERROR(s);
  if (!graph) return graph.status();
  graphs_[g] = std::move(*graph);
  return Status::ok();
}

Result<int> Qwen35Model::capture_graphs() {
  // Largest first, as vLLM does; each on a step of dummy sequences only (nothing runs while recording).
  for (size_t i = graph_sizes_.size(); i-- > 0;) {
    if (graphs_[i]) continue;
    meta_ = backend::StepMeta();
    meta_.cu_seqlens.assign(1, 0);
    logit_rows_.clear();
    n_sample_rows_ = 0;
    pad_meta(graph_sizes_[i]);
    DS_RETURN_IF_ERROR(be_->plan(meta_));
    DS_RETURN_IF_ERROR(capture_graph(i));
  }
  return static_cast<int>(graph_sizes_.size());
}

Status Qwen35Model::profile_step() {
  const int64_t n =
      opt_.max_model_len > 0 ? std::min(opt_.max_step_tokens, opt_.max_model_len) : opt_.max_step_tokens;
  const int64_t bs = opt_.cache.block_size;
  if ((n_attn_ > 0 && opt_.cache.num_kv_blocks < (n + bs - 1) / bs) ||
      (n_gdn_ > 0 && opt_.cache.num_state_slots < 1))
    return internal_error("profile_step needs a cache of " + std::to_string(n) +
                          " tokens and one state slot");
  StepPlan plan;
  SeqStep s;
  s.token_ids.assign(static_cast<size_t>(n), 0);
  for (int64_t b = 0; b < (n + bs - 1) / bs; ++b) s.block_table.push_back(static_cast<int32_t>(b));
  s.state_slot = 0;
  kernels::SamplingRow row;  // sampled with logprobs: every path of the sampler runs once
  row.logprobs = 20;
  s.sampling = row;
  plan.seqs.push_back(std::move(s));
  DS_ASSIGN_OR_RETURN(StepOutput out, forward(plan));
  (void)out;
  return Status::ok();
}

}  // namespace ds::model
