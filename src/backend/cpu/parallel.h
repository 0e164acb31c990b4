// Work splitting shared by the CPU backend's ops (private to src/backend/cpu).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "deltaserve/core/thread_pool.h"

namespace ds::backend {

// Per-thread scratch of at least n floats (grows to its high-water mark, never shrinks).
inline float* thread_scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Runs fn(i) for every unit, split over the pool's threads by cumulative cost; each unit runs on
// exactly one thread, so results do not depend on the thread count.
template <typename Fn>
void parallel_by_cost(const std::vector<double>& cost, const Fn& fn) {
  const int64_t n = static_cast<int64_t>(cost.size());
  if (n == 0) return;
  std::vector<double> prefix(cost.size() + 1, 0.0);
  for (size_t i = 0; i < cost.size(); ++i) prefix[i + 1] = prefix[i] + cost[i];
  ThreadPool& pool = ThreadPool::global();
  const int parts = static_cast<int>(std::min<int64_t>(pool.size(), n));
  if (parts <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  const double total = prefix.back();
  pool.parallel_for(parts, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      // Unit i belongs to the part containing its cost midpoint.
      const double lo = total * static_cast<double>(p) / parts, hi = total * static_cast<double>(p + 1) / parts;
      for (int64_t i = 0; i < n; ++i) {
        const double mid = 0.5 * (prefix[static_cast<size_t>(i)] + prefix[static_cast<size_t>(i + 1)]);
        if (mid >= lo && (mid < hi || p == parts - 1)) fn(i);
      }
    }
  });
}

}  // namespace ds::backend
