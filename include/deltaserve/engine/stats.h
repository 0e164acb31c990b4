// Engine statistics for /metrics and the periodic log line: gauges, counters and the request
// histograms vLLM exports (bucket edges copied from vllm/v1/metrics/loggers.py).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ds::engine {

struct Histogram {
  std::vector<double> bounds;   // upper bounds, ascending; +Inf is implicit
  std::vector<uint64_t> counts; // per bucket (not cumulative), bounds.size() + 1 entries
  double sum = 0.0;
  uint64_t count = 0;

  Histogram() = default;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
};

std::vector<double> buckets_1_2_5(int64_t max_value);  // 1, 2, 5, 10, 20, 50, ... <= max_value
std::vector<double> ttft_buckets();
std::vector<double> inter_token_buckets();
std::vector<double> request_latency_buckets();

struct EngineStats {
  bool alive = true;
  int num_running = 0;
  int num_waiting = 0;
  double kv_usage = 0.0;  // 0..1
  int num_kv_blocks = 0, block_size = 0, num_state_slots = 0, max_num_seqs = 0;
  uint64_t prompt_tokens_total = 0;
  uint64_t generation_tokens_total = 0;
  uint64_t num_preemptions_total = 0;
  std::map<std::string, uint64_t> request_success;  // finished_reason -> count
  // name (without the "vllm:" prefix) -> histogram
  std::map<std::string, Histogram> histograms;
};

}  // namespace ds::engine
