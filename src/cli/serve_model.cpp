#include "serve_model.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "deltaserve/core/log.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/dist/communicator.h"
#include "deltaserve/dist/nccl_comm.h"
#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/model/model_walk.h"
#include "model_factory.h"

namespace ds::cli {

namespace {

std::string gib(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / 1073741824.0);
  return buf;
}

// Bytes of one KV block (every attention layer, K and V) and one GDN state slot (every GDN layer,
// fp32 SSM + conv state) on one of `tp` ranks, as the backends lay them out: kv heads max(1, nkv/tp),
// value heads and conv channels split tp ways.
engine::CachePlanInput cache_geometry(const model::ModelConfig& mc, int block_size, size_t kv_elem_bytes, int tp) {
  int n_attn = 0, n_gdn = 0;
  for (auto k : mc.layer_types) (k == model::LayerKind::kFullAttention ? n_attn : n_gdn)++;
  const int kv_heads = model::kv_heads_per_rank(mc.num_kv_heads, tp);
  engine::CachePlanInput in;
  in.block_size = block_size;
  in.kv_block_bytes = std::max<int64_t>(1, int64_t{n_attn} * 2 * block_size * kv_heads * mc.head_dim *
                                               static_cast<int64_t>(kv_elem_bytes));
  in.state_slot_bytes =
      int64_t{n_gdn} *
      (int64_t{mc.linear_num_value_heads / tp} * mc.linear_value_head_dim * mc.linear_key_head_dim +
       int64_t{mc.linear_conv_kernel_dim - 1} * (mc.conv_dim() / tp)) *
      4;
  return in;
}

// The smallest of every rank's value (every rank must size the same cache).
Result<int64_t> min_over_ranks(dist::Communicator& ranks, int64_t v) {
  std::vector<int64_t> all(static_cast<size_t>(ranks.size()));
  DS_RETURN_IF_ERROR(ranks.all_gather_host(&v, sizeof v, all.data()));
  return *std::min_element(all.begin(), all.end());
}

}  // namespace

Result<ServingModel> load_model_for_serving(const model::ModelDesc& desc, const server::ServeArgs& a,
                                            const server::Environment& env, int64_t max_model_len,
                                            std::shared_ptr<dist::Communicator> ranks) {
  const model::ModelConfig& mc = desc.config;
  const int block_size = a.block_size > 0 ? a.block_size : 16;
  DS_ASSIGN_OR_RETURN(std::shared_ptr<backend::Backend> be, create_backend(desc, a.device, a.dtype));
  const std::optional<backend::DeviceMemory> at_start = be->device_memory();
  const int tp = ranks->size();
  // The collectives of the step: MPI between CPU ranks; NCCL / RCCL between GPUs, bootstrapped by MPI.
  std::shared_ptr<dist::Communicator> comm = ranks;
  if (tp > 1 && at_start) {
    DS_ASSIGN_OR_RETURN(comm, dist::nccl_communicator(ranks, ranks->rank(), *be));
  }
  ServingModel out;
  if (tp > 1) {
    out.collectives = std::make_shared<dist::TimedCommunicator>(comm);
    comm = out.collectives;
  }
  out.max_num_seqs = a.max_num_seqs;
  out.max_num_batched_tokens = a.max_num_batched_tokens;
  if (at_start && at_start->total_bytes >= (size_t{70} << 30) && be->name().find("A100") == std::string::npos) {
    if (!a.non_default.count("max_num_seqs")) out.max_num_seqs = 1024;
    if (!a.non_default.count("max_num_batched_tokens")) out.max_num_batched_tokens = 8192;
    DS_INFO << "max_num_seqs " << out.max_num_seqs << ", max_num_batched_tokens " << out.max_num_batched_tokens
            << " (vLLM's defaults on a GPU of 70 GiB or more, where not given)";
  }
  engine::CachePlanInput in = cache_geometry(mc, block_size, dtype_size(be->kv_cache_dtype()), tp);
  in.max_num_seqs = out.max_num_seqs;
  in.max_model_len = max_model_len;
  model::ModelOptions mo;
  mo.max_step_tokens = out.max_num_batched_tokens;
  mo.max_step_seqs = out.max_num_seqs;
  mo.max_model_len = max_model_len;

  if (!at_start) {  // a host backend: the budget is a flag
    in.budget_bytes = server::cache_budget_bytes(a, env);
    DS_ASSIGN_OR_RETURN(engine::CachePlan plan, engine::plan_cache_config(in));
    for (const auto& w : plan.warnings) DS_WARN << w;
    mo.cache = plan.config;
    mo.max_step_seqs = plan.max_num_seqs;
    DS_ASSIGN_OR_RETURN(out.model, model::Qwen35Model::create(desc, std::move(be), comm, mo));
    out.max_num_seqs = plan.max_num_seqs;
    return out;
  }

  DS_ASSIGN_OR_RETURN(server::DecodeGraphPlan graphs,
                      server::decode_graph_plan(a, out.max_num_seqs, max_model_len));
  mo.graph_batch_sizes = graphs.sizes;
  mo.graph_max_context = graphs.max_context;
  // A cache for the profiling step only: one sequence of the largest step.
  const int64_t profile_tokens = std::min<int64_t>(out.max_num_batched_tokens, max_model_len);
  mo.cache.block_size = block_size;
  mo.cache.num_kv_blocks = static_cast<int>((profile_tokens + block_size - 1) / block_size);
  mo.cache.num_state_slots = 1;
  backend::Backend& device = *be;
  DS_ASSIGN_OR_RETURN(out.model, model::Qwen35Model::create(desc, std::move(be), comm, mo));
  Timer t;
  DS_RETURN_IF_ERROR(out.model->profile_step());
  const std::optional<backend::DeviceMemory> after = device.device_memory();
  if (!after) return internal_error("the device stopped reporting its memory");
  const int64_t profile_cache = static_cast<int64_t>(out.model->cache_bytes());
  if (a.kv_cache_memory_bytes) {
    in.budget_bytes = *a.kv_cache_memory_bytes;
    in.budget_flags = "--kv-cache-memory-bytes";
    DS_INFO << "Memory profiling took " << t.seconds() << " s; the cache gets --kv-cache-memory-bytes "
            << gib(in.budget_bytes) << " (--gpu-memory-utilization ignored)";
  } else {
    engine::DeviceBudgetInput bi;
    bi.total_bytes = static_cast<int64_t>(at_start->total_bytes);
    bi.free_at_start = static_cast<int64_t>(at_start->free_bytes);
    bi.free_after_profile = static_cast<int64_t>(after->free_bytes);
    bi.profile_cache_bytes = profile_cache;
    bi.utilization = a.gpu_memory_utilization;
    bi.device = a.device == "rocm" ? "rocm:0" : "cuda:0";
    DS_ASSIGN_OR_RETURN(engine::DeviceBudget b, engine::device_cache_budget(bi));
    in.budget_bytes = b.cache_bytes;
    in.budget_flags = "--gpu-memory-utilization / --kv-cache-memory-bytes";
    DS_INFO << "Memory profiling took " << t.seconds() << " s: this instance may use " << gib(bi.total_bytes)
            << " x gpu_memory_utilization " << a.gpu_memory_utilization << " = " << gib(b.requested_bytes)
            << "; the model (weights, workspace, profiling step) takes " << gib(b.model_bytes)
            << "; the rest, " << gib(b.cache_bytes) << ", holds the KV cache and GDN state";
  }
  if (tp > 1) {
    DS_ASSIGN_OR_RETURN(in.budget_bytes, min_over_ranks(*ranks, in.budget_bytes));
  }
  if (!out.model->graph_sizes().empty())  // the padding sequences' block and slot come out of the budget
    in.budget_bytes -= in.kv_block_bytes + in.state_slot_bytes;
  DS_ASSIGN_OR_RETURN(engine::CachePlan plan, engine::plan_cache_config(in));
  for (const auto& w : plan.warnings) DS_WARN << w;
  DS_RETURN_IF_ERROR(out.model->allocate_cache(plan.config));
  out.max_num_seqs = plan.max_num_seqs;
  const int64_t tokens = int64_t{plan.config.num_kv_blocks} * plan.config.block_size;
  DS_INFO << "GPU KV cache size: " << tokens << " tokens; " << plan.config.num_state_slots
          << " GDN state slots; maximum concurrency for " << max_model_len
          << " tokens per request: " << static_cast<double>(tokens) / static_cast<double>(max_model_len)
          << "x";
  if (out.model->graph_sizes().empty()) {
    DS_INFO << "Decode graphs: off ("
            << (graphs.reason_none.empty() ? "the backend captures none" : graphs.reason_none) << ")";
  } else {
    Timer tc;
    DS_ASSIGN_OR_RETURN(int n, out.model->capture_graphs());
    DS_INFO << "Captured decode graphs for " << n << " batch sizes (" << out.model->graph_sizes().front() << ".."
            << out.model->graph_sizes().back()
            << ", contexts up to " << graphs.max_context << " tokens) in " << tc.seconds() << " s";
  }
  return out;
}

}  // namespace ds::cli
