#include "cli_flags.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "deltaserve/model/device_choice.h"

namespace ds::server {

using nlohmann::json;

namespace {

Status bad(const std::string& flag, const std::string& msg) {
  return invalid_argument("argument --" + flag + ": " + msg);
}

Status to_int(const std::string& flag, const std::string& v, int64_t* out) {
  try {
    size_t pos = 0;
    *out = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
  } catch (...) {
    return bad(flag, "invalid int value: '" + v + "'");
  }
  return Status::ok();
}

// An int flag within [lo, hi]; the error states the range.
Status to_int_in(const std::string& flag, const std::string& v, int64_t lo, int64_t hi, int* out) {
  int64_t n;
  DS_RETURN_IF_ERROR(to_int(flag, v, &n));
  if (n < lo || n > hi) return bad(flag, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  *out = static_cast<int>(n);
  return Status::ok();
}

Status to_double(const std::string& flag, const std::string& v, double* out) {
  try {
    size_t pos = 0;
    *out = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
  } catch (...) {
    return bad(flag, "invalid float value: '" + v + "'");
  }
  return Status::ok();
}

Status to_json(const std::string& flag, const std::string& v, json* out) {
  *out = json::parse(v, nullptr, false);
  if (out->is_discarded()) return bad(flag, "invalid JSON value: '" + v + "'");
  return Status::ok();
}

// JSON list flags (--allowed-origins '["*"]'); a bare word is taken as a one-element list.
Status to_string_list(const std::string& flag, const std::string& v, std::vector<std::string>* out) {
  json j = json::parse(v, nullptr, false);
  if (j.is_discarded() || j.is_string()) {
    *out = {j.is_string() ? j.get<std::string>() : v};
    return Status::ok();
  }
  if (!j.is_array()) return bad(flag, "expected a JSON list: '" + v + "'");
  out->clear();
  for (const auto& x : j) {
    if (!x.is_string()) return bad(flag, "expected a JSON list of strings: '" + v + "'");
    out->push_back(x.get<std::string>());
  }
  return Status::ok();
}

using K = FlagKind;
using P = FlagPolicy;
using Fn = std::function<Status(ServeArgs&, const FlagValue&)>;

FlagSpec honour(std::string n, K k, Fn f) { return {std::move(n), k, P::kHonoured, std::move(f), ""}; }
FlagSpec accept(std::string n, K k, std::string why) {
  return {std::move(n), k, P::kAccepted, [](ServeArgs&, const FlagValue&) { return Status::ok(); }, std::move(why)};
}
FlagSpec refuse_if(std::string n, K k, std::function<bool(const FlagValue&)> refused, std::string why, Fn f = nullptr) {
  const std::string name = n;
  return {std::move(n), k, P::kRefused,
          [=](ServeArgs& a, const FlagValue& v) -> Status {
            if (refused(v)) return unsupported("--" + name + " " + (v.text.empty() ? "" : v.text + " ") + "is refused: " + why);
            return f ? f(a, v) : Status::ok();
          },
          why};
}

std::vector<FlagSpec> build() {
  std::vector<FlagSpec> t;
  // --- server / HTTP ---
  t.push_back(honour("host", K::kString, [](ServeArgs& a, const FlagValue& v) { a.server.host = v.text; return Status::ok(); }));
  t.push_back(honour("port", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t p;
    DS_RETURN_IF_ERROR(to_int("port", v.text, &p));
    if (p < 0 || p > 65535) return bad("port", "must be in [0, 65535]");
    a.server.port = static_cast<int>(p);
    return Status::ok();
  }));
  t.push_back(honour("uds", K::kString, [](ServeArgs& a, const FlagValue& v) {
    if (v.text.empty()) return bad("uds", "expected a socket path");
    a.server.uds_path = v.text;
    return Status::ok();
  }));
  t.push_back(honour("served-model-name", K::kList, [](ServeArgs& a, const FlagValue& v) {
    if (v.list.empty()) return bad("served-model-name", "expected at least one argument");
    a.server.served_model_names = v.list;
    return Status::ok();
  }));
  t.push_back(honour("api-key", K::kList, [](ServeArgs& a, const FlagValue& v) { a.server.api_keys = v.list; return Status::ok(); }));
  for (const char* n : {"allowed-origins", "allowed-methods", "allowed-headers"}) {
    const std::string name = n;
    t.push_back(honour(name, K::kString, [name](ServeArgs& a, const FlagValue& v) {
      auto* dst = name == "allowed-origins" ? &a.server.allowed_origins
                  : name == "allowed-methods" ? &a.server.allowed_methods : &a.server.allowed_headers;
      return to_string_list(name, v.text, dst);
    }));
  }
  t.push_back(honour("allow-credentials", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.allow_credentials = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("root-path", K::kString, [](ServeArgs& a, const FlagValue& v) { a.server.root_path = v.text; return Status::ok(); }));
  t.push_back(honour("enable-request-id-headers", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_request_id_headers = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("enable-prompt-tokens-details", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_prompt_tokens_details = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("enable-force-include-usage", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_force_include_usage = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("enable-server-load-tracking", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_server_load_tracking = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("disable-log-stats", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.disable_log_stats = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("enable-log-requests", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_log_requests = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("disable-log-requests", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_log_requests = !v.as_bool(); return Status::ok(); }));
  t.push_back(honour("enable-log-outputs", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.enable_log_outputs = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("return-tokens-as-token-ids", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.return_tokens_as_token_ids = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("max-logprobs", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t n;
    DS_RETURN_IF_ERROR(to_int("max-logprobs", v.text, &n));
    a.server.max_logprobs = static_cast<int>(n);
    return Status::ok();
  }));
  t.push_back(honour("response-role", K::kString, [](ServeArgs& a, const FlagValue& v) { a.server.response_role = v.text; return Status::ok(); }));
  for (const char* n : {"ssl-keyfile", "ssl-certfile", "ssl-ca-certs", "ssl-ciphers"})
    t.push_back(refuse_if(n, K::kString, [](const FlagValue& v) { return !v.text.empty(); },
                          "TLS is not supported by deltaserve; terminate TLS in a reverse proxy"));
  t.push_back(accept("ssl-cert-reqs", K::kInt, "only meaningful with TLS"));
  t.push_back(refuse_if("enable-ssl-refresh", K::kBool, [](const FlagValue& v) { return v.as_bool(); }, "TLS is not supported"));
  // --- model / loading ---
  t.push_back(honour("model", K::kString, [](ServeArgs& a, const FlagValue& v) { a.model = v.text; return Status::ok(); }));
  t.push_back(honour("tokenizer", K::kString, [](ServeArgs& a, const FlagValue& v) { a.tokenizer = v.text; return Status::ok(); }));
  t.push_back(honour("revision", K::kString, [](ServeArgs& a, const FlagValue& v) { a.revision = v.text; return Status::ok(); }));
  for (const char* n : {"tokenizer-revision", "code-revision", "download-dir"})
    t.push_back(accept(n, K::kString, "deltaserve never downloads; the model is read from a local dir or the HF cache"));
  t.push_back(refuse_if("tokenizer-mode", K::kString, [](const FlagValue& v) { return v.text != "auto" && v.text != "hf" && v.text != "slow"; },
                        "only HF tokenizer.json tokenizers are supported"));
  t.push_back(honour("trust-remote-code", K::kBool, [](ServeArgs&, const FlagValue&) { return Status::ok(); }));
  t.push_back(refuse_if("load-format", K::kString,
                        [](const FlagValue& v) { return v.text != "auto" && v.text != "safetensors" && v.text != "dummy"; },
                        "only safetensors checkpoints are supported",
                        [](ServeArgs& a, const FlagValue& v) { a.load_format = v.text; return Status::ok(); }));
  t.push_back(refuse_if("dtype", K::kString,
                        [](const FlagValue& v) {
                          for (const char* d : {"auto", "half", "float16", "bfloat16", "float", "float32"})
                            if (v.text == d) return false;
                          return true;
                        },
                        "choose from auto, half, float16, bfloat16, float, float32",
                        [](ServeArgs& a, const FlagValue& v) { a.dtype = v.text; return Status::ok(); }));
  t.push_back(refuse_if("quantization", K::kString,
                        [](const FlagValue& v) {
                          for (const char* q : {"", "None", "gptq", "gptq_marlin", "gptq_marlin_24", "auto-round", "auto_round", "inc", "autoround"})
                            if (v.text == q) return false;
                          return true;
                        },
                        "only GPTQ-family (gptq, gptq_marlin) and AutoRound (auto-round, inc) checkpoints are supported; "
                        "the method is auto-detected from config.json",
                        [](ServeArgs& a, const FlagValue& v) { a.quantization = v.text; return Status::ok(); }));
  t.push_back(honour("device", K::kString, [](ServeArgs& a, const FlagValue& v) {
    DS_RETURN_IF_ERROR(model::parse_device(v.text).status());
    a.device = v.text;
    return Status::ok();
  }));
  t.push_back(honour("selftest", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.selftest = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("max-model-len", K::kHumanInt, [](ServeArgs& a, const FlagValue& v) {
    auto n = parse_human_int(v.text);
    if (!n) return bad("max-model-len", "invalid human_readable_int value: '" + v.text + "'");
    if (*n != -1 && *n < 1) return bad("max-model-len", "must be positive");
    if (*n != -1) a.max_model_len = *n;
    return Status::ok();
  }));
  t.push_back(honour("generation-config", K::kString, [](ServeArgs& a, const FlagValue& v) { a.generation_config = v.text; return Status::ok(); }));
  t.push_back(honour("override-generation-config", K::kJson, [](ServeArgs& a, const FlagValue& v) {
    DS_RETURN_IF_ERROR(to_json("override-generation-config", v.text, &a.override_generation_config));
    if (!a.override_generation_config.is_object()) return bad("override-generation-config", "expected a JSON object");
    return Status::ok();
  }));
  t.push_back(honour("seed", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t s;
    DS_RETURN_IF_ERROR(to_int("seed", v.text, &s));
    a.seed = static_cast<uint64_t>(s);
    return Status::ok();
  }));
  // --- parallelism / memory / scheduling ---
  t.push_back(honour("tensor-parallel-size", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    return to_int_in("tensor-parallel-size", v.text, 1, 1024, &a.tensor_parallel_size);
  }));
  t.push_back(honour("distributed-executor-backend", K::kString, [](ServeArgs& a, const FlagValue& v) {
    if (v.text == "ray")
      return bad("distributed-executor-backend",
                 "'ray' is not used by deltaserve: it starts its tensor-parallel ranks itself ('mp', one machine) "
                 "or runs under mpirun ('mpi', several machines)");
    if (v.text != "mp" && v.text != "mpi" && v.text != "uni" && v.text != "external_launcher")
      return bad("distributed-executor-backend", "invalid choice: '" + v.text + "' (choose from mp, mpi, uni, external_launcher)");
    a.distributed_executor_backend = v.text;
    return Status::ok();
  }));
  t.push_back(honour("nnodes", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    return to_int_in("nnodes", v.text, 1, 1024, &a.nnodes);
  }));
  t.push_back(honour("node-rank", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    return to_int_in("node-rank", v.text, 0, 1023, &a.node_rank);
  }));
  t.push_back(honour("master-addr", K::kString, [](ServeArgs& a, const FlagValue& v) { a.master_addr = v.text; return Status::ok(); }));
  t.push_back(honour("master-port", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    return to_int_in("master-port", v.text, 1, 65535, &a.master_port);
  }));
  t.push_back(refuse_if("pipeline-parallel-size", K::kInt, [](const FlagValue& v) { return v.text != "1"; }, "pipeline parallelism is not supported"));
  t.push_back(refuse_if("data-parallel-size", K::kInt, [](const FlagValue& v) { return v.text != "1"; }, "data parallelism is not supported; run several servers"));
  t.push_back(refuse_if("enable-expert-parallel", K::kBool, [](const FlagValue& v) { return v.as_bool(); }, "expert parallelism is not supported"));
  t.push_back(honour("gpu-memory-utilization", K::kFloat, [](ServeArgs& a, const FlagValue& v) {
    DS_RETURN_IF_ERROR(to_double("gpu-memory-utilization", v.text, &a.gpu_memory_utilization));
    if (!(a.gpu_memory_utilization > 0 && a.gpu_memory_utilization <= 1))
      return bad("gpu-memory-utilization", "must be in (0, 1]");
    return Status::ok();
  }));
  t.push_back(honour("kv-cache-memory-bytes", K::kHumanInt, [](ServeArgs& a, const FlagValue& v) {
    auto n = parse_human_int(v.text);
    if (!n || *n <= 0) return bad("kv-cache-memory-bytes", "invalid value: '" + v.text + "'");
    a.kv_cache_memory_bytes = *n;
    return Status::ok();
  }));
  t.push_back(refuse_if("kv-cache-dtype", K::kString,
                        [](const FlagValue& v) { return v.text != "auto" && v.text != "bfloat16" && v.text != "float16"; },
                        "fp8 KV cache is not implemented yet",
                        [](ServeArgs& a, const FlagValue& v) { a.kv_cache_dtype = v.text; return Status::ok(); }));
  t.push_back(accept("block-size", K::kInt, "the KV block size is chosen by the runtime for the hybrid GDN layout"));
  t.push_back(accept("enable-prefix-caching", K::kBool, "prefix caching is not implemented yet (changes speed only, never output)"));
  t.push_back(accept("enable-chunked-prefill", K::kBool, "chunked prefill is always on"));
  t.push_back(honour("max-num-seqs", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t n;
    DS_RETURN_IF_ERROR(to_int("max-num-seqs", v.text, &n));
    if (n < 1) return bad("max-num-seqs", "must be at least 1");
    a.max_num_seqs = static_cast<int>(n);
    return Status::ok();
  }));
  t.push_back(honour("max-num-batched-tokens", K::kHumanInt, [](ServeArgs& a, const FlagValue& v) {
    auto n = parse_human_int(v.text);
    if (!n || *n < 1) return bad("max-num-batched-tokens", "invalid value: '" + v.text + "'");
    a.max_num_batched_tokens = *n;
    return Status::ok();
  }));
  t.push_back(accept("swap-space", K::kFloat, "V0 only; deprecated in vLLM V1"));
  t.push_back(honour("enforce-eager", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.enforce_eager = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("compilation-config", K::kJson, [](ServeArgs& a, const FlagValue& v) {
    // -O3 / -O 0: vLLM's optimization level; a JSON object merges (dotted keys arrive as one-key objects).
    if (!v.text.empty() && std::isdigit(static_cast<unsigned char>(v.text[0])) && v.text.size() == 1) {
      a.compilation_config["level"] = v.text[0] - '0';
      return Status::ok();
    }
    json j;
    DS_RETURN_IF_ERROR(to_json("compilation-config", v.text, &j));
    if (!j.is_object()) return bad("compilation-config", "expected a JSON object or an optimization level 0-3");
    a.compilation_config.update(j);
    return Status::ok();
  }));
  t.push_back(honour("cuda-graph-sizes", K::kList, [](ServeArgs& a, const FlagValue& v) {
    a.cuda_graph_sizes.clear();
    for (const std::string& x : v.list) {
      int64_t n;
      DS_RETURN_IF_ERROR(to_int("cuda-graph-sizes", x, &n));
      if (n < 1) return bad("cuda-graph-sizes", "sizes must be positive");
      a.cuda_graph_sizes.push_back(static_cast<int>(n));
    }
    return Status::ok();
  }));
  t.push_back(honour("max-cudagraph-capture-size", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t n;
    DS_RETURN_IF_ERROR(to_int("max-cudagraph-capture-size", v.text, &n));
    if (n < 0) return bad("max-cudagraph-capture-size", "must not be negative");
    a.max_cudagraph_capture_size = static_cast<int>(n);
    return Status::ok();
  }));
  t.push_back(honour("max-seq-len-to-capture", K::kHumanInt, [](ServeArgs& a, const FlagValue& v) {
    auto n = parse_human_int(v.text);
    if (!n || *n < 1) return bad("max-seq-len-to-capture", "invalid value: '" + v.text + "'");
    a.max_seq_len_to_capture = *n;
    return Status::ok();
  }));
  // --- chat, reasoning, tools ---
  t.push_back(honour("chat-template", K::kString, [](ServeArgs& a, const FlagValue& v) {
    std::ifstream f(v.text);
    if (f) {
      std::stringstream ss;
      ss << f.rdbuf();
      a.server.chat_template = ss.str();
    } else if (v.text.find("{%") != std::string::npos || v.text.find("{{") != std::string::npos) {
      a.server.chat_template = v.text;
    } else {
      return bad("chat-template", "the supplied chat template (" + v.text + ") looks like a file path, but it failed to be opened");
    }
    return Status::ok();
  }));
  t.push_back(refuse_if("chat-template-content-format", K::kString,
                        [](const FlagValue& v) { return v.text != "auto" && v.text != "string" && v.text != "openai"; },
                        "choose from auto, string, openai"));
  t.push_back(honour("trust-request-chat-template", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.trust_request_chat_template = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("default-chat-template-kwargs", K::kJson, [](ServeArgs& a, const FlagValue& v) {
    DS_RETURN_IF_ERROR(to_json("default-chat-template-kwargs", v.text, &a.server.default_chat_template_kwargs));
    if (!a.server.default_chat_template_kwargs.is_object()) return bad("default-chat-template-kwargs", "expected a JSON object");
    return Status::ok();
  }));
  t.push_back(honour("reasoning-parser", K::kString, [](ServeArgs& a, const FlagValue& v) {
    if (v.text != "qwen3" && v.text != "deepseek_r1" && !v.text.empty())
      return bad("reasoning-parser", "invalid reasoning parser: " + v.text + " (choose from qwen3, deepseek_r1)");
    a.server.reasoning_parser = v.text;
    return Status::ok();
  }));
  t.push_back(honour("reasoning-field", K::kString, [](ServeArgs& a, const FlagValue& v) {
    if (v.text != "reasoning" && v.text != "reasoning_content" && v.text != "both")
      return bad("reasoning-field", "choose from reasoning, reasoning_content, both");
    a.server.reasoning_field = v.text;
    return Status::ok();
  }));
  t.push_back(honour("enable-auto-tool-choice", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.enable_auto_tool_choice = v.as_bool(); return Status::ok(); }));
  t.push_back(honour("tool-call-parser", K::kString, [](ServeArgs& a, const FlagValue& v) {
    if (v.text != "qwen3_coder" && v.text != "qwen3_xml")
      return invalid_argument("KeyError: invalid tool call parser: " + v.text + " (chose from { qwen3_coder,qwen3_xml })");
    a.server.tool_call_parser = v.text;
    return Status::ok();
  }));
  t.push_back(accept("tool-parser-plugin", K::kString, "Python plugins cannot be loaded"));
  t.push_back(honour("exclude-tools-when-tool-choice-none", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.exclude_tools_when_tool_choice_none = v.as_bool(); return Status::ok(); }));
  t.push_back(accept("speculative-config", K::kJson, "MTP speculative decoding is not implemented yet (speed only)"));
  t.push_back(accept("enable-reasoning", K::kBool, "implied by --reasoning-parser"));
  // --- multimodal ---
  t.push_back(honour("limit-mm-per-prompt", K::kJson, [](ServeArgs& a, const FlagValue& v) {
    json j;
    DS_RETURN_IF_ERROR(to_json("limit-mm-per-prompt", v.text, &j));
    if (!j.is_object()) return bad("limit-mm-per-prompt", "expected a JSON object like {\"image\": 2}");
    for (const auto& [k, x] : j.items()) {
      if (x.is_number_integer()) a.server.limit_mm_per_prompt[k] = x.get<int64_t>();
      else if (x.is_object() && x.contains("count") && x["count"].is_number_integer()) a.server.limit_mm_per_prompt[k] = x["count"].get<int64_t>();
      else return bad("limit-mm-per-prompt", "bad limit for " + k);
    }
    return Status::ok();
  }));
  t.push_back(honour("language-model-only", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.language_model_only = v.as_bool(); return Status::ok(); }));
  t.push_back(accept("mm-processor-kwargs", K::kJson, "image inputs are not served yet"));
  t.push_back(accept("skip-mm-profiling", K::kBool, "no vision-encoder memory profiling is done"));
  for (const char* n : {"mm-encoder-tp-mode", "mm-processor-cache-type"}) t.push_back(accept(n, K::kString, "vision-encoder tuning"));
  t.push_back(accept("mm-processor-cache-gb", K::kFloat, "vision-encoder tuning"));
  // --- logging / misc ---
  t.push_back(honour("uvicorn-log-level", K::kString, [](ServeArgs& a, const FlagValue& v) { a.uvicorn_log_level = v.text; return Status::ok(); }));
  t.push_back(accept("max-log-len", K::kInt, "request logs print token counts only"));
  t.push_back(accept("disable-uvicorn-access-log", K::kBool, "no access log is written"));
  t.push_back(accept("disable-access-log-for-endpoints", K::kString, "no access log is written"));
  t.push_back(accept("enable-tokenizer-info-endpoint", K::kBool, "/tokenizer_info is not served"));
  t.push_back(honour("disable-fastapi-docs", K::kBool, [](ServeArgs& a, const FlagValue& v) { a.server.disable_fastapi_docs = v.as_bool(); return Status::ok(); }));
  for (const char* n : {"middleware", "lora-modules", "attention-backend", "hf-overrides",
                        "mamba-ssm-cache-dtype", "mamba-cache-dtype", "mamba-block-size", "api-server-count",
                        "structured-outputs-config",
                        "guided-decoding-backend", "scheduling-policy", "worker-cls", "hf-config-path", "config-format",
                        "logits-processors", "served-model-alias"})
    t.push_back(accept(n, K::kString, "Python-specific or a performance knob of vLLM"));
  for (const char* n : {"enable-lora", "headless", "async-scheduling", "no-async-scheduling", "disable-custom-all-reduce",
                        "enable-sleep-mode", "disable-frontend-multiprocessing", "enable-auto-tool-choice-fallback",
                        "disable-cascade-attn", "enable-mfu-metrics", "calculate-kv-scales"})
    t.push_back(accept(n, K::kBool, "Python-specific or a performance knob of vLLM"));
  // --- deltaserve-only ---
  t.push_back(honour("max-request-body-bytes", K::kHumanInt, [](ServeArgs& a, const FlagValue& v) {
    auto n = parse_human_int(v.text);
    if (!n || *n <= 0) return bad("max-request-body-bytes", "invalid value: '" + v.text + "'");
    a.server.max_request_body_bytes = static_cast<size_t>(*n);
    return Status::ok();
  }));
  t.push_back(honour("http-threads", K::kInt, [](ServeArgs& a, const FlagValue& v) {
    int64_t n;
    DS_RETURN_IF_ERROR(to_int("http-threads", v.text, &n));
    a.server.http_threads = static_cast<int>(n);
    return Status::ok();
  }));
  return t;
}

}  // namespace

const std::vector<FlagSpec>& flag_specs() {
  static const std::vector<FlagSpec> specs = build();
  return specs;
}

const FlagSpec* find_flag(const std::string& name) {
  for (const auto& f : flag_specs())
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace ds::server
