// The selftest cases: each op on random inputs of model-like shapes (Qwen3.5-35B-A3B: hidden 2048,
// 16 q / 2 kv heads of 256, GDN 16 key / 32 value heads of 128, conv kernel 4), on the device and
// on the CPU backend, outputs compared relative to the CPU's largest magnitude.
#include "src/backend/gpu/selftest.h"
#include "src/backend/gpu/selftest_cases.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>

#include <cstring>

#include "deltaserve/backend/cpu_backend.h"

namespace ds::backend::gpu {

namespace selftest {
std::vector<float> randn(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
Tensor act(int64_t r, int64_t c, uint32_t seed, float scale) { return {Kind::kAct, r, c, randn(static_cast<size_t>(r * c), seed, scale), false}; }
Tensor f32(int64_t r, int64_t c, uint32_t seed, float scale) { return {Kind::kF32, r, c, randn(static_cast<size_t>(r * c), seed, scale), false}; }
Tensor out(Tensor t) {
  t.compared = true;
  return t;
}

}  // namespace selftest

namespace {

using namespace selftest;

size_t elem_bytes(Kind k, DType act) { return k == Kind::kAct ? dtype_size(act) : 4; }

// Host floats -> the tensor's storage type.
std::vector<unsigned char> encode(const Tensor& t, DType act) {
  const size_t n = t.v.size(), eb = elem_bytes(t.kind, act);
  std::vector<unsigned char> b(n * eb);
  for (size_t i = 0; i < n; ++i) {
    if (t.kind == Kind::kI32) {
      const int32_t x = static_cast<int32_t>(t.v[i]);
      std::memcpy(&b[i * 4], &x, 4);
    } else if (eb == 4) {
      std::memcpy(&b[i * 4], &t.v[i], 4);
    } else {
      const uint16_t h = act == DType::kBF16 ? f32_to_bf16(t.v[i]) : f32_to_f16(t.v[i]);
      std::memcpy(&b[i * 2], &h, 2);
    }
  }
  return b;
}
std::vector<float> decode(const std::vector<unsigned char>& b, Kind kind, DType act) {
  const size_t eb = elem_bytes(kind, act), n = b.size() / eb;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (kind == Kind::kI32) {
      int32_t x;
      std::memcpy(&x, &b[i * 4], 4);
      v[i] = static_cast<float>(x);
    } else if (eb == 4) {
      std::memcpy(&v[i], &b[i * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &b[i * 2], 2);
      v[i] = act == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return v;
}

struct Outcome {
  std::vector<std::vector<float>> outputs;
  double us = 0;
};

// Runs a case on one backend: the prefix step (resumed sequences) then the measured step.
Outcome run_case(Backend& be, const Case& c, int repeats) {
  const DType a = be.activation_dtype();
  auto* gpu = dynamic_cast<GpuBackend*>(&be);
  std::shared_ptr<void> state = c.setup ? c.setup(be) : nullptr;
  if (c.setup && !state) return {};  // setup failed: no outputs, the case fails
  if (c.cache.num_attn_layers + c.cache.num_gdn_layers > 0 && !be.allocate_cache(c.cache).is_ok()) return {};
  if (!be.reserve_step({std::max<int64_t>(c.step.tokens(false), c.step.tokens(true)) + 1,
                        static_cast<int>(c.step.n.size()), c.step.width(), std::max<int64_t>(c.step.tokens(false), 1)})
           .is_ok())
    return {};
  Outcome o;
  auto one = [&](bool prefix, bool keep) {
    std::vector<Tensor> ts = c.inputs(c.step.tokens(prefix), prefix ? 17u : 5u);
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    std::vector<Act> acts;
    for (const Tensor& t : ts) {
      const auto bytes = encode(t, a);
      auto buf = be.alloc(bytes.size(), "selftest tensor").value();
      be.upload(buf->data(), bytes.data(), bytes.size());
      const DType dt = t.kind == Kind::kAct ? a : t.kind == Kind::kF32 ? DType::kF32 : DType::kI32;
      acts.push_back({buf->data(), dt, t.rows, t.cols, t.cols});
      bufs.push_back(std::move(buf));
    }
    if (!be.plan(c.step.meta(prefix)).is_ok()) return;
    be.reset_states();
    c.run(be, acts, state.get());
    be.synchronize();
    if (!keep) return;
    for (size_t i = 0; i < ts.size(); ++i) {
      if (!ts[i].compared) continue;
      std::vector<unsigned char> b(ts[i].v.size() * elem_bytes(ts[i].kind, a));
      be.download(b.data(), bufs[i]->data(), b.size());
      o.outputs.push_back(decode(b, ts[i].kind, a));
    }
    if (gpu != nullptr && repeats > 0) {
      void* e0 = gpu->runtime().event_record().value();
      for (int r = 0; r < repeats; ++r) c.run(be, acts, state.get());
      void* e1 = gpu->runtime().event_record().value();
      o.us = 1000.0 * static_cast<double>(gpu->runtime().event_elapsed_ms(e0, e1).value()) / repeats;
      gpu->runtime().event_destroy(e0);
      gpu->runtime().event_destroy(e1);
    }
  };
  if (c.step.resumed()) one(true, false);
  one(false, true);
  return o;
}

double tensor_bytes(const Case& c, DType a) {
  double b = c.extra_bytes;
  for (const Tensor& t : c.inputs(c.step.tokens(false), 5u)) b += static_cast<double>(t.v.size() * elem_bytes(t.kind, a));
  return b;
}

}  // namespace

std::vector<SelftestRow> run_selftest(GpuBackend& dev, const SelftestOptions& options) {
  std::vector<SelftestRow> rows;
  const DType a = dev.activation_dtype();
  const double tol = a == DType::kF32 ? 2e-4 : a == DType::kBF16 ? 3e-2 : 5e-3;
  for (const Case& c : make_cases(options, a)) {
    if (!options.only.empty() && c.op.find(options.only) == std::string::npos) continue;
    SelftestRow r;
    r.op = c.op;
    r.shape = c.shape;
    r.tol = tol;
    r.bytes = tensor_bytes(c, a);
    const Outcome got = run_case(dev, c, options.timed_repeats);
    r.us = got.us;
    if (!options.decode_bench) {
      CpuBackend cpu;
      const Outcome want = run_case(cpu, c, 0);
      if (want.outputs.size() != got.outputs.size() || want.outputs.empty()) {
        r.ok = false;
        r.max_err = INFINITY;
      }
      for (size_t i = 0; r.ok && i < want.outputs.size(); ++i) {
        double scale = 1.0, err = 0.0;
        for (float x : want.outputs[i]) scale = std::max(scale, std::fabs(static_cast<double>(x)));
        for (size_t j = 0; j < want.outputs[i].size(); ++j) {
          const double d = std::fabs(static_cast<double>(got.outputs[i][j]) - want.outputs[i][j]);
          err = std::max(err, std::isnan(d) ? INFINITY : d);
        }
        r.max_err = std::max(r.max_err, err / scale);
      }
      r.ok = r.ok && r.max_err <= r.tol;
    }
    rows.push_back(r);
  }
  return rows;
}

int print_selftest(const std::vector<SelftestRow>& rows, std::FILE* out) {
  int failed = 0;
  std::fprintf(out, "%-22s %-34s %10s %9s %10s %10s  %s\n", "op", "shape", "max err", "tol", "us", "GB/s", "");
  for (const SelftestRow& r : rows) {
    const double gbs = r.us > 0 ? r.bytes / (r.us * 1e3) : 0.0;
    std::fprintf(out, "%-22s %-34s %10.2e %9.1e %10.2f %10.1f  %s\n", r.op.c_str(), r.shape.c_str(), r.max_err, r.tol,
                 r.us, gbs, r.ok ? "ok" : "FAIL");
    if (!r.ok) ++failed;
  }
  return failed;
}

}  // namespace ds::backend::gpu
