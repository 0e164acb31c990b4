// The model `serve` runs, with its cache pools sized the way vLLM sizes them. On the CPU: from
// --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE. On a GPU: load the weights, run one profiling
// step of the largest step the workspace allows on a small cache, then give the cache what is left of
// --gpu-memory-utilization x the device's memory (or --kv-cache-memory-bytes), clamp max_num_seqs to
// the GDN state slots that fit, and capture the decode graphs. On a GPU of 70 GiB or more other than
// an A100, --max-num-seqs and --max-num-batched-tokens default to 1024 and 8192 (vLLM's
// get_batch_defaults) when not given.
#pragma once

#include <memory>

#include "deltaserve/core/status.h"
#include "deltaserve/dist/communicator.h"
#include "deltaserve/dist/timed_comm.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/server/cli_args.h"
#include "deltaserve/server/serve.h"

namespace ds::cli {

struct ServingModel {
  std::unique_ptr<model::Qwen35Model> model;
  int max_num_seqs = 0;  // after clamping to the state slots that fit
  int64_t max_num_batched_tokens = 0;
  std::shared_ptr<dist::TimedCommunicator> collectives;  // the model's collectives, timed (TP > 1)
};

// ranks: this process's tensor-parallel group (single_rank() at TP 1; MPI ranks otherwise, which
// bootstrap NCCL/RCCL on a GPU). Every rank calls this with the same flags: they run the same
// collectives (profiling, graph capture) in the same order and agree on one cache size.
Result<ServingModel> load_model_for_serving(const model::ModelDesc& desc, const server::ServeArgs& a,
                                            const server::Environment& env, int64_t max_model_len,
                                            std::shared_ptr<dist::Communicator> ranks);

}  // namespace ds::cli
