// bench_gpu_gemm: the 4-bit GEMM (GPTQ int4, group 128, symmetric) against the dense 16-bit one
// (cuBLASLt on CUDA) on Qwen3.5 shapes at M = 1..256 rows, then the fused experts of a 35B-A3B MoE
// layer, through the GPU backend's contract only (prepare_weight, reserve_step, linear, moe_route,
// moe_experts), timed with device events. A 4-bit figure is the weight bytes read per use
// (PreparedWeight::bytes) per second, as a fraction of the read bandwidth a plain read kernel
// reaches in the same run (the roofline); the MoE's bytes are those of the distinct experts routed to.
//
//   bench_gpu_gemm [--dtype bfloat16|float16] [--repeats N] [--only SUBSTRING] [--quick]
//
// --quick: one tiny shape and a 16-expert MoE at M 1 and 4, for smoke runs under emulation.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/gpu/bandwidth_probe.h"
#include "bench/gpu/bench_util.h"
#include "src/backend/gpu/gpu_backend.h"

using namespace ds;
using namespace ds::backend;
using namespace ds::backend::gpu;

namespace {

struct Shape {
  const char* name;
  int64_t n, k;  // y[M][n] = x[M][k] W^T
};

// Qwen3.5/3.6-27B: hidden 5120, MLP 17408; GDN in_proj_qkv [q 2048 | k 2048 | v 6144] fused with
// in_proj_z [6144] (16 key and 48 value heads of 128); attention q_proj 24 heads x (query + gate)
// x 256. Experts: 35B-A3B (hidden 2048, I 512) and 122B-A10B (hidden 3072, I 1024).
const std::vector<Shape> kShapes = {
    {"27b.mlp.gate_up", 17408, 5120},         {"27b.mlp.down", 5120, 17408},
    {"27b.gdn.in_proj_qkvz", 16384, 5120},    {"27b.gdn.out_proj", 5120, 6144},
    {"27b.attn.q_proj", 12288, 5120},         {"27b.attn.o_proj", 5120, 6144},
    {"35b-a3b.expert.gate_up", 512, 2048},    {"35b-a3b.expert.down", 2048, 512},
    {"122b-a10b.expert.gate_up", 1024, 3072}, {"122b-a10b.expert.down", 3072, 1024},
};
const std::vector<Shape> kQuickShapes = {{"quick", 128, 256}};

struct MoeShape {
  const char* name;
  int experts, top_k;
  int64_t h, i;
};
const MoeShape kMoe = {"35b-a3b.moe", 256, 8, 2048, 512};
const MoeShape kQuickMoe = {"quick.moe", 16, 8, 256, 128};  // K of every projection a whole group

// A timed loop that reused one weight would read it from the last-level cache (50-60 MB on H100 and
// H200, 256 MB on MI300), not memory: it cycles through copies holding at least this many bytes,
// and the MoE through this many routings.
constexpr size_t kColdBytes = size_t{256} << 20;
constexpr int kRouteSets = 16;

struct Options {
  std::string only;
  int repeats = 50, warmup = 5;
  bool quick = false;
  std::vector<int64_t> ms = {1, 4, 16, 64, 256};
  std::vector<int64_t> moe_batches = {1, 16};
  bool wanted(const char* name) const {
    return only.empty() || std::string(name).find(only) != std::string::npos;
  }
};

using bench::fail;
using bench::must;

// Values do not change the timings, only their count: a cheap generator suffices.
struct Lcg {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(s >> 32);
  }
  float uniform() { return static_cast<float>(next() >> 8) * (1.0f / 16777216.0f) - 0.5f; }  // [-0.5, 0.5)
};

// v[i] = scale * uniform of dtype (f32, f16 or bf16), as bytes.
std::vector<unsigned char> random_values(DType t, size_t count, float scale, Lcg& rng) {
  std::vector<unsigned char> v(count * dtype_size(t));
  for (size_t i = 0; i < count; ++i) {
    const float f = scale * rng.uniform();
    const uint16_t h = t == DType::kF16 ? f32_to_f16(f) : f32_to_bf16(f);
    std::memcpy(&v[i * dtype_size(t)], t == DType::kF32 ? static_cast<const void*>(&f) : &h, dtype_size(t));
  }
  return v;
}

// One weight [n][k] on the host: GPTQ tensors (random codes, fp16 scales) and, when asked, dense.
struct HostWeight {
  int64_t n = 0, k = 0;
  std::vector<int32_t> qweight;      // [k/8][n]
  std::vector<uint16_t> scales;      // [k/128][n]
  std::vector<unsigned char> dense;  // [n][k] of the activation type
};
HostWeight host_weight(int64_t n, int64_t k, DType dense_dtype, Lcg& rng) {
  HostWeight h{n, k, {}, {}, {}};
  h.qweight.resize(static_cast<size_t>(k / 8 * n));
  for (auto& q : h.qweight) q = static_cast<int32_t>(rng.next());
  h.scales.resize(static_cast<size_t>((k + 127) / 128 * n));
  for (auto& s : h.scales) s = f32_to_f16(0.002f + 0.004f * (rng.uniform() + 0.5f));
  if (dense_dtype != DType::kUnknown)
    h.dense = random_values(dense_dtype, static_cast<size_t>(n * k), 0.1f, rng);
  return h;
}
// The checkpoint form prepare_weight takes: GPTQ int4 (group 128, symmetric, fp16 scales) or dense.
WeightSource int4_source(const std::string& name, const HostWeight& h) {
  WeightSource s{.name = name + " (int4)", .n = h.n, .k = h.k, .bits = 4, .group_size = 128, .sym = true};
  s.qweight = h.qweight.data();
  s.scales = h.scales.data();
  s.scale_groups = (h.k + 127) / 128;
  return s;
}
WeightSource dense_source(const std::string& name, const HostWeight& h, DType dtype) {
  return {.name = name + " (dense)", .n = h.n, .k = h.k, .weight_dtype = dtype, .weight = h.dense.data()};
}

// prepare_weight of one source, repeated until the copies hold `cold_bytes`.
std::vector<std::unique_ptr<PreparedWeight>> prepare_copies(GpuBackend& be, const WeightSource& src,
                                                            size_t cold_bytes) {
  std::vector<std::unique_ptr<PreparedWeight>> ws;
  size_t total = 0;
  do {
    ws.push_back(must(be.prepare_weight(src), "prepare_weight " + src.name));
    total += ws.back()->bytes;
  } while (total < cold_bytes && ws.back()->bytes > 0);
  return ws;
}

void reserve(GpuBackend& be, int64_t max_tokens) {
  const StepLimits l{.max_tokens = max_tokens, .max_seqs = 1, .max_blocks_per_seq = 1, .max_logit_rows = 1};
  Status s = be.reserve_step(l);  // also completes the weights' uploads
  if (!s.is_ok()) fail("reserve_step", s);
}

// A device matrix [rows][cols] of dtype, random (uniform in [-scale/2, scale/2)) or zero; `keep` owns it.
Act device_matrix(GpuBackend& be, std::vector<std::unique_ptr<DeviceBuffer>>& keep, DType t, int64_t rows,
                  int64_t cols, Lcg* rng, float scale = 1.0f) {
  const size_t count = static_cast<size_t>(rows * cols), bytes = count * dtype_size(t);
  keep.push_back(must(be.alloc(bytes, "bench matrix"), "alloc"));
  void* p = keep.back()->data();
  if (rng)
    be.upload(p, random_values(t, count, scale, *rng).data(), bytes);
  else
    be.fill_zero(p, bytes);
  return Act{p, t, rows, cols, cols};
}

// Microseconds per call of op(i) over i < repeats, after `warmup` untimed calls.
template <typename Op>
double time_us(GpuBackend& be, int warmup, int repeats, Op&& op) {
  Runtime& rt = be.runtime();
  for (int i = 0; i < warmup; ++i) op(i);
  void* e0 = must(rt.event_record(), "event_record");
  for (int i = 0; i < repeats; ++i) op(i);
  void* e1 = must(rt.event_record(), "event_record");
  const double ms = must(rt.event_elapsed_ms(e0, e1), "event_elapsed_ms");
  rt.event_destroy(e0);
  rt.event_destroy(e1);
  return ms * 1e3 / repeats;
}

void bench_linear(GpuBackend& be, const Options& o, double bw) {
  const std::vector<Shape>& shapes = o.quick ? kQuickShapes : kShapes;
  if (std::none_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return o.wanted(s.name); })) return;
  const DType act = be.activation_dtype();
  const char* dn = act == DType::kF16 ? "fp16" : "bf16";
  const size_t cold = o.quick ? 0 : kColdBytes;
  const int64_t max_m = o.ms.back();
  std::printf("%-26s %4s %6s %6s %9s %8s %7s %6s us %7s\n", "linear (int4 g128 sym)", "M", "N", "K",
              "int4 us", "GB/s", "% read", dn, "speedup");
  Lcg rng;
  for (const Shape& s : shapes) {
    if (!o.wanted(s.name)) continue;
    std::vector<std::unique_ptr<PreparedWeight>> q, d;
    {
      const HostWeight h = host_weight(s.n, s.k, act, rng);
      q = prepare_copies(be, int4_source(s.name, h), cold);
      d = prepare_copies(be, dense_source(s.name, h, act), cold);
    }
    reserve(be, max_m);
    std::vector<std::unique_ptr<DeviceBuffer>> keep;
    const Act x = device_matrix(be, keep, act, max_m, s.k, &rng),
              y = device_matrix(be, keep, act, max_m, s.n, nullptr);
    for (int64_t m : o.ms) {
      const Act xm = x.rows_view(0, m), ym = y.rows_view(0, m);
      const double q_us =
          time_us(be, o.warmup, o.repeats, [&](int i) { be.linear(*q[i % q.size()], xm, ym); });
      const double d_us =
          time_us(be, o.warmup, o.repeats, [&](int i) { be.linear(*d[i % d.size()], xm, ym); });
      const double gbs = static_cast<double>(q[0]->bytes) / (q_us * 1e3);
      std::printf("%-26s %4lld %6lld %6lld %9.2f %8.1f %6.1f%% %9.2f %6.2fx\n", s.name,
                  static_cast<long long>(m), static_cast<long long>(s.n), static_cast<long long>(s.k), q_us,
                  gbs, bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0, d_us, q_us > 0 ? d_us / q_us : 0.0);
    }
  }
}

void bench_moe(GpuBackend& be, const Options& o, double bw) {
  const MoeShape& m = o.quick ? kQuickMoe : kMoe;
  if (!o.wanted(m.name)) return;
  const DType act = be.activation_dtype();
  Lcg rng;
  std::vector<std::unique_ptr<PreparedWeight>> owned;
  std::vector<const PreparedWeight*> gate, up, down;
  {
    const HostWeight gu = host_weight(m.i, m.h, DType::kUnknown, rng),
                     dn = host_weight(m.h, m.i, DType::kUnknown, rng);
    auto add = [&](const WeightSource& src, std::vector<const PreparedWeight*>& list) {
      owned.push_back(must(be.prepare_weight(src), "prepare_weight " + src.name));
      list.push_back(owned.back().get());
    };
    for (int e = 0; e < m.experts; ++e) {
      const std::string en = std::string(m.name) + " expert " + std::to_string(e);
      add(int4_source(en + " gate", gu), gate);
      add(int4_source(en + " up", gu), up);
      add(int4_source(en + " down", dn), down);
    }
    const Status ps = be.prepare_experts(gate.data(), up.data(), down.data(), m.experts);
    if (!ps.is_ok()) fail("prepare_experts " + std::string(m.name), ps);
  }
  reserve(be, o.moe_batches.back());
  std::printf("%-26s %4s %6s %9s %7s %9s %8s %7s  (goal: >= 60%% read)\n", "moe_experts (int4 g128)", "T",
              "E/top", "H/I", "experts", "us", "GB/s", "% read");
  const int64_t sets = o.quick ? 2 : kRouteSets, k = m.top_k;
  for (int64_t T : o.moe_batches) {
    std::vector<std::unique_ptr<DeviceBuffer>> keep;
    const Act logits = device_matrix(be, keep, DType::kF32, sets * T, m.experts, &rng, 4.0f);
    const Act weights = device_matrix(be, keep, DType::kF32, sets * T, k, nullptr);
    const Act ids = device_matrix(be, keep, DType::kI32, sets * T, k, nullptr);
    const Act x = device_matrix(be, keep, act, T, m.h, &rng),
              out = device_matrix(be, keep, act, T, m.h, nullptr);
    for (int64_t r = 0; r < sets; ++r)
      be.moe_route(logits.rows_view(r * T, T), m.top_k, true, ids.as<int32_t>() + r * T * k,
                   weights.rows_view(r * T, T));
    // Bytes each routing reads: the distinct experts' gate, up and down.
    std::vector<int32_t> host_ids(static_cast<size_t>(sets * T * k));
    be.download(host_ids.data(), ids.data, host_ids.size() * sizeof(int32_t));
    std::vector<double> set_bytes, set_experts;
    for (int64_t r = 0; r < sets; ++r) {
      std::vector<bool> seen(gate.size());
      double b = 0, n = 0;
      for (int64_t j = r * T * k; j < (r + 1) * T * k; ++j) {
        const auto e = static_cast<size_t>(host_ids[static_cast<size_t>(j)]);
        if (e >= seen.size() || seen[e]) continue;  // out of range: a router fault the experts column shows
        seen[e] = true;
        b += static_cast<double>(gate[e]->bytes + up[e]->bytes + down[e]->bytes);
        n += 1;
      }
      set_bytes.push_back(b);
      set_experts.push_back(n);
    }
    const double us = time_us(be, static_cast<int>(sets), o.repeats, [&](int i) {
      const int64_t r = i % sets;
      be.moe_experts(x, ids.as<int32_t>() + r * T * k, weights.rows_view(r * T, T), m.top_k, m.experts,
                     gate.data(), up.data(), down.data(), out);
    });
    double bytes = 0, experts = 0;
    for (int i = 0; i < o.repeats; ++i) bytes += set_bytes[i % sets], experts += set_experts[i % sets];
    const double gbs = bytes / o.repeats / (us * 1e3);
    std::printf("%-26s %4lld %3d/%-2d %4lld/%-4lld %7.1f %9.2f %8.1f %6.1f%%\n", m.name,
                static_cast<long long>(T), m.experts, m.top_k, static_cast<long long>(m.h),
                static_cast<long long>(m.i), experts / o.repeats, us, gbs,
                bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "bfloat16";
  Options o;
  // clang-format off
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) dtype = argv[++i];
    else if (a == "--repeats" && i + 1 < argc) o.repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--only" && i + 1 < argc) o.only = argv[++i];
    else if (a == "--quick") o.quick = true;
    else {
      std::fprintf(stderr, "usage: bench_gpu_gemm [--dtype bfloat16|float16] [--repeats N] [--only SUBSTRING] [--quick]\n");
      return 2;
    }
  }
  // clang-format on
  if (dtype != "bfloat16" && dtype != "float16") {
    std::fprintf(stderr, "bench_gpu_gemm: --dtype must be bfloat16 or float16\n");
    return 2;
  }
  if (o.quick) o.ms = o.moe_batches = {1, 4};
  o.warmup = std::min(o.quick ? 1 : 5, o.repeats);
  // Rows reach the log before an op that fails (op_fail ends the process) when stdout is a pipe.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto made = make_gpu_backend(0, {dtype == "float16" ? DType::kF16 : DType::kBF16});
  if (!made.is_ok()) fail("GPU backend", made.status());
  auto& be = static_cast<GpuBackend&>(**made);
  const double bw = read_bandwidth(be, o.quick ? 2 : 20, o.quick ? size_t{4} << 20 : size_t{4} << 30);
  std::printf("== bench_gpu_gemm on %s: read bandwidth %.0f GB/s%s ==\n", be.name().c_str(), bw / 1e9,
              o.quick ? " (--quick: cached sizes, timings meaningless)" : "");
  bench_linear(be, o, bw);
  bench_moe(be, o, bw);
  return 0;
}
