// Helpers shared by the runtime tests: deterministic random data and GPTQ tensor packing written
// independently of the code under test (plain loops over the documented format).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "deltaserve/backend/backend.h"
#include "deltaserve/core/dtype.h"

namespace ds::test {

// A host array as a CPU-backend activation view (rows x cols fp32, contiguous).
inline backend::Act host_act(const float* p, int64_t rows, int64_t cols) {
  return {const_cast<float*>(p), DType::kF32, rows, cols, cols};
}

// The step metadata of one sequence (state slot 0) feeding n tokens after `start` cached ones.
inline backend::StepMeta one_seq_meta(int64_t start, int64_t n, const std::vector<int32_t>& table) {
  backend::StepMeta m;
  m.token_ids.assign(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i)
    for (int r = 0; r < 3; ++r) m.positions.push_back(start + i);
  m.cu_seqlens = {0, static_cast<int32_t>(n)};
  m.start_pos = {start};
  m.state_slots = {0};
  m.block_tables = table;
  m.blocks_per_seq = static_cast<int>(table.size());
  return m;
}

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A GPTQ-format Linear [N out][K in] with random codes, scales and zeros, plus its exact
// dequantised weight W[n][k] in double.
struct GptqTensors {
  int bits = 4, group_size = 32;
  bool sym = true, v2 = false, act_order = false;
  int64_t N = 0, K = 0, G = 0;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;  // fp16
  std::vector<double> W;         // [N][K]
};

inline GptqTensors make_gptq(int64_t N, int64_t K, int bits, int group_size, bool sym, bool v2, bool act_order,
                             uint32_t seed) {
  GptqTensors t;
  t.bits = bits;
  t.group_size = group_size;
  t.sym = sym;
  t.v2 = v2;
  t.act_order = act_order;
  t.N = N;
  t.K = K;
  const int64_t gs = group_size > 0 ? group_size : K;
  t.G = (K + gs - 1) / gs;
  std::mt19937 rng(seed);
  const int maxq = (1 << bits) - 1;
  std::uniform_int_distribution<int> code(0, maxq);
  std::uniform_real_distribution<float> sc(0.002f, 0.05f);
  // g_idx: k / gs, or a random permutation of that (act-order keeps rows in original order).
  t.g_idx.resize(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) t.g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / gs);
  if (act_order) std::shuffle(t.g_idx.begin(), t.g_idx.end(), rng);
  std::vector<int> q(static_cast<size_t>(N * K)), z(static_cast<size_t>(t.G * N));
  for (auto& v : q) v = code(rng);
  for (auto& v : z) v = sym ? (1 << (bits - 1)) : std::uniform_int_distribution<int>(1, maxq - 1)(rng);
  t.scales.resize(static_cast<size_t>(t.G * N));
  for (auto& s : t.scales) s = f32_to_f16(sc(rng) * 16.0f / static_cast<float>(1 << bits));
  const int pf = 32 / bits;
  t.qweight.assign(static_cast<size_t>(K / pf * N), 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n)
      t.qweight[static_cast<size_t>((k / pf) * N + n)] |=
          static_cast<int32_t>(static_cast<uint32_t>(q[static_cast<size_t>(n * K + k)]) << ((k % pf) * bits));
  t.qzeros.assign(static_cast<size_t>(t.G * (N / pf)), 0);
  for (int64_t g = 0; g < t.G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      const uint32_t stored = static_cast<uint32_t>(v2 ? z[static_cast<size_t>(g * N + n)] : z[static_cast<size_t>(g * N + n)] - 1);
      t.qzeros[static_cast<size_t>(g * (N / pf) + n / pf)] |= static_cast<int32_t>(stored << ((n % pf) * bits));
    }
  t.W.resize(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = t.g_idx[static_cast<size_t>(k)];
      t.W[static_cast<size_t>(n * K + k)] = static_cast<double>(f16_to_f32(t.scales[static_cast<size_t>(g * N + n)])) *
                                            (q[static_cast<size_t>(n * K + k)] - z[static_cast<size_t>(g * N + n)]);
    }
  return t;
}

template <typename B>
inline double max_abs_diff(const float* a, const B* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

}  // namespace ds::test
