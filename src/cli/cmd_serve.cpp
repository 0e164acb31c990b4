// `deltaserve serve MODEL [flags]`: the `vllm serve` drop-in. Parses vLLM's flags, builds the model
// (or, for tests only, the scripted model), sizes the cache pools, starts the engine thread and the
// HTTP server, and shuts down cleanly on SIGINT / SIGTERM (stop accepting, abort in-flight requests
// so every stream ends with a finish chunk and [DONE], exit 0).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "deltaserve/core/cli.h"
#include "deltaserve/core/log.h"
#include "deltaserve/core/parse.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/core/version.h"
#include "deltaserve/engine/engine.h"
#include "deltaserve/engine/kv_cache.h"
#include "deltaserve/engine/scripted_model.h"
#include "deltaserve/server/cli_args.h"
#include "deltaserve/server/http_server.h"
#include "deltaserve/server/tokenizer_codec.h"
#include "deltaserve/server/uds_relay.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/text/chat.h"
#include "deltaserve/text/tokenizer/tokenizer.h"

extern char** environ;

namespace {

using nlohmann::json;

std::map<std::string, std::string> read_env() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

// generation_config.json as vLLM's --generation-config reads it (auto: the model folder; a folder).
json read_generation_config(const ds::server::ServeArgs& a, const std::string& model_dir, std::vector<int32_t>* eos) {
  json out = json::object();
  if (a.generation_config == "vllm") return out;
  const std::string dir = a.generation_config == "auto" ? model_dir : a.generation_config;
  std::ifstream f(dir + "/generation_config.json");
  if (f) {
    std::stringstream ss;
    ss << f.rdbuf();
    json g = json::parse(ss.str(), nullptr, false);
    if (g.is_object()) {
      for (const char* k : {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens"})
        if (g.contains(k) && g[k].is_number()) out[k] = g[k];
      if (g.contains("eos_token_id")) {
        const json& e = g["eos_token_id"];
        if (e.is_number_integer()) eos->push_back(e.get<int32_t>());
        if (e.is_array())
          for (const auto& x : e)
            if (x.is_number_integer()) eos->push_back(x.get<int32_t>());
      }
    }
  }
  for (const auto& [k, v] : a.override_generation_config.items()) out[k] = v;
  if (!out.empty()) {
    DS_INFO << "Default sampling parameters have been overridden by the model's Hugging Face generation config "
               "recommended from the model creator: "
            << out.dump();
  }
  return out;
}

int64_t cache_budget_bytes(const ds::server::ServeArgs& a, const std::map<std::string, std::string>& env) {
  if (a.kv_cache_memory_bytes) return *a.kv_cache_memory_bytes;
  auto it = env.find("VLLM_CPU_KVCACHE_SPACE");
  double gib = 4.0;  // vLLM's CPU default
  if (it != env.end()) {
    auto v = ds::parse_double(it->second, "VLLM_CPU_KVCACHE_SPACE", 0.0);
    if (!v) {
      DS_WARN << v.status().message() << "; using " << gib << " GiB";
    } else if (*v > 0) {
      gib = *v;
    }
  }
  return static_cast<int64_t>(gib * (1LL << 30));
}

// Loads the checkpoint, its tokenizer and the CPU runtime with cache pools sized from the budget.
ds::Result<std::unique_ptr<ds::model::Model>> load_real_model(const ds::server::ServeArgs& a,
                                                              const std::map<std::string, std::string>& env,
                                                              ds::server::ServerConfig* sc, int* max_num_seqs,
                                                              std::unique_ptr<ds::engine::TextCodec>* codec,
                                                              std::shared_ptr<ds::model::ModelDesc>* desc_out) {
  ds::model::LoadOptions lo;
  lo.revision = a.revision;
  DS_ASSIGN_OR_RETURN(ds::model::ModelDesc desc, ds::model::load_model(a.model, lo));
  auto desc_ptr = std::make_shared<ds::model::ModelDesc>(std::move(desc));
  const ds::model::ModelConfig& mc = desc_ptr->config;
  const std::string tok_path = a.tokenizer.empty() ? desc_ptr->path : a.tokenizer;
  auto tok = ds::text::Tokenizer::load(tok_path);
  if (!tok)
    return ds::not_found("no usable tokenizer at " + tok_path + " (" + tok.status().message() +
                         "); pass --tokenizer DIR with a tokenizer.json");
  *codec = std::make_unique<ds::server::TokenizerCodec>(std::move(*tok), mc.vocab_size);

  const int64_t derived = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 4096;
  int64_t max_len = a.max_model_len.value_or(derived);
  const bool allow_long = env.count("VLLM_ALLOW_LONG_MAX_MODEL_LEN") && env.at("VLLM_ALLOW_LONG_MAX_MODEL_LEN") == "1";
  if (max_len > derived && !allow_long)
    return ds::invalid_argument("User-specified max_model_len (" + std::to_string(max_len) +
                                ") is greater than the derived max_model_len (max_position_embeddings=" +
                                std::to_string(derived) + " in model's config.json). To allow overriding this "
                                "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.");
  sc->max_model_len = max_len;
  // Bytes per KV block / state slot as the CPU runtime lays them out (fp32 K and V; fp32 SSM + conv state).
  int n_attn = 0, n_gdn = 0;
  for (auto k : mc.layer_types) (k == ds::model::LayerKind::kFullAttention ? n_attn : n_gdn)++;
  const int block_size = a.block_size > 0 ? a.block_size : 16;
  ds::engine::CachePlanInput in;
  in.budget_bytes = cache_budget_bytes(a, env);
  in.block_size = block_size;
  in.kv_block_bytes = std::max<int64_t>(1, int64_t{n_attn} * 2 * block_size * mc.num_kv_heads * mc.head_dim * 4);
  in.state_slot_bytes = int64_t{n_gdn} *
                        (int64_t{mc.linear_num_value_heads} * mc.linear_value_head_dim * mc.linear_key_head_dim +
                         int64_t{mc.linear_conv_kernel_dim - 1} * mc.conv_dim()) * 4;
  in.max_num_seqs = a.max_num_seqs;
  in.max_model_len = max_len;
  DS_ASSIGN_OR_RETURN(ds::engine::CachePlan plan, ds::engine::plan_cache_config(in));
  for (const auto& w : plan.warnings) DS_WARN << w;
  *max_num_seqs = plan.max_num_seqs;
  ds::Timer t;
  ds::model::ModelOptions mo;
  mo.cache = plan.config;
  mo.max_step_tokens = a.max_num_batched_tokens;
  mo.max_step_seqs = plan.max_num_seqs;
  mo.max_model_len = max_len;
  DS_ASSIGN_OR_RETURN(std::unique_ptr<ds::model::Qwen35Model> m, ds::model::create_cpu_model(*desc_ptr, mo));
  DS_INFO << "Loaded " << desc_ptr->path << " (" << mc.model_type << ", " << mc.num_layers << " layers, quant "
          << desc_ptr->quant_method << ") on " << m->backend_name() << " in " << t.seconds() << " s";
  *desc_out = desc_ptr;
  return std::unique_ptr<ds::model::Model>(std::move(m));
}

int serve_main(const std::vector<std::string>& argv) {
  const auto env = read_env();
  if (auto it = env.find("VLLM_LOGGING_LEVEL"); it != env.end()) {
    ds::log::Level lvl;
    if (ds::log::parse_level(it->second, &lvl)) ds::log::set_level(lvl);
  }
  auto parsed = ds::server::parse_serve_args(argv, env);
  if (!parsed) {
    std::fprintf(stderr, "deltaserve serve: error: %s\n", parsed.status().message().c_str());
    return 2;
  }
  ds::server::ServeArgs a = std::move(*parsed);
  if (a.help) {
    std::printf("%s", ds::server::serve_help().c_str());
    return 0;
  }
  if (!a.uvicorn_log_level.empty()) {
    ds::log::Level lvl;
    std::string l = a.uvicorn_log_level == "trace" ? "debug" : a.uvicorn_log_level == "critical" ? "error" : a.uvicorn_log_level;
    if (ds::log::parse_level(l, &lvl)) ds::log::set_level(lvl);
  }
  DS_INFO << "deltaserve " << DS_VERSION << " (vLLM-compatible API server)";
  DS_INFO << ds::server::format_non_default(a);
  for (const auto& w : a.warnings) DS_WARN << w;
  for (const auto& i : a.infos) DS_INFO << i;

  std::unique_ptr<ds::engine::TextCodec> codec;
  std::unique_ptr<ds::model::Model> model;
  ds::server::ServerConfig& sc = a.server;
  std::vector<int32_t> gen_eos;
  std::string model_dir = a.model;

  int max_num_seqs = a.max_num_seqs;
  std::shared_ptr<ds::model::ModelDesc> desc;
  if (!a.test_scripted_output.empty()) {
    auto it = env.find("DS_ENABLE_TEST_SCRIPTED_OUTPUT");
    if (it == env.end() || it->second != "1") {
      std::fprintf(stderr,
                   "deltaserve serve: error: --test-scripted-output is a test-only model and needs "
                   "DS_ENABLE_TEST_SCRIPTED_OUTPUT=1 in the environment\n");
      return 2;
    }
    DS_WARN << "TEST ONLY: serving the scripted model from " << a.test_scripted_output
            << " (no real weights are loaded)";
    const std::string tok_dir = a.tokenizer.empty() ? a.model : a.tokenizer;
    if (!a.tokenizer.empty() || std::ifstream(tok_dir + "/tokenizer.json")) {
      auto tok = ds::text::Tokenizer::load(tok_dir);
      if (!tok) {
        std::fprintf(stderr, "deltaserve serve: error: tokenizer: %s\n", tok.status().message().c_str());
        return 2;
      }
      codec = std::make_unique<ds::server::TokenizerCodec>(std::move(*tok), 0);
    }
    if (!codec) codec = std::make_unique<ds::engine::ByteCodec>();
    auto script = ds::engine::load_script(a.test_scripted_output, *codec);
    if (!script) {
      std::fprintf(stderr, "deltaserve serve: error: %s\n", script.status().message().c_str());
      return 2;
    }
    if (!a.max_model_len) sc.max_model_len = 4096;
    if (auto e = codec->token_to_id("<|im_end|>")) script->eos_token_id = *e;
    ds::engine::CachePlanInput in;
    in.budget_bytes = cache_budget_bytes(a, env);
    in.kv_block_bytes = script->kv_block_bytes;
    in.state_slot_bytes = script->state_slot_bytes;
    in.block_size = script->block_size;
    in.max_num_seqs = a.max_num_seqs;
    in.max_model_len = sc.max_model_len;
    auto plan = ds::engine::plan_cache_config(in);
    if (!plan) {
      std::fprintf(stderr, "deltaserve serve: error: %s\n", plan.status().message().c_str());
      return 1;
    }
    for (const auto& w : plan->warnings) DS_WARN << w;
    max_num_seqs = plan->max_num_seqs;
    model = std::make_unique<ds::engine::ScriptedModel>(std::move(*script), plan->config, codec.get());
  } else {
    auto r = load_real_model(a, env, &sc, &max_num_seqs, &codec, &desc);
    if (!r) {
      std::fprintf(stderr, "deltaserve serve: error: %s\n", r.status().message().c_str());
      return 1;
    }
    model = std::move(*r);
    model_dir = desc->path;
    for (int64_t e : desc->generation.eos_token_ids) gen_eos.push_back(static_cast<int32_t>(e));
    if (gen_eos.empty())
      for (int64_t e : desc->config.eos_token_ids) gen_eos.push_back(static_cast<int32_t>(e));
  }
  {
    std::vector<int32_t> file_eos;
    sc.generation_defaults = read_generation_config(a, model_dir, &file_eos);
    if (gen_eos.empty()) gen_eos = file_eos;
  }
  if (gen_eos.empty())
    for (const char* t : {"<|im_end|>", "<|endoftext|>"})
      if (auto id = codec->token_to_id(t)) gen_eos.push_back(*id);
  sc.eos_token_ids = gen_eos;
  sc.vocab_size = codec->vocab_size();
  if (sc.http_threads <= 0) sc.http_threads = std::max(64, max_num_seqs + 16);

  ds::engine::EngineConfig ec;
  ec.max_num_seqs = max_num_seqs;
  ec.max_num_batched_tokens = a.max_num_batched_tokens;
  ec.max_model_len = sc.max_model_len;
  ec.seed = a.seed;
  ds::engine::Engine engine(model.get(), codec.get(), ec);
  const auto cc = model->cache_config();
  DS_INFO << "Cache: " << cc.num_kv_blocks << " KV blocks of " << cc.block_size << " tokens ("
          << static_cast<int64_t>(cc.num_kv_blocks) * cc.block_size << " tokens), " << cc.num_state_slots
          << " GDN state slots; max_num_seqs=" << max_num_seqs << ", max_model_len=" << sc.max_model_len;

  // Signals: block them here so every thread inherits the mask; one thread waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // --uds: the HTTP server listens on an internal loopback port and a relay serves the Unix socket.
  if (!sc.uds_path.empty()) {
    sc.host = "127.0.0.1";
    sc.port = 0;
  }
  ds::server::HttpServer server(sc, &engine, codec.get());
  {
    auto opts = ds::text::load_chat_template_options(model_dir, sc.chat_template);
    if (opts) {
      opts->default_kwargs = nlohmann::ordered_json::parse(sc.default_chat_template_kwargs.dump());
      opts->trust_request_chat_template = sc.trust_request_chat_template;
      auto tmpl = ds::text::ChatTemplate::create(std::move(*opts));
      if (!tmpl) {
        std::fprintf(stderr, "deltaserve serve: error: chat template: %s\n", tmpl.status().message().c_str());
        return 1;
      }
      server.set_chat_template(std::make_shared<const ds::text::ChatTemplate>(std::move(*tmpl)));
    } else if (!sc.chat_template.empty()) {
      std::fprintf(stderr, "deltaserve serve: error: chat template: %s\n", opts.status().message().c_str());
      return 1;
    } else {
      DS_WARN << "No chat template found in " << model_dir << " (" << opts.status().message()
              << "); chat requests use plain Qwen ChatML";
    }
    ds::text::ControlTokenIds ids;
    auto set = [&](const char* t, int32_t* dst) {
      if (auto id = codec->token_to_id(t)) *dst = *id;
    };
    set("<think>", &ids.think_open);
    set("</think>", &ids.think_close);
    set("<tool_call>", &ids.tool_call_open);
    set("</tool_call>", &ids.tool_call_close);
    server.set_control_token_ids(ids);
  }
  if (auto st = server.bind(); !st) {
    DS_ERROR << st.message();
    return 1;
  }
  std::unique_ptr<ds::server::UdsRelay> uds_relay;
  if (!sc.uds_path.empty()) {
    auto relay = ds::server::UdsRelay::start(sc.uds_path, server.port());
    if (!relay) {
      DS_ERROR << relay.status().message();
      return 1;
    }
    uds_relay = std::move(*relay);
  }
  engine.start();
  std::thread sig_thread([&] {
    int sig = 0;
    sigwait(&set, &sig);
    DS_INFO << "Received " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << "; shutting down: no new requests, aborting "
            << "in-flight ones";
    engine.stop_accepting();  // new requests get 503 from here on
    engine.abort_all();       // in-flight ones finish with finish_reason "abort"
    server.drain(std::chrono::seconds(5));  // let their streams write the final chunk and [DONE]
    server.stop();
    sigwait(&set, &sig);
    DS_WARN << "second signal: exiting immediately";
    std::_Exit(1);
  });
  sig_thread.detach();
  if (uds_relay) {
    DS_INFO << "Starting vLLM API server 0 on unix:" << sc.uds_path << " (relayed to internal http://127.0.0.1:"
            << server.port() << ")";
  } else {
    DS_INFO << "Starting vLLM API server 0 on http://" << (sc.host.empty() ? "0.0.0.0" : sc.host) << ":"
            << server.port();
  }
  DS_INFO << "Available routes are: /v1/chat/completions, /v1/completions, /v1/models, /health, /ping, /version, "
             "/metrics, /tokenize, /detokenize, /load, /invocations";
  DS_INFO << "Application startup complete.";
  server.serve();
  if (uds_relay) uds_relay->stop();  // closes relayed connections and unlinks the socket file
  engine.shutdown();
  DS_INFO << "Shutdown complete.";
  return 0;
}

}  // namespace

DS_COMMAND(serve, "serve", "Start the OpenAI-compatible server (flag-compatible with `vllm serve`)", serve_main);
