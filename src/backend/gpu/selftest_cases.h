// The selftest's case table (selftest_cases.cpp) and the types it is written in.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <algorithm>

#include "src/backend/gpu/selftest.h"

namespace ds::backend::gpu::selftest {

enum class Kind { kAct, kF32, kI32 };

struct Tensor {
  Kind kind = Kind::kAct;
  int64_t rows = 0, cols = 0;
  std::vector<float> v;  // I32 tensors hold integer values
  bool compared = false;
};

struct Shape {
  std::vector<int64_t> start, n;  // per sequence: cached tokens, new tokens
  int block_size = 16;
  int64_t tokens(bool prefix) const {
    int64_t t = 0;
    for (size_t i = 0; i < n.size(); ++i) t += prefix ? start[i] : n[i];
    return t;
  }
  bool resumed() const { return std::any_of(start.begin(), start.end(), [](int64_t s) { return s > 0; }); }
  int width() const {
    int64_t w = 1;
    for (size_t i = 0; i < n.size(); ++i) w = std::max(w, (start[i] + n[i] + block_size - 1) / block_size);
    return static_cast<int>(w);
  }
  int blocks() const { return 2 * width() * static_cast<int>(n.size()) + 1; }
  // Sequence i owns every other block, backwards through the pool (holes between them).
  StepMeta meta(bool prefix) const {
    StepMeta m;
    m.cu_seqlens = {0};
    m.blocks_per_seq = width();
    for (size_t i = 0; i < n.size(); ++i) {
      if (prefix && start[i] == 0) continue;
      const int64_t s0 = prefix ? 0 : start[i], len = prefix ? start[i] : n[i];
      for (int64_t t = 0; t < len; ++t) {
        m.token_ids.push_back(static_cast<int32_t>((31 * (s0 + t) + 7 * static_cast<int64_t>(i)) % 400));
        for (int r = 0; r < 3; ++r) m.positions.push_back(s0 + t + r * ((s0 + t) % 3));
      }
      m.cu_seqlens.push_back(m.cu_seqlens.back() + static_cast<int32_t>(len));
      m.start_pos.push_back(s0);
      m.state_slots.push_back(static_cast<int32_t>(n.size() - 1 - i));
      for (int b = 0; b < width(); ++b)
        m.block_tables.push_back(blocks() - 1 - 2 * (b * static_cast<int>(n.size()) + static_cast<int>(i)));
      if (s0 == 0) m.reset_slots.push_back(static_cast<int32_t>(n.size() - 1 - i));
    }
    for (int32_t r = 0; r < m.cu_seqlens.back(); ++r) m.logit_rows.push_back(r);
    return m;
  }
};

using Inputs = std::function<std::vector<Tensor>(int64_t tokens, uint32_t seed)>;
using Run = std::function<void(Backend&, const std::vector<Act>&, void* state)>;
using Setup = std::function<std::shared_ptr<void>(Backend&)>;

struct Case {
  std::string op, shape;
  Shape step;
  CacheSpec cache;
  Inputs inputs;
  Run run;
  Setup setup;       // per-backend state (prepared weights, uploaded tables)
  double extra_bytes = 0;  // cache or state traffic the tensors do not show
};

std::vector<float> randn(size_t n, uint32_t seed, float scale);
Tensor act(int64_t r, int64_t c, uint32_t seed, float scale = 1.0f);
Tensor f32(int64_t r, int64_t c, uint32_t seed, float scale = 1.0f);
Tensor out(Tensor t);

std::vector<Case> make_cases(const SelftestOptions& o, DType a);

}  // namespace ds::backend::gpu::selftest
