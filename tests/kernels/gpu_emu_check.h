// The GPU-under-emulation check shared by the per-op tests: an op run on the reference backend and
// on a fresh emulated GPU backend at warp 32 and 64, each under the in-order, reverse and random
// schedules. Every output is held to atol + rtol * |reference|, and the schedules of one warp size
// must produce identical bytes (a difference is a race: a missing barrier or an unordered write).
// Also the host <-> device helpers the op tests share (as_bytes, from_bytes, Dev).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "deltaserve/backend/reference_backend.h"
#include "deltaserve/core/dtype.h"
#include "kernels/emu/emu.h"
#include "src/backend/gpu/gpu_backend.h"

namespace ds::test {

using OpRun = std::function<std::vector<float>(backend::Backend&)>;

// Host values as bytes of dtype.
inline std::vector<uint8_t> as_bytes(const std::vector<float>& h, DType dt) {
  std::vector<uint8_t> b(h.size() * dtype_size(dt));
  for (size_t i = 0; i < h.size(); ++i) {
    if (dt == DType::kF32) std::memcpy(&b[4 * i], &h[i], 4);
    else {
      const uint16_t u = dt == DType::kBF16 ? f32_to_bf16(h[i]) : f32_to_f16(h[i]);
      std::memcpy(&b[2 * i], &u, 2);
    }
  }
  return b;
}

inline std::vector<float> from_bytes(const std::vector<uint8_t>& b, DType dt) {
  std::vector<float> h(b.size() / dtype_size(dt));
  for (size_t i = 0; i < h.size(); ++i) {
    if (dt == DType::kF32) std::memcpy(&h[i], &b[4 * i], 4);
    else {
      uint16_t u;
      std::memcpy(&u, &b[2 * i], 2);
      h[i] = dt == DType::kBF16 ? bf16_to_f32(u) : f16_to_f32(u);
    }
  }
  return h;
}

// Host floats in and out of device buffers of an Act's dtype (kept alive with the Dev).
struct Dev {
  backend::Backend& be;
  std::vector<std::unique_ptr<backend::DeviceBuffer>> bufs;
  backend::Act put(const std::vector<float>& h, DType dt, int64_t rows, int64_t cols, int64_t ld) {
    const auto b = as_bytes(h, dt);
    bufs.push_back(be.alloc(b.size(), "test").value());
    be.upload(bufs.back()->data(), b.data(), b.size());
    return {bufs.back()->data(), dt, rows, cols, ld};
  }
  std::vector<float> get(const backend::Act& a) {
    std::vector<uint8_t> b(static_cast<size_t>(a.rows * a.ld) * dtype_size(a.dtype));
    be.download(b.data(), a.data, b.size());
    return from_bytes(b, a.dtype);
  }
};

// One MoE layer on d.be: prepare the experts (gate, up, down: E each), route `logits` [T][E] to
// top_k (renormalised), run the experts over x [T][H] in the backend's activation type; returns the
// output, read with ld H + 2 so a write past column H shows.
inline std::vector<float> run_moe_layer(Dev& d, const std::vector<float>& x, const std::vector<float>& logits,
                                        int64_t T, int64_t H, int E, int top_k,
                                        const std::vector<const backend::PreparedWeight*>& g,
                                        const std::vector<const backend::PreparedWeight*>& u,
                                        const std::vector<const backend::PreparedWeight*>& dn) {
  backend::Backend& be = d.be;
  const DType dt = be.activation_dtype();
  const Status ps = be.prepare_experts(g.data(), u.data(), dn.data(), E);
  EXPECT_TRUE(ps.is_ok()) << ps.message();
  const backend::Act xa = d.put(x, dt, T, H, H);
  const backend::Act la = d.put(logits, DType::kF32, T, E, E);
  const backend::Act wa =
      d.put(std::vector<float>(static_cast<size_t>(T * top_k), 0.0f), DType::kF32, T, top_k, top_k);
  const backend::Act oa = d.put(std::vector<float>(static_cast<size_t>(T * (H + 2)), 0.0f), dt, T, H, H + 2);
  auto ids = be.alloc(static_cast<size_t>(T * top_k) * 4, "ids").value();
  be.moe_route(la, top_k, true, static_cast<int32_t*>(ids->data()), wa);
  be.moe_experts(xa, static_cast<int32_t*>(ids->data()), wa, top_k, E, g.data(), u.data(), dn.data(), oa);
  return d.get(oa);
}

inline void check_emulated(const std::string& name, DType act, double atol, double rtol, uint64_t seed,
                           const OpRun& run) {
  auto ref = backend::make_reference_backend();
  const std::vector<float> want = run(*ref);
  for (int warp : {32, 64}) {
    std::vector<float> first;
    for (auto sched : {emu::Schedule::kInOrder, emu::Schedule::kReverse, emu::Schedule::kRandom}) {
      emu::Options o;
      o.schedule = sched;
      o.warp_size = warp;
      o.seed = seed;
      emu::ScopedOptions scoped(o);
      backend::gpu::GpuOptions go;
      go.activation_dtype = act;
      auto gpu = backend::gpu::make_gpu_backend(0, go);
      ASSERT_TRUE(gpu.is_ok()) << gpu.status().message();
      const std::vector<float> got = run(*gpu.value());
      ASSERT_EQ(got.size(), want.size()) << name;
      double worst = 0.0;
      size_t bad = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(double{got[i]} - want[i]);
        worst = std::max(worst, err);
        if (!(err <= atol + rtol * std::fabs(want[i]))) ++bad;
      }
      const std::string where = name + " " + dtype_name(act) + " warp " + std::to_string(warp) + " " + emu::schedule_name(sched);
      EXPECT_EQ(bad, 0u) << where << ": max error " << worst;
      if (std::getenv("DS_TEST_VERBOSE")) std::printf("%s: %zu values, max error %.3g\n", where.c_str(), got.size(), worst);
      if (first.empty()) {
        first = got;
      } else {
        EXPECT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * sizeof(float)))
            << where << " changed the bytes of another schedule";
      }
    }
  }
}

}  // namespace ds::test
