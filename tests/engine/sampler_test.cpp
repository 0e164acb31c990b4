#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "deltaserve/engine/sampler.h"

using namespace ds::engine;

namespace {
// logits whose softmax is exactly `probs`
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -1e30f);
  return l;
}
}  // namespace

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Rng rng(1);
  std::vector<float> l = {0.1f, 3.0f, 3.0f, -1.0f};
  EXPECT_EQ(sample_token(l, p, &rng), 1);
}

TEST(Sampler, TopKKeepsKMostLikely) {
  SamplingParams p;
  p.top_k = 2;
  auto d = sampling_distribution(logits_of({0.1, 0.4, 0.2, 0.3}), p);
  EXPECT_NEAR(d[0], 0.0, 1e-12);
  EXPECT_NEAR(d[2], 0.0, 1e-12);
  EXPECT_NEAR(d[1], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(d[3], 0.3 / 0.7, 1e-6);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  SamplingParams p;
  p.top_p = 0.75;
  // sorted: 0.5 (id 2), 0.3 (id 0), 0.15, 0.05 -> 0.5 < 0.75 so keep id 0 too; 0.8 >= 0.75 stop
  auto d = sampling_distribution(logits_of({0.3, 0.15, 0.5, 0.05}), p);
  EXPECT_NEAR(d[2], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(d[0], 0.3 / 0.8, 1e-6);
  EXPECT_EQ(d[1], 0.0);
  EXPECT_EQ(d[3], 0.0);
  p.top_p = 0.01;  // always keeps one
  d = sampling_distribution(logits_of({0.3, 0.15, 0.5, 0.05}), p);
  EXPECT_NEAR(d[2], 1.0, 1e-9);
}

TEST(Sampler, MinPDropsBelowFractionOfMax) {
  SamplingParams p;
  p.min_p = 0.5;  // threshold 0.25
  auto d = sampling_distribution(logits_of({0.5, 0.26, 0.24, 0.0}), p);
  EXPECT_NEAR(d[0], 0.5 / 0.76, 1e-6);
  EXPECT_NEAR(d[1], 0.26 / 0.76, 1e-6);
  EXPECT_EQ(d[2], 0.0);
}

TEST(Sampler, TemperatureSharpens) {
  SamplingParams p;
  p.temperature = 0.5;
  auto d = sampling_distribution(logits_of({0.2, 0.8}), p);
  // p^(1/T) renormalised: 0.04 / (0.04 + 0.64)
  EXPECT_NEAR(d[0], 0.04 / 0.68, 1e-6);
}

TEST(Sampler, PenaltiesFollowVllmFormulas) {
  SamplingParams p;
  p.repetition_penalty = 2.0;
  p.frequency_penalty = 0.5;
  p.presence_penalty = 0.25;
  std::vector<float> l = {2.0f, -2.0f, 2.0f, 1.0f, 1.0f};
  std::vector<int32_t> prompt = {0, 1};
  std::vector<int32_t> output = {2, 2, 3};
  apply_logits_processors(l, p, prompt, output);
  EXPECT_FLOAT_EQ(l[0], 1.0f);                      // prompt token, positive: / 2
  EXPECT_FLOAT_EQ(l[1], -4.0f);                     // prompt token, negative: * 2
  EXPECT_FLOAT_EQ(l[2], 2.0f / 2 - 0.5f * 2 - 0.25f);  // output x2
  EXPECT_FLOAT_EQ(l[3], 1.0f / 2 - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[4], 1.0f);                      // unseen
}

TEST(Sampler, LogitBiasAllowedIdsAndMinTokens) {
  SamplingParams p;
  p.logit_bias = {{1, 5.0f}, {99, 1.0f}};  // out-of-range id ignored
  p.eos_token_ids = {3};
  p.stop_token_ids = {2};
  p.min_tokens = 2;
  std::vector<float> l = {0, 0, 0, 0};
  apply_logits_processors(l, p, {}, {7});
  EXPECT_EQ(l[1], 5.0f);
  EXPECT_TRUE(std::isinf(l[2]) && l[2] < 0);
  EXPECT_TRUE(std::isinf(l[3]) && l[3] < 0);
  std::vector<float> l2 = {0, 0, 0, 0};
  apply_logits_processors(l2, p, {}, {7, 8});  // min_tokens reached: no mask
  EXPECT_EQ(l2[3], 0.0f);
  SamplingParams q;
  q.allowed_token_ids = {2};
  std::vector<float> l3 = {9, 0, 0, 0};
  apply_logits_processors(l3, q, {}, {});
  q.temperature = 0;
  Rng rng(0);
  EXPECT_EQ(sample_token(l3, q, &rng), 2);
}

// Empirical frequencies of 20000 draws stay within 5 sigma of the filtered distribution.
TEST(Sampler, EmpiricalDistributionMatches) {
  SamplingParams p;
  p.temperature = 0.8;
  p.top_p = 0.9;
  p.top_k = 4;
  std::vector<float> l = {1.0f, 2.0f, 0.5f, 1.5f, -1.0f, 0.0f};
  auto d = sampling_distribution(l, p);
  Rng rng(42);
  const int N = 20000;
  std::vector<int> counts(l.size(), 0);
  for (int i = 0; i < N; ++i) counts[sample_token(l, p, &rng)]++;
  for (size_t t = 0; t < l.size(); ++t) {
    const double sigma = std::sqrt(N * d[t] * (1 - d[t])) + 1e-9;
    EXPECT_LE(std::abs(counts[t] - N * d[t]), 5 * sigma + 1) << "token " << t;
    if (d[t] == 0) {
      EXPECT_EQ(counts[t], 0);
    }
  }
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  std::vector<float> l = {0.1f, 0.2f, 0.3f, 0.4f};
  Rng a(7), b(7), c(8);
  std::vector<int> xa, xb, xc;
  for (int i = 0; i < 50; ++i) {
    xa.push_back(sample_token(l, p, &a));
    xb.push_back(sample_token(l, p, &b));
    xc.push_back(sample_token(l, p, &c));
  }
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
}

TEST(Sampler, LogprobsAreLogSoftmaxOfRawLogits) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f};
  auto lp = compute_logprobs(l, 2, 2);
  const double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(lp.chosen.logprob, 2.0 - lse, 1e-5);
  EXPECT_EQ(lp.chosen.rank, 2);
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].token_id, 1);
  EXPECT_EQ(lp.top[1].token_id, 2);
  EXPECT_NEAR(lp.top[0].logprob, 3.0 - lse, 1e-5);
}

// Reference: full stable sort, the textbook definition. Compared on random vocabularies, including
// flat ones where top_p needs more than the 1024-token head the fast path sorts first.
TEST(Sampler, FilteredDistributionMatchesNaiveReference) {
  std::mt19937 gen(3);
  for (int trial = 0; trial < 40; ++trial) {
    const int V = 3000;
    const double spread = trial % 2 ? 0.01 : 5.0;  // flat or peaked
    std::normal_distribution<float> nd(0.0f, static_cast<float>(spread));
    std::vector<float> l(V);
    for (auto& x : l) x = nd(gen);
    SamplingParams p;
    p.temperature = 0.7;
    p.top_k = trial % 3 == 0 ? 0 : 50 * (trial % 5 + 1);
    p.top_p = trial % 4 == 0 ? 1.0 : 0.5 + 0.1 * (trial % 5);
    p.min_p = trial % 7 == 0 ? 0.05 : 0.0;
    auto fast = sampling_distribution(l, p);
    // naive
    std::vector<double> q(V);
    double mx = -1e300, sum = 0;
    for (int i = 0; i < V; ++i) mx = std::max(mx, l[i] / p.temperature);
    for (int i = 0; i < V; ++i) sum += (q[i] = std::exp(l[i] / p.temperature - mx));
    for (auto& x : q) x /= sum;
    if (p.min_p > 0) {
      const double t = p.min_p * *std::max_element(q.begin(), q.end());
      for (auto& x : q)
        if (x < t) x = 0;
    }
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return q[a] > q[b]; });
    size_t keep = p.top_k > 0 ? static_cast<size_t>(p.top_k) : V;
    if (p.top_p < 1) {
      double tot = 0, cum = 0;
      for (size_t i = 0; i < keep; ++i) tot += q[order[i]];
      size_t n = 0;
      while (n < keep && (n == 0 || cum < p.top_p * tot)) cum += q[order[n++]];
      keep = n;
    }
    for (size_t i = keep; i < static_cast<size_t>(V); ++i) q[order[i]] = 0;
    sum = std::accumulate(q.begin(), q.end(), 0.0);
    for (int i = 0; i < V; ++i) ASSERT_NEAR(fast[i], q[i] / sum, 1e-12) << "trial " << trial << " token " << i;
  }
}
