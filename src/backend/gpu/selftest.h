// `deltaserve selftest`: every op of the GPU backend run on the device on random inputs of
// model-like shapes and compared with the CPU backend on the same inputs. The same cases give
// bench_gpu_ops its timings (bytes moved per op against a read kernel's bandwidth) and run in ctest
// on the emulated backend at small shapes.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "deltaserve/core/status.h"
#include "src/backend/gpu/gpu_backend.h"

namespace ds::backend::gpu {

struct SelftestRow {
  std::string op, shape;
  double max_err = 0, tol = 0;  // max |device - cpu| / max(1, max |cpu|) over the op's outputs
  double us = 0;                // device time per call (median of the timed repeats; 0 when not timed)
  double bytes = 0;             // bytes the op must read + write (the roofline counts these)
  bool ok = true;
};

struct SelftestOptions {
  bool small = false;    // shapes small enough for the emulator
  int timed_repeats = 0; // > 0: time each op that many times with device events
  std::string only;      // run the ops whose name contains this
  bool decode_bench = false;  // bench shapes: decode batch 64, attention at 32k context
};

// Runs every case on `dev` (activations of its activation dtype) against a CPU backend.
std::vector<SelftestRow> run_selftest(GpuBackend& dev, const SelftestOptions& options);

// The table, one row per case; returns the number of failing rows.
int print_selftest(const std::vector<SelftestRow>& rows, std::FILE* out);

}  // namespace ds::backend::gpu
