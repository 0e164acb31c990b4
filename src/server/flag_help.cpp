// One line of `deltaserve serve --help` per flag: what it does and its default, worded after
// `vllm serve --help`. Policy notes (ignored / limited) come from the flag table (cli_flags.cpp);
// tests/server check that every flag of the table has a line here.
#include <map>
#include <string>

#include "cli_flags.h"

namespace ds::server {

namespace {

// name -> {metavar ("" for booleans), description, default as vLLM prints it}
const std::map<std::string, FlagHelp>& help_table() {
  static const std::map<std::string, FlagHelp> table = {
      // --- server / HTTP ---
      {"host", {"HOST", "Host name or address to listen on.", "0.0.0.0 (all interfaces)"}},
      {"port", {"PORT", "Port to listen on; 0 picks a free port.", "8000"}},
      {"uds", {"UDS", "Unix domain socket path; when set, --host and --port are ignored.", "None"}},
      {"served-model-name", {"NAME [NAME ...]", "Model name(s) used in the API; the first is returned in responses.", "MODEL"}},
      {"api-key", {"KEY [KEY ...]", "Require one of these keys as a Bearer token on /v1 (also VLLM_API_KEY).", "None"}},
      {"allowed-origins", {"JSON", "CORS allowed origins, as a JSON list.", "['*']"}},
      {"allowed-methods", {"JSON", "CORS allowed methods, as a JSON list.", "['*']"}},
      {"allowed-headers", {"JSON", "CORS allowed headers, as a JSON list.", "['*']"}},
      {"allow-credentials", {"", "Allow credentials in CORS requests.", "False"}},
      {"root-path", {"PATH", "FastAPI root_path when the server runs behind a path-based proxy.", "None"}},
      {"enable-request-id-headers", {"", "Add an X-Request-Id header to every response.", "False"}},
      {"enable-prompt-tokens-details", {"", "Report prompt_tokens_details in usage.", "False"}},
      {"enable-force-include-usage", {"", "Include usage in every response, streamed or not.", "False"}},
      {"enable-server-load-tracking", {"", "Track in-flight requests for the /load endpoint.", "False"}},
      {"disable-log-stats", {"", "Do not log throughput and cache statistics every 10 s.", "False"}},
      {"enable-log-requests", {"", "Log each request's parameters and prompt size.", "False"}},
      {"disable-log-requests", {"", "Deprecated: the opposite of --enable-log-requests.", "True"}},
      {"enable-log-outputs", {"", "Log each request's generated output (with --enable-log-requests).", "False"}},
      {"return-tokens-as-token-ids", {"", "Return logprob tokens as 'token_id:{id}' strings.", "False"}},
      {"max-logprobs", {"N", "Largest logprobs / top_logprobs a request may ask for; -1: no limit.", "20"}},
      {"response-role", {"ROLE", "Role of the generated message when add_generation_prompt is true.", "assistant"}},
      {"ssl-keyfile", {"FILE", "TLS key file.", "None"}},
      {"ssl-certfile", {"FILE", "TLS certificate file.", "None"}},
      {"ssl-ca-certs", {"FILE", "TLS CA certificates file.", "None"}},
      {"ssl-ciphers", {"CIPHERS", "TLS ciphers.", "None"}},
      {"ssl-cert-reqs", {"N", "Whether a client certificate is required (Python ssl module).", "0"}},
      {"enable-ssl-refresh", {"", "Reload TLS certificates when their files change.", "False"}},
      // --- model / loading ---
      {"model", {"MODEL", "Checkpoint directory or Hugging Face repo id in the HF cache (also positional).", "None"}},
      {"tokenizer", {"PATH", "tokenizer.json or its directory.", "MODEL"}},
      {"revision", {"REV", "Revision of MODEL in the HF cache (branch, tag or commit).", "main"}},
      {"tokenizer-revision", {"REV", "Revision of the tokenizer in the HF cache.", "None"}},
      {"code-revision", {"REV", "Revision of the model's remote code.", "None"}},
      {"download-dir", {"DIR", "Where to download weights.", "None (HF cache)"}},
      {"tokenizer-mode", {"MODE", "Tokenizer implementation: auto, hf or slow.", "auto"}},
      {"trust-remote-code", {"", "Trust remote code from Hugging Face (no code is ever run here).", "False"}},
      {"load-format", {"FORMAT", "Weight format: auto, safetensors or dummy.", "auto"}},
      {"dtype", {"DTYPE", "Activation / unquantized weight dtype: auto, half, float16, bfloat16, float, float32.", "auto"}},
      {"quantization", {"METHOD", "Quantization method; auto-detected from config.json when unset.", "None"}},
      {"max-model-len", {"N", "Context length (prompt + output); accepts 32k / 32K; -1: the model's maximum.", "from config.json"}},
      {"generation-config", {"auto|vllm|DIR", "Where request defaults come from: the model's generation_config.json (auto), none (vllm), or DIR.", "auto"}},
      {"override-generation-config", {"JSON", "Overrides of generation-config values, e.g. '{\"temperature\": 0.5}'.", "{}"}},
      {"seed", {"SEED", "Seed for requests that carry none.", "0"}},
      // --- parallelism / memory / scheduling ---
      {"tensor-parallel-size", {"N", "Number of tensor-parallel ranks (-tp): one process per GPU (CPU: per core set); rank 0 serves HTTP.", "1"}},
      {"pipeline-parallel-size", {"N", "Number of pipeline stages (-pp).", "1"}},
      {"data-parallel-size", {"N", "Number of data-parallel replicas (-dp).", "1"}},
      {"enable-expert-parallel", {"", "Shard MoE experts across ranks instead of tensor-parallel splits.", "False"}},
      {"distributed-executor-backend", {"BACKEND", "mp: start the ranks on this machine (through mpirun); mpi / external_launcher: already started by mpirun (several machines); uni: one rank. ray is refused.", "mp"}},
      {"nnodes", {"N", "Machines the ranks span; more than 1 needs the ranks started by mpirun.", "1"}},
      {"node-rank", {"R", "This machine's index (checked against mpirun's placement).", "0"}},
      {"master-addr", {"ADDR", "Accepted for vLLM compatibility; ranks find each other through MPI.", "127.0.0.1"}},
      {"master-port", {"PORT", "Accepted for vLLM compatibility; ranks find each other through MPI.", "29501"}},
      {"device", {"DEVICE", "Backend: auto (a GPU when this build has one and a device is present), cuda, rocm, cpu.", "auto"}},
      {"selftest", {"", "Before loading, run `deltaserve selftest` on the chosen GPU and refuse to serve if a kernel disagrees with the CPU backend.", "False"}},
      {"gpu-memory-utilization", {"F", "Fraction of GPU memory for weights, activations and cache, in (0, 1].", "0.9"}},
      {"kv-cache-memory-bytes", {"BYTES", "Cache size in bytes (8G, 512M); overrides --gpu-memory-utilization and VLLM_CPU_KVCACHE_SPACE.", "None (CPU: 4 GiB)"}},
      {"kv-cache-dtype", {"DTYPE", "KV cache dtype: auto, bfloat16, float16, fp8*.", "auto"}},
      {"block-size", {"N", "Tokens per KV cache block.", "None (chosen by the runtime)"}},
      {"enable-prefix-caching", {"", "Reuse the cache of shared prompt prefixes.", "None"}},
      {"enable-chunked-prefill", {"", "Split long prefills across engine steps.", "None (on)"}},
      {"max-num-seqs", {"N", "Most sequences running at once (clamped to what the cache holds).", "256"}},
      {"max-num-batched-tokens", {"N", "Most tokens processed in one engine step; accepts 8k / 8K.", "2048"}},
      {"swap-space", {"GiB", "CPU swap space per GPU (vLLM V0).", "4"}},
      {"enforce-eager", {"", "Never capture CUDA/HIP graphs: every step runs eagerly.", "False"}},
      // --- chat, reasoning, tools ---
      {"chat-template", {"TEMPLATE", "Chat template: a file path or the template text itself.", "the model's"}},
      {"chat-template-content-format", {"FORMAT", "How message content is given to the template: auto, string, openai.", "auto"}},
      {"trust-request-chat-template", {"", "Allow requests to supply their own chat_template.", "False"}},
      {"default-chat-template-kwargs", {"JSON", "Default chat_template_kwargs, e.g. '{\"enable_thinking\": false}'.", "None"}},
      {"reasoning-parser", {"PARSER", "Split reasoning from content: qwen3, deepseek_r1.", "None"}},
      {"reasoning-field", {"FIELD", "Field(s) reasoning is returned in: reasoning, reasoning_content, both.", "both"}},
      {"enable-auto-tool-choice", {"", "Let the model call tools on its own (tool_choice auto); needs --tool-call-parser.", "False"}},
      {"tool-call-parser", {"PARSER", "Parser of the model's tool calls: qwen3_coder, qwen3_xml.", "None"}},
      {"tool-parser-plugin", {"FILE", "Python file registering extra tool parsers.", "None"}},
      {"exclude-tools-when-tool-choice-none", {"", "Do not render tools into the prompt when tool_choice is none.", "False"}},
      {"speculative-config", {"JSON", "Speculative decoding settings, e.g. '{\"method\": \"mtp\", \"num_speculative_tokens\": 1}'.", "None"}},
      {"enable-reasoning", {"", "Deprecated: reasoning is on when --reasoning-parser is set.", "False"}},
      // --- multimodal ---
      {"limit-mm-per-prompt", {"JSON", "Most items of each modality per prompt, e.g. '{\"image\": 2}'.", "{}"}},
      {"language-model-only", {"", "Load the text decoder only (no vision encoder); image requests are refused.", "False"}},
      {"mm-processor-kwargs", {"JSON", "Arguments for the multimodal processor.", "None"}},
      {"skip-mm-profiling", {"", "Skip profiling the vision encoder's memory at start-up.", "False"}},
      {"mm-encoder-tp-mode", {"MODE", "How the vision encoder uses tensor parallelism: weights, data.", "weights"}},
      {"mm-processor-cache-type", {"TYPE", "Multimodal processor cache: lru, shm.", "lru"}},
      {"mm-processor-cache-gb", {"GB", "Size of the multimodal processor cache.", "4"}},
      // --- logging / misc ---
      {"uvicorn-log-level", {"LEVEL", "Log level: critical, error, warning, info, debug, trace.", "info"}},
      {"max-log-len", {"N", "Most prompt characters or ids printed in request logs.", "None (unlimited)"}},
      {"disable-uvicorn-access-log", {"", "Do not write the HTTP access log.", "False"}},
      {"disable-access-log-for-endpoints", {"PATHS", "Comma-separated paths left out of the access log.", "None"}},
      {"enable-tokenizer-info-endpoint", {"", "Serve /tokenizer_info.", "False"}},
      {"disable-fastapi-docs", {"", "Do not serve /docs, /redoc and /openapi.json.", "False"}},
      {"middleware", {"IMPORT_PATH", "Extra ASGI middleware (Python import path).", "[]"}},
      {"lora-modules", {"NAME=PATH", "LoRA adapters to serve.", "None"}},
      {"compilation-config", {"JSON", "Graph settings (-O, -O0..3, -O.key=value): cudagraph_capture_sizes, max_cudagraph_capture_size, cudagraph_mode (NONE: no graphs); torch.compile keys ignored.", "None"}},
      {"attention-backend", {"BACKEND", "Attention kernel backend.", "None (auto)"}},
      {"hf-overrides", {"JSON", "Overrides of config.json values.", "{}"}},
      {"mamba-ssm-cache-dtype", {"DTYPE", "Dtype of the linear-attention (GDN) SSM state.", "auto"}},
      {"mamba-cache-dtype", {"DTYPE", "Dtype of the linear-attention (GDN) conv and SSM state.", "auto"}},
      {"mamba-block-size", {"N", "Tokens per linear-attention state block (prefix caching).", "None"}},
      {"api-server-count", {"N", "Number of API server processes (-asc).", "1"}},
      {"max-cudagraph-capture-size", {"N", "Largest batch captured in a CUDA graph.", "None"}},
      {"cuda-graph-sizes", {"N [N ...]", "Batch sizes captured in CUDA graphs.", "None"}},
      {"structured-outputs-config", {"JSON", "Structured output (guided decoding) settings.", "None"}},
      {"guided-decoding-backend", {"BACKEND", "Deprecated: the structured output backend.", "auto"}},
      {"scheduling-policy", {"POLICY", "Scheduling order: fcfs or priority.", "fcfs"}},
      {"worker-cls", {"CLASS", "Python worker class.", "auto"}},
      {"hf-config-path", {"PATH", "Where config.json is read from, if not MODEL.", "None"}},
      {"config-format", {"FORMAT", "Format of the model config: auto, hf, mistral.", "auto"}},
      {"max-seq-len-to-capture", {"N", "Longest context a decode graph serves; longer sequences decode eagerly.", "8192"}},
      {"logits-processors", {"CLASS [CLASS ...]", "Python logits processor classes.", "None"}},
      {"served-model-alias", {"NAME", "Extra name the model answers to.", "None"}},
      {"enable-lora", {"", "Serve LoRA adapters.", "False"}},
      {"headless", {"", "Run engine ranks without an API server (multi-node).", "False"}},
      {"async-scheduling", {"", "Schedule the next step while the current one runs.", "None"}},
      {"no-async-scheduling", {"", "Turn --async-scheduling off.", "False"}},
      {"disable-custom-all-reduce", {"", "Use NCCL all-reduce instead of vLLM's custom kernel.", "False"}},
      {"enable-sleep-mode", {"", "Allow the engine to release GPU memory while idle (/sleep).", "False"}},
      {"disable-frontend-multiprocessing", {"", "Run the API server and the engine in one process.", "False"}},
      {"enable-auto-tool-choice-fallback", {"", "Fall back to content when tool-call parsing fails.", "False"}},
      {"disable-cascade-attn", {"", "Disable cascade attention.", "False"}},
      {"enable-mfu-metrics", {"", "Export model-FLOPs-utilization metrics.", "False"}},
      {"calculate-kv-scales", {"", "Compute fp8 KV cache scales from the first batch.", "False"}},
      // --- deltaserve-only ---
      {"max-request-body-bytes", {"BYTES", "Largest request body accepted (413 above it); accepts 100M.", "100 MiB"}},
      {"http-threads", {"N", "HTTP worker threads; 0: derived from --max-num-seqs.", "0"}},
  };
  return table;
}

}  // namespace

const FlagHelp* flag_help(const std::string& name) {
  const auto& t = help_table();
  auto it = t.find(name);
  return it == t.end() ? nullptr : &it->second;
}

}  // namespace ds::server
