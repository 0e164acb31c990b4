#include "deltaserve/server/serve.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "deltaserve/core/log.h"
#include "deltaserve/core/parse.h"
#include "deltaserve/core/version.h"
#include "deltaserve/engine/engine.h"
#include "deltaserve/server/http_server.h"
#include "deltaserve/server/uds_relay.h"
#include "deltaserve/text/chat.h"

extern char** environ;

namespace ds::server {

namespace {

using nlohmann::json;

}  // namespace

Environment read_env() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

namespace {

// generation_config.json as vLLM's --generation-config reads it (auto: the model folder; a folder).
json read_generation_config(const ServeArgs& a, const std::string& model_dir, std::vector<int32_t>* eos) {
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

// SIGINT / SIGTERM for the whole process. A blocked signal mask is inherited by every thread
// created afterwards, so they are blocked first thing, before model loading starts thread pools;
// otherwise a thread with an empty mask takes the signal with its default action (exit 143, streams
// cut mid-chunk). One thread takes them with sigwait: before the server is up a signal ends the
// process as it would have; once up, the first starts the clean shutdown and a second exits at once.
class ShutdownSignals {
 public:
  // Blocks the signals in the calling thread and starts the waiting thread. The object is never
  // destroyed: that thread waits on it for the life of the process.
  static ShutdownSignals& install() {
    static ShutdownSignals* signals = new ShutdownSignals();
    return *signals;
  }

  // From now on the first signal runs `on_signal` (on the signal thread). Null: a signal ends the
  // process; waits until a running handler has returned.
  void set_handler(std::function<void(int)> on_signal) {
    std::unique_lock<std::mutex> lk(mu_);
    idle_.wait(lk, [&] { return !running_; });
    handler_ = std::move(on_signal);
  }

 private:
  void wait_loop() {
    int sig = 0;
    sigwait(&set_, &sig);
    std::function<void(int)> h;
    {
      std::lock_guard<std::mutex> lk(mu_);
      h = handler_;
      running_ = static_cast<bool>(h);
    }
    if (!h) {
      DS_INFO << "Received " << name(sig) << " while the server is not up; exiting";
      signal(sig, SIG_DFL);  // end the way an unhandled signal ends a process
      pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
      raise(sig);
      std::_Exit(128 + sig);
    }
    h(sig);
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_ = false;
    }
    idle_.notify_all();
    sigwait(&set_, &sig);
    DS_WARN << "second signal: exiting immediately";
    std::_Exit(1);
  }
  ShutdownSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    signal(SIGPIPE, SIG_IGN);
    std::thread([this] { wait_loop(); }).detach();
  }
  static const char* name(int sig) { return sig == SIGINT ? "SIGINT" : "SIGTERM"; }

  sigset_t set_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::function<void(int)> handler_;
  bool running_ = false;
};

}  // namespace

int64_t cache_budget_bytes(const ServeArgs& a, const Environment& env) {
  if (a.kv_cache_memory_bytes) return *a.kv_cache_memory_bytes;
  auto it = env.find("VLLM_CPU_KVCACHE_SPACE");
  double gib = 4.0;  // vLLM's CPU default
  if (it != env.end()) {
    auto v = parse_double(it->second, "VLLM_CPU_KVCACHE_SPACE", 0.0);
    if (!v) {
      DS_WARN << v.status().message() << "; using " << gib << " GiB";
    } else if (*v > 0) {
      gib = *v;
    }
  }
  return static_cast<int64_t>(gib * (1LL << 30));
}

int serve_main(const std::vector<std::string>& argv, const ModelFactory& make_model) {
  ShutdownSignals& signals = ShutdownSignals::install();  // before any thread exists
  const Environment env = read_env();
  if (auto it = env.find("VLLM_LOGGING_LEVEL"); it != env.end()) {
    log::Level lvl;
    if (log::parse_level(it->second, &lvl)) log::set_level(lvl);
  }
  auto parsed = parse_serve_args(argv, env);
  if (!parsed) {
    std::fprintf(stderr, "deltaserve serve: error: %s\n", parsed.status().message().c_str());
    return 2;
  }
  ServeArgs a = std::move(*parsed);
  if (a.help) {
    std::printf("%s", serve_help().c_str());
    return 0;
  }
  if (!a.uvicorn_log_level.empty()) {
    log::Level lvl;
    std::string l = a.uvicorn_log_level == "trace" ? "debug" : a.uvicorn_log_level == "critical" ? "error" : a.uvicorn_log_level;
    if (log::parse_level(l, &lvl)) log::set_level(lvl);
  }
  DS_INFO << "deltaserve " << DS_VERSION << " (vLLM-compatible API server)";
  DS_INFO << format_non_default(a);
  for (const auto& w : a.warnings) DS_WARN << w;
  for (const auto& i : a.infos) DS_INFO << i;

  ServerConfig& sc = a.server;
  auto made = make_model(a, env, &sc);
  if (!made) {
    std::fprintf(stderr, "deltaserve serve: error: %s\n", made.status().message().c_str());
    return 1;
  }
  ServedModel served = std::move(*made);
  const engine::TextCodec* codec = served.codec.get();
  std::vector<int32_t> gen_eos = served.eos_token_ids;
  {
    std::vector<int32_t> file_eos;
    sc.generation_defaults = read_generation_config(a, served.model_dir, &file_eos);
    if (gen_eos.empty()) gen_eos = file_eos;
  }
  if (gen_eos.empty())
    for (const char* t : {"<|im_end|>", "<|endoftext|>"})
      if (auto id = codec->token_to_id(t)) gen_eos.push_back(*id);
  sc.eos_token_ids = gen_eos;
  sc.vocab_size = codec->vocab_size();
  if (sc.http_threads <= 0) sc.http_threads = std::max(64, served.max_num_seqs + 16);

  engine::EngineConfig ec;
  ec.max_num_seqs = served.max_num_seqs;
  ec.max_num_batched_tokens =
      served.max_num_batched_tokens > 0 ? served.max_num_batched_tokens : a.max_num_batched_tokens;
  ec.max_model_len = sc.max_model_len;
  ec.seed = a.seed;
  engine::Engine engine(served.model.get(), codec, ec);
  const auto cc = served.model->cache_config();
  DS_INFO << "Cache: " << cc.num_kv_blocks << " KV blocks of " << cc.block_size << " tokens ("
          << static_cast<int64_t>(cc.num_kv_blocks) * cc.block_size << " tokens), " << cc.num_state_slots
          << " GDN state slots; max_num_seqs=" << served.max_num_seqs << ", max_model_len=" << sc.max_model_len;

  // --uds: the HTTP server listens on an internal loopback port and a relay serves the Unix socket.
  if (!sc.uds_path.empty()) {
    sc.host = "127.0.0.1";
    sc.port = 0;
  }
  HttpServer server(sc, &engine, codec);
  {
    auto opts = text::load_chat_template_options(served.model_dir, sc.chat_template);
    if (opts) {
      opts->default_kwargs = nlohmann::ordered_json::parse(sc.default_chat_template_kwargs.dump());
      opts->trust_request_chat_template = sc.trust_request_chat_template;
      auto tmpl = text::ChatTemplate::create(std::move(*opts));
      if (!tmpl) {
        std::fprintf(stderr, "deltaserve serve: error: chat template: %s\n", tmpl.status().message().c_str());
        return 1;
      }
      server.set_chat_template(std::make_shared<const text::ChatTemplate>(std::move(*tmpl)));
    } else if (!sc.chat_template.empty()) {
      std::fprintf(stderr, "deltaserve serve: error: chat template: %s\n", opts.status().message().c_str());
      return 1;
    } else {
      DS_WARN << "No chat template found in " << served.model_dir << " (" << opts.status().message()
              << "); chat requests use plain Qwen ChatML";
    }
    text::ControlTokenIds ids;
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
  std::unique_ptr<UdsRelay> uds_relay;
  if (!sc.uds_path.empty()) {
    auto relay = UdsRelay::start(sc.uds_path, server.port());
    if (!relay) {
      DS_ERROR << relay.status().message();
      return 1;
    }
    uds_relay = std::move(*relay);
  }
  engine.start();
  signals.set_handler([&](int sig) {
    DS_INFO << "Received " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << "; shutting down: no new requests, aborting "
            << "in-flight ones";
    engine.stop_accepting();  // new requests get 503 from here on
    engine.abort_all();       // in-flight ones finish with finish_reason "abort"
    server.drain(std::chrono::seconds(5));  // let their streams write the final chunk and [DONE]
    server.stop();
  });
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
  signals.set_handler(nullptr);  // the handler's references die below
  if (uds_relay) uds_relay->stop();  // closes relayed connections and unlinks the socket file
  engine.shutdown();
  DS_INFO << "Shutdown complete.";
  return 0;
}

}  // namespace ds::server
