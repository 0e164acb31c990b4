// The GPU backend's small ops under emulation against the reference backend, beyond the shared
// op sweep: every vector path and its scalar fallback (odd sizes, misaligned views), strided
// views (ld > cols, column views), in-place calls, one token, segments long enough to spill the
// register cache, per-head groups that leave a block's last groups idle, M-RoPE at positions up
// to 5e5 with distinct t/h/w rows, f32 / bf16 / f16, warp sizes 32 and 64, each under three
// schedules that must give identical bytes.
#define DS_EMU 1
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "deltaserve/backend/reference_backend.h"
#include "deltaserve/core/dtype.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"
#include "tests/kernels/gpu_emu_check.h"

namespace ds {
namespace {

using backend::Act;
using backend::Backend;

// Device buffers of one run, freed together.
struct Bufs {
  Backend& be;
  DType dt;  // activation type of the backend
  std::vector<std::unique_ptr<backend::DeviceBuffer>> keep;

  void* raw(const void* host, size_t bytes) {
    keep.push_back(be.alloc(bytes, "test").value());
    be.upload(keep.back()->data(), host, bytes);
    return keep.back()->data();
  }
  const float* f32(const std::vector<float>& h) { return static_cast<const float*>(raw(h.data(), h.size() * 4)); }
  // rows x ld values (already representable in dt) as an Act of dtype `t` (default: activations).
  Act act(const std::vector<float>& h, int64_t rows, int64_t cols, int64_t ld, DType t = DType::kUnknown) {
    if (t == DType::kUnknown) t = dt;
    std::vector<uint16_t> b16(h.size());
    for (size_t i = 0; i < h.size(); ++i) b16[i] = t == DType::kBF16 ? f32_to_bf16(h[i]) : f32_to_f16(h[i]);
    const void* src = t == DType::kF32 ? static_cast<const void*>(h.data()) : b16.data();
    return {raw(src, h.size() * dtype_size(t)), t, rows, cols, ld};
  }
  // The whole rows x ld extent (padding included: ops must leave it alone) as fp32.
  std::vector<float> get(const Act& a) {
    const size_t n = static_cast<size_t>(a.rows * a.ld);
    std::vector<float> o(n);
    std::vector<uint16_t> b16(n);
    be.download(a.dtype == DType::kF32 ? static_cast<void*>(o.data()) : b16.data(), a.data, n * dtype_size(a.dtype));
    be.synchronize();
    if (a.dtype != DType::kF32)
      for (size_t i = 0; i < n; ++i) o[i] = a.dtype == DType::kBF16 ? bf16_to_f32(b16[i]) : f16_to_f32(b16[i]);
    return o;
  }
};

// Normal(0, scale) values representable in dt.
std::vector<float> rnd(size_t n, uint32_t seed, DType dt, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(rng);
    if (dt == DType::kBF16) x = bf16_to_f32(f32_to_bf16(x));
    if (dt == DType::kF16) x = f16_to_f32(f32_to_f16(x));
  }
  return v;
}

// A step of T tokens in two sequences with distinct (t, h, w) positions around `pos0`.
backend::StepMeta make_meta(int64_t T, int64_t pos0, std::vector<int32_t> logit_rows = {}) {
  backend::StepMeta m;
  const int64_t first = (T + 1) / 2;
  m.cu_seqlens = {0, static_cast<int32_t>(first), static_cast<int32_t>(T)};
  m.start_pos = {pos0, 3};
  m.state_slots = {0, 1};
  m.blocks_per_seq = 1;
  m.block_tables = {0, 1};
  for (int64_t t = 0; t < T; ++t) {
    m.token_ids.push_back(static_cast<int32_t>((t * 7919) % 37));
    const int64_t p = t < first ? pos0 + t : 3 + t - first;
    m.positions.insert(m.positions.end(), {p, p / 2 + 1, p / 3 + 5});
  }
  m.logit_rows = std::move(logit_rows);
  return m;
}

// One op run on a backend: builds inputs for values of type `values`, returns the outputs as fp32.
using Body = std::function<std::vector<float>(Backend& be, Bufs& bufs, DType values)>;

std::vector<float> run(Backend& be, const backend::StepMeta& m, DType values, const Body& body) {
  EXPECT_TRUE(be.reserve_step({4096, 8, 4, 4096}).is_ok());
  EXPECT_TRUE(be.plan(m).is_ok());
  Bufs bufs{be, be.activation_dtype(), {}};
  return body(be, bufs, values);
}

void check(const std::string& name, const backend::StepMeta& m, DType dt, const Body& body) {
  const double tol = dt == DType::kF32 ? 1e-5 : dt == DType::kF16 ? 2e-3 : 1.6e-2;  // |err| <= tol * (1 + |want|)
  test::check_emulated(name, dt, tol, tol, 7, [&](Backend& be) { return run(be, m, dt, body); });
}

const DType kTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

TEST(GpuEmuNorm, RmsNorm) {
  // {rows, cols, ld, in place}: group paths (16/32 lanes, spare groups), block path, spilled tail
  // (f32 cols 20000 > 4 vectors x 1024 threads), odd sizes (scalar path), padded views.
  struct C { int64_t rows, cols, ld; bool in_place; };
  for (const C c : {C{1, 1, 1, false}, C{3, 7, 9, false}, C{17, 64, 64, true}, C{5, 256, 260, false},
                    C{4, 2048, 2048, true}, C{2, 1000, 1003, false}, C{1, 20000, 20000, false}})
    for (DType dt : kTypes)
      for (bool zc : {true, false})
        check("rms_norm " + std::to_string(c.rows) + "x" + std::to_string(c.cols), make_meta(1, 0), dt,
              [&](Backend& be, Bufs& b, DType v) {
                const Act x = b.act(rnd(static_cast<size_t>(c.rows * c.ld), 1, v, 3.0f), c.rows, c.cols, c.ld);
                const Act out = c.in_place ? x : b.act(std::vector<float>(static_cast<size_t>(c.rows * c.ld), 0.5f),
                                                       c.rows, c.cols, c.ld);
                be.rms_norm(x, b.f32(rnd(static_cast<size_t>(c.cols), 2, DType::kF32, 0.3f)), 1e-6f, zc, out);
                return b.get(out);
              });
}

TEST(GpuEmuNorm, GatedRmsNormAndL2Heads) {
  struct C { int64_t rows, heads, hd, ld; };
  for (const C c : {C{1, 1, 128, 128}, C{7, 3, 128, 3 * 128 + 8}, C{3, 2, 33, 70}, C{2, 1, 4096, 4096}})
    for (DType dt : kTypes) {
      const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.heads) + "x" + std::to_string(c.hd);
      check("gated_rms_norm " + shape, make_meta(1, 0), dt, [&](Backend& be, Bufs& b, DType v) {
        // Per head, as the model calls it: [rows*heads][hd] views of contiguous buffers.
        const int64_t n = c.rows * c.heads * c.hd;
        const Act x = b.act(rnd(static_cast<size_t>(n), 3, v), c.rows * c.heads, c.hd, c.hd);
        const Act z = b.act(rnd(static_cast<size_t>(n), 4, v, 2.0f), c.rows * c.heads, c.hd, c.hd);
        const Act out = b.act(std::vector<float>(static_cast<size_t>(n), 0.0f), c.rows * c.heads, c.hd, c.hd);
        be.gated_rms_norm(x, z, b.f32(rnd(static_cast<size_t>(c.hd), 5, DType::kF32)), 1e-6f, out);
        return b.get(out);
      });
      check("l2_norm_heads " + shape, make_meta(1, 0), dt, [&](Backend& be, Bufs& b, DType v) {
        // A column view (offset 1 head-less element + padding) of a wider buffer: ld > cols.
        const Act buf = b.act(rnd(static_cast<size_t>(c.rows * (c.ld + 2)), 6, v), c.rows, c.ld + 2, c.ld + 2);
        const Act x = buf.cols_view(2, c.heads * c.hd);
        be.l2_norm_heads(x, static_cast<int>(c.hd), 1e-6f, 0.125f);
        return b.get(buf);
      });
    }
}

TEST(GpuEmuNorm, RopeMrope) {
  // {T, heads, head_dim, rot_dim, ld, pos0, section}: Qwen3.5's 256/64 with sections {11,11,10},
  // text-only (no section), unaligned head_dim (scalar path), positions up to 5e5.
  struct C { int64_t T; int heads, hd, rot; int64_t ld, pos0; bool section; };
  const int32_t section[3] = {11, 11, 10};
  for (const C c : {C{1, 1, 256, 64, 256, 0, true}, C{5, 4, 256, 64, 1024 + 16, 100000, true},
                    C{3, 2, 34, 16, 70, 500000, false}, C{9, 3, 64, 64, 192, 77, true}})
    for (DType dt : kTypes)
      check("rope T=" + std::to_string(c.T) + " hd=" + std::to_string(c.hd), make_meta(c.T, c.pos0), dt,
            [&](Backend& be, Bufs& b, DType v) {
              const Act x = b.act(rnd(static_cast<size_t>(c.T * c.ld), 7, v), c.T, int64_t{c.heads} * c.hd, c.ld);
              be.rope_mrope(x, c.heads, c.hd, c.rot, 1e7, c.section ? section : nullptr);
              return b.get(x);
            });
}

TEST(GpuEmuNorm, SplitQueryGateAndElementwise) {
  struct C { int64_t T; int heads, hd; };
  for (const C c : {C{1, 1, 8}, C{5, 3, 16}, C{4, 2, 7}, C{2, 16, 256}})
    for (DType dt : kTypes) {
      const int64_t n = int64_t{c.heads} * c.hd;
      const std::string shape = std::to_string(c.T) + "x" + std::to_string(n);
      check("split_query_gate " + shape, make_meta(1, 0), dt, [&](Backend& be, Bufs& b, DType v) {
        const Act qg = b.act(rnd(static_cast<size_t>(c.T * 2 * n), 8, v), c.T, 2 * n, 2 * n);
        const Act q = b.act(std::vector<float>(static_cast<size_t>(c.T * (n + 8)), 0.0f), c.T, n, n + 8);
        const Act gate = b.act(std::vector<float>(static_cast<size_t>(c.T * n), 0.0f), c.T, n, n);
        be.split_query_gate(qg, c.heads, c.hd, q, gate);
        std::vector<float> o = b.get(q), g = b.get(gate);
        o.insert(o.end(), g.begin(), g.end());
        return o;
      });
      check("elementwise " + shape, make_meta(1, 0), dt, [&](Backend& be, Bufs& b, DType v) {
        // Contiguous and strided operands, in place, a per-row gate logit of fp32 and of dt.
        const Act x = b.act(rnd(static_cast<size_t>(c.T * (n + 4)), 9, v), c.T, n, n + 4);
        const Act y = b.act(rnd(static_cast<size_t>(c.T * n), 10, v), c.T, n, n);
        const Act up = b.act(rnd(static_cast<size_t>(c.T * n), 11, v), c.T, n, n);
        const Act gu = b.act(rnd(static_cast<size_t>(c.T * n), 12, v, 2.0f), c.T, n, n);
        const Act gl32 = b.act(rnd(static_cast<size_t>(c.T * 3), 13, DType::kF32), c.T, 1, 3, DType::kF32);
        const Act gl = b.act(rnd(static_cast<size_t>(c.T), 14, v), c.T, 1, 1);
        be.silu_mul(gu, up, gu);
        be.add(x, gu);
        be.sigmoid_gate(x, y);
        be.add_sigmoid_gated(x, y, gl32);
        be.add_sigmoid_gated(x, up, gl);
        std::vector<float> o = b.get(x), g = b.get(gu);
        o.insert(o.end(), g.begin(), g.end());
        return o;
      });
    }
}

TEST(GpuEmuNorm, EmbedGatherAndGates) {
  for (DType dt : kTypes)
    for (DType table_dt : kTypes)
      for (int64_t dim : {int64_t{8}, int64_t{13}, int64_t{512}}) {
        const int64_t T = 9;
        check("embed " + std::string(dtype_name(table_dt)) + " dim " + std::to_string(dim),
              make_meta(T, 0, {4, 0, 8, 2, 2}), dt, [&](Backend& be, Bufs& b, DType v) {
                const int64_t rows = 37;
                const std::vector<float> tv = rnd(static_cast<size_t>(rows * dim), 15, table_dt);
                std::vector<uint16_t> t16(tv.size());
                for (size_t i = 0; i < tv.size(); ++i) t16[i] = table_dt == DType::kBF16 ? f32_to_bf16(tv[i]) : f32_to_f16(tv[i]);
                backend::EmbeddingTable host{table_dt, table_dt == DType::kF32 ? static_cast<const void*>(tv.data()) : t16.data(),
                                             rows, dim};
                const backend::EmbeddingTable table = be.prepare_embedding(host).value();
                const Act h = b.act(std::vector<float>(static_cast<size_t>(T * (dim + 3)), 0.0f), T, dim, dim + 3);
                be.embed(table, h);
                const Act out = b.act(std::vector<float>(static_cast<size_t>(4 * dim), 0.0f), 4, dim, dim);
                be.gather_logit_rows(h, 1, out);
                std::vector<float> o = b.get(h), g = b.get(out);
                o.insert(o.end(), g.begin(), g.end());
                return o;
              });
      }
  for (int64_t T : {int64_t{1}, int64_t{70}})
    check("gdn_gates T=" + std::to_string(T), make_meta(T, 0), DType::kF32, [&](Backend& be, Bufs& b, DType) {
      const int Hv = 6;
      // a, b as column views of one fp32 [T][2*Hv + 1] buffer. (g, beta contiguous: the reference
      // writes them densely, whatever their ld.)
      const Act ab = b.act(rnd(static_cast<size_t>(T * (2 * Hv + 1)), 16, DType::kF32, 8.0f), T, 2 * Hv + 1, 2 * Hv + 1,
                           DType::kF32);
      const Act g = b.act(std::vector<float>(static_cast<size_t>(T * Hv), 0.0f), T, Hv, Hv, DType::kF32);
      const Act beta = b.act(std::vector<float>(static_cast<size_t>(T * Hv), 0.0f), T, Hv, Hv, DType::kF32);
      std::vector<float> A_log = rnd(Hv, 17, DType::kF32), dt_bias = rnd(Hv, 18, DType::kF32);
      be.gdn_gates(ab.cols_view(0, Hv), ab.cols_view(Hv + 1, Hv), b.f32(A_log), b.f32(dt_bias), g, beta);
      std::vector<float> o = b.get(g), bb = b.get(beta);
      o.insert(o.end(), bb.begin(), bb.end());
      return o;
    });
}

}  // namespace
}  // namespace ds
