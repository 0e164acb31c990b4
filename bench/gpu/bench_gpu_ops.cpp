// bench_gpu_ops: every GPU op at decode batch 64 (attention: 8 sequences at 32k context) and at a
// 300-token prefill, on Qwen3.5-35B-A3B shapes, timed with device events; each op's bytes/s as a
// fraction of the read bandwidth a plain read kernel reaches in the same run (the roofline).
// --selftest first runs the selftest (the device check's correctness half) and fails on a mismatch.
//
//   bench_gpu_ops [--dtype bfloat16|float16|float32] [--repeats N] [--only OP] [--selftest]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/gpu/bandwidth_probe.h"
#include "src/backend/gpu/gpu_backend.h"
#include "src/backend/gpu/selftest.h"

using namespace ds;
using namespace ds::backend::gpu;

int main(int argc, char** argv) {
  std::string dtype = "bfloat16", only;
  int repeats = 50;
  bool selftest = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dtype" && i + 1 < argc) dtype = argv[++i];
    else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--selftest") selftest = true;
    else {
      std::fprintf(stderr, "usage: bench_gpu_ops [--dtype bfloat16|float16|float32] [--repeats N] [--only OP] [--selftest]\n");
      return 2;
    }
  }
  const DType dt = dtype == "float32" ? DType::kF32 : dtype == "float16" ? DType::kF16 : DType::kBF16;
  auto made = make_gpu_backend(0, {dt});
  if (!made.is_ok()) {
    std::fprintf(stderr, "bench_gpu_ops: %s\n", made.status().message().c_str());
    return 1;
  }
  auto& be = static_cast<GpuBackend&>(**made);
  int failed = 0;
  if (selftest) {
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      auto st = make_gpu_backend(0, {t});
      if (!st.is_ok()) return 1;
      SelftestOptions so;
      so.only = only;
      so.timed_repeats = 5;
      std::printf("== selftest, %s activations ==\n", dtype_name(t));
      failed += print_selftest(run_selftest(static_cast<GpuBackend&>(**st), so), stdout);
    }
  }
  const double bw = read_bandwidth(be, 20);
  std::printf("== bench_gpu_ops on %s: read bandwidth %.0f GB/s ==\n", be.name().c_str(), bw / 1e9);
  SelftestOptions bo;
  bo.only = only;
  bo.timed_repeats = repeats;
  bo.decode_bench = true;
  const auto rows = run_selftest(be, bo);
  std::printf("%-22s %-34s %10s %10s %8s\n", "op", "shape", "us", "GB/s", "% read");
  for (const auto& r : rows) {
    const double gbs = r.us > 0 ? r.bytes / (r.us * 1e3) : 0.0;
    std::printf("%-22s %-34s %10.2f %10.1f %7.1f%%\n", r.op.c_str(), r.shape.c_str(), r.us, gbs,
                bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0);
  }
  if (failed > 0) std::fprintf(stderr, "bench_gpu_ops: %d selftest case(s) FAILED\n", failed);
  return failed > 0 ? 1 : 0;
}
