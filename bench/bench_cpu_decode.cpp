// CPU runtime throughput: prefill and decode tokens/s of a checkpoint (e.g. the synthetic
// Qwen3.5-35B-A3B-shaped one from bench/make_synthetic_qwen35.py), next to the memory bandwidth
// measured in the same run (STREAM-like triad over ThreadPool::global()) and the decode roofline
// (bytes a decode step must read / bandwidth). Prints figures; asserts nothing.
//
// usage: bench_cpu_decode MODEL [--prompt-len 256] [--decode 32] [--prefill-chunk 256]
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/core/thread_pool.h"
#include "deltaserve/core/timer.h"
#include "deltaserve/model/loader.h"
#include "deltaserve/model/qwen35.h"
#include "deltaserve/engine/sequence_runner.h"

namespace {

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// a[i] = b[i] + s * c[i] over 3 x 128 MiB arrays, best of 5; counts 3 x 4 bytes per element.
double triad_gbps() {
  const int64_t n = 32LL << 20;
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n), 1.0f), c(static_cast<size_t>(n), 2.0f);
  auto& pool = ds::ThreadPool::global();
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    ds::Timer t;
    pool.parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) a[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] + 3.0f * c[static_cast<size_t>(i)];
    });
    best = std::max(best, 3.0 * 4.0 * static_cast<double>(n) / t.seconds() / 1e9);
  }
  return best + a[7] * 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--prompt-len N] [--decode N] [--prefill-chunk N]\n", argv[0]);
    return 2;
  }
  int64_t prompt_len = 256, decode = 32, chunk = 256;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--prompt-len")) prompt_len = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--decode")) decode = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--prefill-chunk")) chunk = std::atoll(argv[i + 1]);
  }
  const double bw = triad_gbps();
  std::printf("threads %d, triad bandwidth %.2f GB/s\n", ds::ThreadPool::global().size(), bw);
  ds::Timer load_timer;
  auto desc = ds::model::load_model(argv[1]);
  if (!desc) {
    std::fprintf(stderr, "error: %s\n", desc.status().message().c_str());
    return 1;
  }
  ds::model::ModelOptions opt;
  opt.cache = ds::engine::runner_cache_config(prompt_len + decode + 1);
  opt.max_step_tokens = std::max<int64_t>(1, std::min(chunk, prompt_len));
  opt.max_step_seqs = 1;
  auto created = ds::model::create_cpu_model(*desc, opt);
  if (!created) {
    std::fprintf(stderr, "error: %s\n", created.status().message().c_str());
    return 1;
  }
  auto& model = **created;
  const auto& c = model.config();
  std::printf("model %s: %d layers, hidden %lld, vocab %lld, backend %s, load+prepare %.1f s, peak RSS %.0f MiB\n",
              desc->path.c_str(), c.num_layers, static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
              model.backend_name().c_str(), load_timer.seconds(), peak_rss_mib());
  std::mt19937 rng(1);
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size));
  ds::engine::SamplingParams greedy;
  greedy.temperature = 0.0;
  auto res = ds::engine::generate(model, prompt, decode + 1, greedy, {}, chunk);
  if (!res) {
    std::fprintf(stderr, "error: %s\n", res.status().message().c_str());
    return 1;
  }
  const double prefill_tps = static_cast<double>(prompt_len) / res->prefill_seconds;
  const double decode_tps = static_cast<double>(res->tokens.size() - 1) / res->decode_seconds;
  int n_gdn = 0, n_attn = 0;
  for (auto k : c.layer_types) (k == ds::model::LayerKind::kFullAttention ? n_attn : n_gdn)++;
  const double state_bytes = 2.0 * n_gdn * c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim * 4.0;
  const double kv_bytes = 2.0 * n_attn * c.num_kv_heads * c.head_dim * 4.0 * static_cast<double>(prompt_len + decode / 2);
  const double bytes = static_cast<double>(model.weight_bytes_per_token()) + state_bytes + kv_bytes;
  const double roof = bw * 1e9 / bytes;
  std::printf("prefill %lld tokens: %.1f tok/s (%.2f s, chunk %lld)\n", static_cast<long long>(prompt_len), prefill_tps,
              res->prefill_seconds, static_cast<long long>(chunk));
  std::printf("decode %zu tokens: %.2f tok/s (%.1f ms/token)\n", res->tokens.size() - 1, decode_tps, 1e3 / decode_tps);
  std::printf("bytes per decode token: weights %.1f MB + GDN state r/w %.1f MB + KV %.1f MB = %.1f MB\n",
              model.weight_bytes_per_token() / 1e6, state_bytes / 1e6, kv_bytes / 1e6, bytes / 1e6);
  std::printf("roofline %.2f tok/s at %.2f GB/s -> decode at %.0f%% of roofline\n", roof, bw, 100.0 * decode_tps / roof);
  std::printf("peak RSS %.0f MiB\n", peak_rss_mib());
  return 0;
}
