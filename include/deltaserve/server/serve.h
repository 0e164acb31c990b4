// The `serve` command: vLLM's flags -> a model from a factory -> the engine thread and the HTTP
// server, until SIGINT / SIGTERM. `deltaserve serve` passes the checkpoint loader; the test server
// (tests/support) passes the scripted model, so both run this same code.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "deltaserve/engine/text_codec.h"
#include "deltaserve/model/step_plan.h"
#include "deltaserve/server/cli_args.h"

namespace ds::server {

using Environment = std::map<std::string, std::string>;

// What a model factory hands the server.
struct ServedModel {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<engine::TextCodec> codec;
  std::string model_dir;               // generation_config.json and the chat template are read here
  std::vector<int32_t> eos_token_ids;  // empty: generation_config.json's, else <|im_end|> / <|endoftext|>
  int max_num_seqs = 0;                // after the cache plan
  int64_t max_num_batched_tokens = 0;  // 0: the flag's (a GPU may raise vLLM's default)
};

// Builds the model from the parsed flags; may set server->max_model_len. Called with SIGINT and
// SIGTERM already blocked, so threads it starts never take them; a signal meanwhile ends start-up.
using ModelFactory =
    std::function<Result<ServedModel>(const ServeArgs& args, const Environment& env, ServerConfig* server)>;

// argv: everything after `serve`. Returns the process exit code: 0 after a clean shutdown on
// SIGINT / SIGTERM (stop accepting, abort in-flight requests so every stream ends with a finish
// chunk and [DONE]), 2 for bad flags, 1 when start-up fails.
int serve_main(const std::vector<std::string>& argv, const ModelFactory& make_model);

// The process environment as a map (what serve_main and the tensor-parallel start-up read).
Environment read_env();

// The cache budget: --kv-cache-memory-bytes, else VLLM_CPU_KVCACHE_SPACE GiB (vLLM's CPU default 4).
int64_t cache_budget_bytes(const ServeArgs& args, const Environment& env);

}  // namespace ds::server
