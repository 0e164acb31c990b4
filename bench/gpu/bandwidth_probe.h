// The roofline's denominator for the GPU benches (bench_gpu_ops, bench_gpu_gemm): the bytes/s a
// plain read kernel (kernels/gpu/bandwidth.cu) reaches on the backend's device in the same run.
#pragma once

#include <algorithm>
#include <cstddef>

#include "kernels/gpu/ops_bandwidth.h"
#include "src/backend/gpu/gpu_backend.h"

namespace ds::backend::gpu {

// Bytes/s of one full read of a buffer far larger than the last-level cache (up to max_bytes: a
// smoke run under emulation passes a few MiB, which a real device would serve from its cache).
inline double read_bandwidth(GpuBackend& be, int repeats, size_t max_bytes = size_t{4} << 30) {
  Runtime& rt = be.runtime();
  const DeviceInfo info = rt.query_memory().value();
  size_t bytes = std::min<size_t>(max_bytes, info.free_bytes / 4) & ~size_t{4095};
  bytes = std::max<size_t>(bytes, std::min<size_t>(max_bytes, size_t{64} << 20) & ~size_t{4095});
  auto buf = be.alloc(bytes, "bandwidth probe");
  auto out = be.alloc(4096 * sizeof(float), "bandwidth probe result");
  if (!buf.is_ok() || !out.is_ok()) return 0;
  be.fill_zero((*buf)->data(), bytes);
  const int blocks = std::max(1, info.multiprocessors) * 8;
  auto run = [&] {
    ds::gpu::launch_read_bandwidth((*buf)->data(), bytes, static_cast<float*>((*out)->data()),
                                   std::min(blocks, 4096), rt.stream());
  };
  run();
  be.synchronize();
  void* e0 = rt.event_record().value();
  for (int i = 0; i < repeats; ++i) run();
  void* e1 = rt.event_record().value();
  const double ms = rt.event_elapsed_ms(e0, e1).value();
  rt.event_destroy(e0);
  rt.event_destroy(e1);
  return ms > 0 ? static_cast<double>(bytes) * repeats / (ms * 1e-3) : 0;
}

}  // namespace ds::backend::gpu
