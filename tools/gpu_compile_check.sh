#!/usr/bin/env bash
# The GPU compile matrix (DESIGN.md §4.4): builds the whole CUDA backend library (kernels for sm_80,
# sm_90a, sm_121 with nvcc; runtime, staging, cuBLASLt and backend sources with the host compiler) and
# the deltaserve binary linked with it, and the whole HIP backend library for gfx908, gfx90a with
# hipcc. Nothing runs: no GPU here. A missing toolchain is reported and skipped unless
# DS_REQUIRE_GPU_TOOLCHAINS=1. Builds use -j${DS_JOBS:-2} (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
require=${DS_REQUIRE_GPU_TOOLCHAINS:-0}
jobs=${DS_JOBS:-2}

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
  if cmake -S . -B build-gpu-cuda -G Ninja -DDS_CUDA=ON -DDS_BUILD_TESTS=OFF -DDS_WERROR=ON >build-gpu-cuda.log 2>&1 &&
     cmake --build build-gpu-cuda -j"$jobs" --target ds_backend_cuda deltaserve bench_gpu_ops_cuda bench_gpu_gemm_cuda bench_gpu_decode_cuda gpu_fidelity_cuda nccl_one_rank >>build-gpu-cuda.log 2>&1; then
    echo "gpu-compile: CUDA sm_80 sm_90a sm_121 ok (ds_backend_cuda, deltaserve, bench_gpu_ops, bench_gpu_gemm, bench_gpu_decode, gpu_fidelity, nccl_one_rank)"
  else
    echo "gpu-compile: CUDA FAILED (see build-gpu-cuda.log)"; tail -20 build-gpu-cuda.log; status=1
  fi
else
  echo "gpu-compile: nvcc not found, CUDA skipped"; [ "$require" = 1 ] && status=1
fi

if command -v hipcc >/dev/null 2>&1; then
  if cmake -S . -B build-gpu-hip -G Ninja -DDS_HIP=ON -DDS_BUILD_TESTS=OFF -DDS_WERROR=ON >build-gpu-hip.log 2>&1 &&
     cmake --build build-gpu-hip -j"$jobs" --target ds_backend_hip >>build-gpu-hip.log 2>&1; then
    echo "gpu-compile: HIP gfx908 gfx90a ok (ds_backend_hip)"
  else
    echo "gpu-compile: HIP FAILED (see build-gpu-hip.log)"; tail -20 build-gpu-hip.log; status=1
  fi
else
  echo "gpu-compile: hipcc not found, HIP skipped"; [ "$require" = 1 ] && status=1
fi
exit $status
