// MoE router: fp32 softmax, top-k, optional renormalisation.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "deltaserve/kernels/cpu.h"

namespace ds::kernels {

void moe_route(const float* logits, int64_t E, int top_k, bool renormalize, int32_t* ids, float* weights) {
  float mx = logits[0];
  for (int64_t e = 1; e < E; ++e) mx = std::max(mx, logits[e]);
  std::vector<float> p(static_cast<size_t>(E));
  float sum = 0.0f;
  for (int64_t e = 0; e < E; ++e) sum += (p[static_cast<size_t>(e)] = std::exp(logits[e] - mx));
  for (auto& v : p) v /= sum;
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
    return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)] ||
           (p[static_cast<size_t>(a)] == p[static_cast<size_t>(b)] && a < b);
  });
  float tsum = 0.0f;
  for (int i = 0; i < top_k; ++i) tsum += p[static_cast<size_t>(order[static_cast<size_t>(i)])];
  for (int i = 0; i < top_k; ++i) {
    ids[i] = order[static_cast<size_t>(i)];
    weights[i] = p[static_cast<size_t>(ids[i])] / (renormalize ? tsum : 1.0f);
  }
}

}  // namespace ds::kernels
