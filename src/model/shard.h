// One tensor-parallel rank's shard of a checkpoint weight, cut on the host before the backend sees
// it (research/tensor-parallel.md §1): backends prepare whole weights and never learn about ranks.
// The splits are model_walk's (the same table `inspect -tp N` plans memory with), and the checks
// that refuse a tensor-parallel size are shared with memory planning.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/model/model_desc.h"
#include "deltaserve/model/model_walk.h"

namespace ds::model {

// A checkpoint Linear as the backends take it (views of the checkpoint's tensors).
backend::WeightSource weight_source(const LinearWeight& lw);

// Rows [begin, begin + size) of a weight's output features, or columns of its input features.
struct Span {
  int64_t begin = 0, size = 0;
};

// The output features rank `rank` of `tp` holds of a column-parallel weight whose output is the
// concatenation of `blocks` (a merged projection: each block is split separately and the rank's
// pieces concatenated, vLLM's MergedColumnParallelLinear); one block when `blocks` is empty.
std::vector<Span> column_spans(int64_t n, const std::vector<int64_t>& blocks, int rank, int tp);
// k/v projections: max(1, nkv / tp) heads of head_dim rows; replicated heads when tp > nkv
// (vLLM's QKVParallelLinear: head rank / (tp / nkv)).
std::vector<Span> kv_head_spans(int nkv, int head_dim, int rank, int tp);

// A weight source for one rank, with the host memory it points into when it had to be copied.
struct ShardedWeight {
  backend::WeightSource src;
  std::vector<uint8_t> weight, scales, bias;
  std::vector<int32_t> qweight, qzeros, g_idx;
};

// Column shard (`spans` of the output features) or row shard (input features [rank*k/tp, ...)).
// Quantized rows keep whole scale groups; act-order or channelwise weights whose rank slice reads
// groups outside its own keep every group's scales (vLLM's marlin_repeat_scales_on_all_ranks).
// A row shard's bias stays on rank 0 (it is added once, after the all-reduce).
Result<std::unique_ptr<ShardedWeight>> shard_column(const backend::WeightSource& full, const std::vector<Span>& spans);
Result<std::unique_ptr<ShardedWeight>> shard_row(const backend::WeightSource& full, int rank, int tp);

// Rows of a plain tensor [rows][row_elems...] (conv1d channels, A_log, dt_bias) as a view into
// `keep`, which must outlive the view.
Result<TensorView> shard_tensor_rows(const TensorView& t, int64_t row_elems, const std::vector<Span>& spans,
                                     std::vector<uint8_t>* keep);

// Refusals of a tensor-parallel size, vLLM's: heads, vocabulary and intermediate sizes must divide;
// GPTQ packing and group boundaries must line up with the shard boundaries.
Status check_tp_config(const ModelConfig& c, int tp);
Status check_quant_shard(const LinearWeight& w, TpSplit split, int tp);

}  // namespace ds::model
