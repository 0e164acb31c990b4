// The CPU backend, recording each position's smallest router margin (k-th minus (k+1)-th router
// logit) over the MoE layers: where a 16-bit backend may route a token to another expert than the
// fp32 CPU does. Single-sequence steps only (positions are those of the step's first sequence; a
// step starting at position 0 clears the record). Shared by the fidelity tests and
// bench/gpu/gpu_fidelity.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "deltaserve/backend/cpu_backend.h"

namespace ds::test {

class MarginProbe : public backend::CpuBackend {
 public:
  std::vector<float> margin;  // per position of the current sequence; empty for a dense model

  Status plan(const backend::StepMeta& m) override {
    offset_ = m.start_pos.empty() ? 0 : m.start_pos[0];
    if (offset_ == 0) margin.clear();
    return CpuBackend::plan(m);
  }
  void moe_route(backend::Act logits, int top_k, bool renormalize, int32_t* ids, backend::Act w) override {
    CpuBackend::moe_route(logits, top_k, renormalize, ids, w);
    const size_t k = static_cast<size_t>(top_k);
    for (int64_t r = 0; r < logits.rows; ++r) {
      const float* row = logits.as<float>() + r * logits.ld;
      std::vector<float> v(row, row + logits.cols);
      std::sort(v.rbegin(), v.rend());
      const size_t pos = static_cast<size_t>(offset_ + r);
      if (margin.size() <= pos) margin.resize(pos + 1, INFINITY);
      margin[pos] = std::min(margin[pos], v[k - 1] - v[k]);
    }
  }

 private:
  int64_t offset_ = 0;
};

}  // namespace ds::test
