// GET /metrics: Prometheus text exposition of the engine's stats with vLLM's metric names and
// labels (model_name = first served name, engine = "0"), including the old aliases
// vllm:gpu_cache_usage_perc and vllm:time_per_output_token_seconds that dashboards still read.
#include <cstdio>
#include <sstream>

#include "app.h"

namespace ds::server {

namespace {

std::string escape_label(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // prometheus_client style: 1.0
  return s;
}

class Writer {
 public:
  explicit Writer(std::string labels) : labels_(std::move(labels)) {}
  void header(const std::string& name, const char* type, const char* help) {
    os_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const std::string& name, double v, const std::string& extra = "") {
    os_ << name << "{" << (extra.empty() ? "" : extra + ",") << labels_ << "} " << num(v) << "\n";
  }
  void gauge(const std::string& name, const char* help, double v) {
    header(name, "gauge", help);
    sample(name, v);
  }
  void counter(const std::string& name, const char* help, double v) {
    header(name, "counter", help);
    sample(name + "_total", v);
  }
  void histogram(const std::string& name, const char* help, const engine::Histogram& h) {
    header(name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cum += i < h.counts.size() ? h.counts[i] : 0;
      sample(name + "_bucket", static_cast<double>(cum), "le=\"" + num(h.bounds[i]) + "\"");
    }
    sample(name + "_bucket", static_cast<double>(h.count), "le=\"+Inf\"");
    sample(name + "_count", static_cast<double>(h.count));
    sample(name + "_sum", h.sum);
  }
  std::ostringstream& os() { return os_; }
  const std::string& labels() const { return labels_; }

 private:
  std::string labels_;
  std::ostringstream os_;
};

}  // namespace

std::string render_metrics(App& app) {
  const engine::EngineStats s = app.engine->stats();
  const std::string model =
      app.cfg.served_model_names.empty() ? app.cfg.model_root : app.cfg.served_model_names.front();
  Writer w("engine=\"0\",model_name=\"" + escape_label(model) + "\"");
  w.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", s.num_running);
  w.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", s.num_waiting);
  w.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", s.kv_usage);
  w.gauge("vllm:gpu_cache_usage_perc",
          "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: use vllm:kv_cache_usage_perc.", s.kv_usage);
  w.header("vllm:engine_sleep_state", "gauge", "Engine sleep state; awake = 0 means engine is sleeping.");
  w.sample("vllm:engine_sleep_state", 1, "sleep_state=\"awake\"");
  w.sample("vllm:engine_sleep_state", 0, "sleep_state=\"weights_offloaded\"");
  w.sample("vllm:engine_sleep_state", 0, "sleep_state=\"discard_all\"");
  w.header("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
  w.os() << "vllm:cache_config_info{block_size=\"" << s.block_size << "\",engine=\"0\",num_gpu_blocks=\""
         << s.num_kv_blocks << "\",num_state_slots=\"" << s.num_state_slots << "\"} 1.0\n";
  w.header("vllm:lora_requests_info", "gauge", "Running stats on lora requests.");
  w.os() << "vllm:lora_requests_info{max_lora=\"0\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 0.0\n";
  w.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            static_cast<double>(s.num_preemptions_total));
  w.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", static_cast<double>(s.prompt_tokens_total));
  w.counter("vllm:generation_tokens", "Number of generation tokens processed.",
            static_cast<double>(s.generation_tokens_total));
  w.header("vllm:request_success", "counter", "Count of successfully processed requests.");
  for (const char* r : {"stop", "length", "abort"}) {
    auto it = s.request_success.find(r);
    w.sample("vllm:request_success_total", it == s.request_success.end() ? 0.0 : static_cast<double>(it->second),
             std::string("finished_reason=\"") + r + "\"");
  }
  w.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", 0);
  w.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", 0);

  struct H {
    const char* key;
    const char* name;
    const char* help;
  };
  const H hists[] = {
      {"time_to_first_token_seconds", "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds."},
      {"inter_token_latency_seconds", "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds."},
      {"inter_token_latency_seconds", "vllm:time_per_output_token_seconds",
       "Histogram of time per output token in seconds. DEPRECATED: use vllm:inter_token_latency_seconds."},
      {"request_time_per_output_token_seconds", "vllm:request_time_per_output_token_seconds",
       "Histogram of time_per_output_token_seconds per request."},
      {"e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds."},
      {"request_queue_time_seconds", "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request."},
      {"request_prefill_time_seconds", "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request."},
      {"request_decode_time_seconds", "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request."},
      {"request_inference_time_seconds", "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request."},
      {"request_prompt_tokens", "vllm:request_prompt_tokens", "Number of prefill tokens processed."},
      {"request_generation_tokens", "vllm:request_generation_tokens", "Number of generation tokens processed."},
      {"iteration_tokens_total", "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step."},
      {"request_max_num_generation_tokens", "vllm:request_max_num_generation_tokens",
       "Histogram of maximum number of requested generation tokens."},
      {"request_params_n", "vllm:request_params_n", "Histogram of the n request parameter."},
      {"request_params_max_tokens", "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter."},
  };
  for (const H& h : hists) {
    auto it = s.histograms.find(h.key);
    if (it != s.histograms.end()) w.histogram(h.name, h.help, it->second);
  }
  {
    std::lock_guard<std::mutex> lk(app.http_mu);
    w.os() << "# HELP http_requests_total Total number of requests by method, status and handler.\n"
              "# TYPE http_requests_total counter\n";
    for (const auto& [k, v] : app.http_requests)
      w.os() << "http_requests_total{handler=\"" << escape_label(std::get<0>(k)) << "\",method=\"" << std::get<1>(k)
             << "\",status=\"" << std::get<2>(k) << "\"} " << num(static_cast<double>(v)) << "\n";
  }
  return w.os().str();
}

}  // namespace ds::server
