#include "deltaserve/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace ds::engine {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

int32_t argmax(std::span<const float> v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  return best;
}
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(&x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void apply_logits_processors(std::span<float> logits, const SamplingParams& p,
                             const std::vector<int32_t>& prompt, const std::vector<int32_t>& output) {
  const int64_t V = static_cast<int64_t>(logits.size());
  auto valid = [V](int64_t t) { return t >= 0 && t < V; };
  if (!p.allowed_token_ids.empty()) {
    std::vector<bool> keep(V, false);
    for (int32_t t : p.allowed_token_ids)
      if (valid(t)) keep[t] = true;
    for (int64_t i = 0; i < V; ++i)
      if (!keep[i]) logits[i] = kNegInf;
  }
  for (const auto& [t, bias] : p.logit_bias)
    if (valid(t)) logits[t] += bias;
  if (static_cast<int64_t>(output.size()) < p.min_tokens) {
    for (int32_t t : p.stop_token_ids)
      if (valid(t)) logits[t] = kNegInf;
    if (!p.ignore_eos)
      for (int32_t t : p.eos_token_ids)
        if (valid(t)) logits[t] = kNegInf;
  }
  // vLLM: repetition penalty over prompt + output (divide positive logits, multiply negative);
  // frequency and presence over output tokens only.
  if (p.repetition_penalty != 1.0) {
    std::vector<bool> seen(V, false);
    for (int32_t t : prompt)
      if (valid(t)) seen[t] = true;
    for (int32_t t : output)
      if (valid(t)) seen[t] = true;
    const float rp = static_cast<float>(p.repetition_penalty);
    for (int64_t i = 0; i < V; ++i)
      if (seen[i]) logits[i] = logits[i] > 0 ? logits[i] / rp : logits[i] * rp;
  }
  if (p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : output)
      if (valid(t)) counts[t]++;
    for (const auto& [t, c] : counts)
      logits[t] -= static_cast<float>(p.frequency_penalty * c + p.presence_penalty);
  }
}

std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingParams& p) {
  const size_t V = logits.size();
  std::vector<double> probs(V, 0.0);
  if (V == 0) return probs;
  if (p.greedy()) {
    probs[argmax(logits)] = 1.0;
    return probs;
  }
  const double inv_t = 1.0 / p.temperature;
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : logits) mx = std::max(mx, static_cast<double>(l) * inv_t);
  if (!std::isfinite(mx)) {  // everything masked: fall back to argmax (id 0)
    probs[argmax(logits)] = 1.0;
    return probs;
  }
  double sum = 0.0;
  for (size_t i = 0; i < V; ++i) {
    probs[i] = std::exp(static_cast<double>(logits[i]) * inv_t - mx);
    sum += probs[i];
  }
  for (double& q : probs) q /= sum;
  if (p.min_p > 0.0) {
    const double thresh = p.min_p * *std::max_element(probs.begin(), probs.end());
    for (double& q : probs)
      if (q < thresh) q = 0.0;
  }
  const bool use_top_k = p.top_k > 0 && p.top_k < static_cast<int64_t>(V);
  const bool use_top_p = p.top_p < 1.0;
  if (use_top_k || use_top_p) {
    // Only the head of the sorted distribution matters: select it with nth_element (O(V)) and sort
    // just that, widening to the whole vocabulary only if top_p needs more mass than the head holds.
    auto by_prob = [&](int32_t a, int32_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); };
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    size_t head = use_top_k ? static_cast<size_t>(p.top_k) : std::min<size_t>(V, 1024);
    double total = 0.0;
    for (double q : probs) total += q;
    for (;;) {
      if (head < V) std::nth_element(order.begin(), order.begin() + head, order.end(), by_prob);
      std::sort(order.begin(), order.begin() + head, by_prob);
      if (!use_top_p || use_top_k || head == V) break;
      double mass = 0.0;
      for (size_t i = 0; i < head; ++i) mass += probs[order[i]];
      if (mass >= p.top_p * total) break;
      head = V;  // rare: a flat distribution; sort everything
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
      size_t n = 0;
      // Keep the smallest most-likely prefix whose mass reaches top_p (at least one token).
      while (n < keep && (n == 0 || cum < p.top_p * kept_total)) cum += probs[order[n++]];
      keep = n;
    }
    std::vector<char> kept(V, 0);
    for (size_t i = 0; i < keep; ++i) kept[order[i]] = 1;
    for (size_t i = 0; i < V; ++i)
      if (!kept[i]) probs[i] = 0.0;
  }
  sum = std::accumulate(probs.begin(), probs.end(), 0.0);
  if (sum <= 0.0) {
    std::fill(probs.begin(), probs.end(), 0.0);
    probs[argmax(logits)] = 1.0;
    return probs;
  }
  for (double& q : probs) q /= sum;
  return probs;
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, Rng* rng) {
  if (p.greedy()) return argmax(logits);
  const std::vector<double> probs = sampling_distribution(logits, p);
  const double u = rng->uniform();
  double cum = 0.0;
  int32_t last_nonzero = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0) continue;
    last_nonzero = static_cast<int32_t>(i);
    cum += probs[i];
    if (u < cum) return last_nonzero;
  }
  return last_nonzero;  // rounding: u landed past the accumulated mass
}

PositionLogprobs compute_logprobs(std::span<const float> raw, int32_t chosen, int k) {
  PositionLogprobs out;
  const size_t V = raw.size();
  if (V == 0) return out;
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : raw) mx = std::max(mx, static_cast<double>(l));
  double sum = 0.0;
  for (float l : raw) sum += std::exp(static_cast<double>(l) - mx);
  const double lse = mx + std::log(sum);
  auto lp = [&](int32_t t) { return static_cast<float>(static_cast<double>(raw[t]) - lse); };
  int64_t rank = 1;
  for (size_t i = 0; i < V; ++i)
    if (raw[i] > raw[chosen]) ++rank;
  out.chosen = {chosen, lp(chosen), rank};
  k = std::min<int>(std::max(k, 0), static_cast<int>(V));
  if (k > 0) {
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return raw[a] > raw[b] || (raw[a] == raw[b] && a < b);
    });
    for (int i = 0; i < k; ++i) out.top.push_back({order[i], lp(order[i]), i + 1});
  }
  return out;
}

}  // namespace ds::engine
