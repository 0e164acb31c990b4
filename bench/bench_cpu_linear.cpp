// CPU linear kernels alone: effective weight bandwidth (GB/s of packed weight bytes) and GFLOP/s of
// y = x W^T for each format at decode (m = 1) and small-batch / prefill (m = 16, 128) sizes, per ISA.
// Prints figures; asserts nothing.   usage: bench_cpu_linear [N K]   (default 8192 2048)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "deltaserve/backend/cpu_backend.h"
#include "deltaserve/core/timer.h"

int main(int argc, char** argv) {
  const int64_t N = argc > 2 ? std::atoll(argv[1]) : 8192, K = argc > 2 ? std::atoll(argv[2]) : 2048;
  std::mt19937 rng(1);
  std::vector<int32_t> qweight(static_cast<size_t>(K / 8 * N)), q8(static_cast<size_t>(K / 4 * N));
  for (auto& w : qweight) w = static_cast<int32_t>(rng());
  for (auto& w : q8) w = static_cast<int32_t>(rng());
  std::vector<uint16_t> scales(static_cast<size_t>(K / 32 * N), ds::f32_to_f16(0.01f)), bf(static_cast<size_t>(N * K));
  for (auto& b : bf) b = ds::f32_to_bf16(static_cast<float>(rng() % 1000) * 1e-4f);
  std::vector<float> x(static_cast<size_t>(128 * K), 0.5f), y(static_cast<size_t>(128 * N));
  for (ds::kernels::CpuIsa isa : {ds::kernels::CpuIsa::kAvx2, ds::kernels::CpuIsa::kAvx512}) {
    if (!ds::kernels::cpu_isa_supported(isa)) continue;
    ds::backend::CpuBackend be(isa);
    for (int fmt = 0; fmt < 3; ++fmt) {
      ds::backend::WeightSource s;
      s.name = "bench";
      s.n = N;
      s.k = K;
      if (fmt == 0) {
        s.weight_dtype = ds::DType::kBF16;
        s.weight = bf.data();
      } else {
        s.bits = fmt == 1 ? 4 : 8;
        s.group_size = 32;
        s.qweight = fmt == 1 ? qweight.data() : q8.data();
        s.scales = scales.data();
        s.scale_groups = K / 32;
      }
      auto w = be.prepare_weight(s);
      if (!w) return 1;
      for (int64_t m : {1, 16, 128}) {
        const int reps = m == 1 ? 20 : (m == 16 ? 4 : 1);
        be.linear(**w, ds::backend::Act{x.data(), ds::DType::kF32, m, K, K}, ds::backend::Act{y.data(), ds::DType::kF32, m, N, N});
        ds::Timer t;
        for (int r = 0; r < reps; ++r) be.linear(**w, ds::backend::Act{x.data(), ds::DType::kF32, m, K, K}, ds::backend::Act{y.data(), ds::DType::kF32, m, N, N});
        const double sec = t.seconds() / reps;
        std::printf("%-6s %-5s m=%-4lld %8.2f ms  weights %6.2f GB/s  %7.2f GFLOP/s\n", ds::kernels::cpu_isa_name(isa),
                    fmt == 0 ? "bf16" : (fmt == 1 ? "int4" : "int8"), static_cast<long long>(m), sec * 1e3,
                    static_cast<double>((*w)->bytes) / sec / 1e9, 2.0 * N * K * m / sec / 1e9);
      }
    }
  }
  return 0;
}
