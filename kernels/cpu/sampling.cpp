// The sampler, one logits row at a time (vLLM V1's order): allowed ids / logit_bias / forced masks,
// then repetition / frequency / presence penalties, then greedy argmax or temperature -> min_p ->
// top_k -> top_p -> the row's pre-drawn uniform. Logprobs are of the raw model distribution.
// This is the reference every backend's sample op is checked against.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "deltaserve/kernels/cpu.h"

namespace ds::kernels {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}
}  // namespace

void apply_logits_processors(float* logits, int64_t V, const SamplingRow& p) {
  auto valid = [V](int64_t t) { return t >= 0 && t < V; };
  if (p.n_allowed > 0) {
    std::vector<bool> keep(static_cast<size_t>(V), false);
    for (int64_t i = 0; i < p.n_allowed; ++i)
      if (valid(p.allowed_ids[i])) keep[static_cast<size_t>(p.allowed_ids[i])] = true;
    for (int64_t i = 0; i < V; ++i)
      if (!keep[static_cast<size_t>(i)]) logits[i] = kNegInf;
  }
  for (int64_t i = 0; i < p.n_bias; ++i)
    if (valid(p.bias_ids[i])) logits[p.bias_ids[i]] += p.bias_values[i];
  for (int64_t i = 0; i < p.n_masked; ++i)
    if (valid(p.masked_ids[i])) logits[p.masked_ids[i]] = kNegInf;
  // vLLM: repetition penalty over prompt + output (divide positive logits, multiply negative);
  // frequency and presence over output tokens only.
  if (p.repetition_penalty != 1.0) {
    std::vector<bool> seen(static_cast<size_t>(V), false);
    for (int64_t i = 0; i < p.n_prompt; ++i)
      if (valid(p.prompt_ids[i])) seen[static_cast<size_t>(p.prompt_ids[i])] = true;
    for (int64_t i = 0; i < p.n_output; ++i)
      if (valid(p.output_ids[i])) seen[static_cast<size_t>(p.output_ids[i])] = true;
    const float rp = static_cast<float>(p.repetition_penalty);
    for (int64_t i = 0; i < V; ++i)
      if (seen[static_cast<size_t>(i)]) logits[i] = logits[i] > 0 ? logits[i] / rp : logits[i] * rp;
  }
  if (p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) {
    std::unordered_map<int32_t, int> counts;
    for (int64_t i = 0; i < p.n_output; ++i)
      if (valid(p.output_ids[i])) counts[p.output_ids[i]]++;
    for (const auto& [t, c] : counts) logits[t] -= static_cast<float>(p.frequency_penalty * c + p.presence_penalty);
  }
}

void sampling_distribution(const float* logits, int64_t V, const SamplingRow& p, double* probs) {
  std::fill(probs, probs + V, 0.0);
  if (V == 0) return;
  if (p.greedy()) {
    probs[argmax(logits, V)] = 1.0;
    return;
  }
  const double inv_t = 1.0 / p.temperature;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[i]) * inv_t);
  if (!std::isfinite(mx)) {  // everything masked: fall back to argmax (id 0)
    probs[argmax(logits, V)] = 1.0;
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) {
    probs[i] = std::exp(static_cast<double>(logits[i]) * inv_t - mx);
    sum += probs[i];
  }
  for (int64_t i = 0; i < V; ++i) probs[i] /= sum;
  if (p.min_p > 0.0) {
    const double thresh = p.min_p * *std::max_element(probs, probs + V);
    for (int64_t i = 0; i < V; ++i)
      if (probs[i] < thresh) probs[i] = 0.0;
  }
  const size_t n = static_cast<size_t>(V);
  const bool use_top_k = p.top_k > 0 && p.top_k < V;
  const bool use_top_p = p.top_p < 1.0;
  if (use_top_k || use_top_p) {
    // Only the head of the sorted distribution matters: select it with nth_element (O(V)) and sort
    // just that, widening to the whole vocabulary only if top_p needs more mass than the head holds.
    auto by_prob = [&](int32_t a, int32_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); };
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    size_t head = use_top_k ? static_cast<size_t>(p.top_k) : std::min<size_t>(n, 1024);
    double total = 0.0;
    for (int64_t i = 0; i < V; ++i) total += probs[i];
    for (;;) {
      if (head < n) std::nth_element(order.begin(), order.begin() + static_cast<int64_t>(head), order.end(), by_prob);
      std::sort(order.begin(), order.begin() + static_cast<int64_t>(head), by_prob);
      if (!use_top_p || use_top_k || head == n) break;
      double mass = 0.0;
      for (size_t i = 0; i < head; ++i) mass += probs[order[i]];
      if (mass >= p.top_p * total) break;
      head = n;  // rare: a flat distribution; sort everything
    }
    size_t keep = head;
    if (use_top_p) {
      double kept_total = 0.0;
      if (use_top_k) {
        for (size_t i = 0; i < keep; ++i) kept_total += probs[order[i]];
      } else {
        kept_total = total;
      }
      double cum = 0.0;
      size_t k = 0;
      // Keep the smallest most-likely prefix whose mass reaches top_p (at least one token).
      while (k < keep && (k == 0 || cum < p.top_p * kept_total)) cum += probs[order[k++]];
      keep = k;
    }
    std::vector<char> kept(n, 0);
    for (size_t i = 0; i < keep; ++i) kept[static_cast<size_t>(order[i])] = 1;
    for (size_t i = 0; i < n; ++i)
      if (!kept[i]) probs[i] = 0.0;
  }
  sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += probs[i];
  if (sum <= 0.0) {
    std::fill(probs, probs + V, 0.0);
    probs[argmax(logits, V)] = 1.0;
    return;
  }
  for (int64_t i = 0; i < V; ++i) probs[i] /= sum;
}

int32_t sample_token(const float* logits, int64_t V, const SamplingRow& p) {
  if (p.greedy()) return argmax(logits, V);
  std::vector<double> probs(static_cast<size_t>(V));
  sampling_distribution(logits, V, p, probs.data());
  double cum = 0.0;
  int32_t last_nonzero = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (probs[static_cast<size_t>(i)] <= 0.0) continue;
    last_nonzero = static_cast<int32_t>(i);
    cum += probs[static_cast<size_t>(i)];
    if (p.uniform < cum) return last_nonzero;
  }
  return last_nonzero;  // rounding: the draw landed past the accumulated mass
}

int compute_logprobs(const float* raw, int64_t V, int32_t chosen, int k, LogprobEntry* chosen_out, LogprobEntry* top) {
  if (V == 0) return 0;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(raw[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(raw[i]) - mx);
  const double lse = mx + std::log(sum);
  auto lp = [&](int32_t t) { return static_cast<float>(static_cast<double>(raw[t]) - lse); };
  int64_t rank = 1;
  for (int64_t i = 0; i < V; ++i)
    if (raw[i] > raw[chosen]) ++rank;
  *chosen_out = {chosen, lp(chosen), rank};
  k = static_cast<int>(std::min<int64_t>(std::max(k, 0), V));
  if (k > 0) {
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return raw[a] > raw[b] || (raw[a] == raw[b] && a < b); });
    for (int i = 0; i < k; ++i) top[i] = {order[static_cast<size_t>(i)], lp(order[static_cast<size_t>(i)]), i + 1};
  }
  return k;
}

}  // namespace ds::kernels
