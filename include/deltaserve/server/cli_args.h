// `deltaserve serve MODEL [flags]`: vLLM-compatible command-line parsing. Follows vLLM's
// FlexibleArgumentParser rules (--a_b == --a-b, --flag=value, --no-FLAG, 32k/32K, JSON values,
// --config file.yaml, model positional or --model) and the policy of every `vllm serve` flag:
// honoured, refused with a reason, or accepted-and-ignored with a log line. Unknown flags warn.
// The flag table is documented in src/server/FLAGS.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deltaserve/core/status.h"
#include "deltaserve/server/server_config.h"

namespace ds::server {

struct ServeArgs {
  std::string model;
  ServerConfig server;  // host, port, names, keys, CORS, parsers, logprobs, ...
  // Engine and model.
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  std::optional<int64_t> max_model_len;
  uint64_t seed = 0;
  double gpu_memory_utilization = 0.9;
  int tensor_parallel_size = 1;
  // Tensor-parallel ranks: "mp" starts them on this machine (under mpirun, by itself); "mpi" /
  // "external_launcher" expects to be started by mpirun already (several machines); "uni" is TP 1.
  std::string distributed_executor_backend;
  int nnodes = 1, node_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string dtype = "auto";
  std::string device = "auto";  // auto | cuda | rocm | cpu (vLLM removed --device; users still pass it)
  bool selftest = false;        // check every GPU kernel against the CPU backend before loading
  std::string quantization;
  std::string kv_cache_dtype = "auto";
  std::optional<int64_t> kv_cache_memory_bytes;
  int block_size = 0;  // 0: the model's choice
  std::string generation_config = "auto";  // auto | vllm | a folder
  nlohmann::json override_generation_config = nlohmann::json::object();
  std::string tokenizer;
  std::string revision = "main";
  std::string load_format = "auto";
  bool language_model_only = false;
  // Decode graphs (see decode_graph_plan): --enforce-eager, --compilation-config / -O (merged, dotted
  // keys too), --cuda-graph-sizes, --max-cudagraph-capture-size, --max-seq-len-to-capture.
  bool enforce_eager = false;
  nlohmann::json compilation_config = nlohmann::json::object();
  std::vector<int> cuda_graph_sizes;
  std::optional<int> max_cudagraph_capture_size;
  std::optional<int64_t> max_seq_len_to_capture;
  bool enable_log_outputs = false;
  std::string uvicorn_log_level;
  bool help = false;

  std::vector<std::string> warnings;  // unknown / ignored flags, to log at start-up
  std::vector<std::string> infos;     // accepted-and-ignored flags
  std::map<std::string, std::string> non_default;  // "max_model_len" -> "32768", for the start-up line
};

// args: everything after `serve`. env: the process environment (VLLM_API_KEY, ...). Errors are
// what argparse / vLLM would refuse (bad values, contradictory flags, refused features), with the
// flag named in the message.
Result<ServeArgs> parse_serve_args(const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env);

// "32k" -> 32000, "32K" -> 32768, "1m"/"1M", "1g"/"1G", plain integers (vLLM human_readable_int).
std::optional<int64_t> parse_human_int(const std::string& s);

// The decode steps captured as graphs, as vLLM chooses its CUDA graph sizes: none with
// --enforce-eager, cudagraph_mode NONE or -O0; else compilation_config.cudagraph_capture_sizes (or
// --cuda-graph-sizes) or vLLM's default list [1, 2, 4, 8, 16, 24, ..., 248, 256, 272, ...] up to
// max_cudagraph_capture_size (default min(2 * max_num_seqs, 512)); sizes above max_num_seqs are
// dropped (a decode step never has more sequences). max_context: the longest context a graph
// serves, --max-seq-len-to-capture (vLLM's old default 8192) within max_model_len; longer
// sequences decode eagerly.
struct DecodeGraphPlan {
  std::vector<int> sizes;
  int64_t max_context = 0;
  std::string reason_none;  // why sizes is empty
};
Result<DecodeGraphPlan> decode_graph_plan(const ServeArgs& a, int max_num_seqs, int64_t max_model_len);

std::string serve_help();
// "non-default args: {'model': '...', 'max_model_len': 32768}"
std::string format_non_default(const ServeArgs& a);

}  // namespace ds::server
