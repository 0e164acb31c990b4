// GpuBackend's step graphs and device memory: a step is captured on the runtime's stream (a
// CUDA/HIP graph, a recorded list under emulation) and replayed after a plan() with the same shapes.
#include <memory>
#include <string>

#include "src/backend/gpu/gpu_backend.h"

namespace ds::backend::gpu {

namespace {

// The recording plus the step shapes it was captured for: every launch size it holds came from them.
class GpuStepGraph : public StepGraph {
 public:
  std::unique_ptr<Graph> graph;
  int64_t T = 0, max_context = 0;
  int S = 0, blocks_per_seq = 0, n_reset = 0, n_logit_rows = 0;
  bool all_decode = false;

  static std::string describe(int64_t T, int S, int width, int n_reset, int n_logits, int64_t context) {
    return std::to_string(T) + " tokens, " + std::to_string(S) + " sequences, " + std::to_string(width) +
           " blocks per sequence, " + std::to_string(n_reset) + " state resets, " + std::to_string(n_logits) +
           " logit rows, contexts up to " + std::to_string(context);
  }
};

}  // namespace

std::optional<DeviceMemory> GpuBackend::device_memory() {
  auto info = rt_->query_memory();
  if (!info) return std::nullopt;
  return DeviceMemory{info->total_bytes, info->free_bytes};
}

Status GpuBackend::begin_capture() {
  if (!meta_buf_) return internal_error("begin_capture() before reserve_step()");
  return rt_->begin_capture();
}

Result<std::unique_ptr<StepGraph>> GpuBackend::end_capture() {
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Graph> recorded, rt_->end_capture());
  auto g = std::make_unique<GpuStepGraph>();
  g->graph = std::move(recorded);
  g->T = step_.T;
  g->S = step_.S;
  g->blocks_per_seq = step_.blocks_per_seq;
  g->n_reset = step_.n_reset;
  g->n_logit_rows = step_.n_logit_rows;
  g->max_context = step_.max_context;
  g->all_decode = step_.all_decode;
  return Result<std::unique_ptr<StepGraph>>(std::move(g));
}

Status GpuBackend::replay(const StepGraph& graph) {
  const auto& g = static_cast<const GpuStepGraph&>(graph);
  const DeviceStep& d = step_;
  if (d.T != g.T || d.S != g.S || d.blocks_per_seq != g.blocks_per_seq || d.n_reset != g.n_reset ||
      d.n_logit_rows != g.n_logit_rows || d.max_context != g.max_context || d.all_decode != g.all_decode)
    return internal_error(
        "replay: the planned step (" +
        GpuStepGraph::describe(d.T, d.S, d.blocks_per_seq, d.n_reset, d.n_logit_rows, d.max_context) +
        ") is not the shape the graph was captured for (" +
        GpuStepGraph::describe(g.T, g.S, g.blocks_per_seq, g.n_reset, g.n_logit_rows, g.max_context) + ")");
  return rt_->launch_graph(*g.graph);
}

}  // namespace ds::backend::gpu
