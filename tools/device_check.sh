#!/usr/bin/env bash
# The device check (DESIGN.md §4.6): one command for a GPU machine, under 8 minutes. Builds the GPU
# backend for the GPU it finds (CUDA: that card's sm only; ROCm: its gfx) without the server's
# dependencies (DS_KERNELS_ONLY), runs the selftest (every op against the CPU backend in fp32,
# bf16 and fp16 activations) and bench_gpu_ops (each op's bytes/s against a read kernel), then
# bench_gpu_gemm with bf16 and fp16 activations (the 4-bit GEMM and MoE experts against the dense
# GEMM and the read kernel). Last, bench/make_synthetic_qwen35.py writes a Qwen3.5-35B-A3B-shaped
# GPTQ int4 checkpoint (random weights) of DS_BENCH_LAYERS layers (default 8 of the real 40: about
# 6.5 GB, a minute to write and load) into build-device/, and bench_gpu_decode runs it with bf16
# activations (decode tokens/s at batch 1, 8, 64 and prefill, against the bytes roofline); its
# table is printed last. Exit status: non-zero when a selftest case fails or bench_gpu_gemm or
# bench_gpu_decode does not finish. The arguments go to bench_gpu_ops only.
#   [DS_BENCH_LAYERS=N] tools/device_check.sh [--only OP] [--repeats N]
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
out=${OUT:-build-device}
mkdir -p "$out"
jobs=$(nproc)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  export PATH="$PATH:/usr/local/cuda/bin"
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  arch="${cap}-real"
  [ "$cap" = 90 ] && arch="90a-real"
  echo "device_check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1), sm_$cap"
  cmake -S . -B build-device -G Ninja -DDS_CUDA=ON -DDS_KERNELS_ONLY=ON -DDS_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$out/configure.log" 2>&1 ||
    { tail -30 "$out/configure.log"; exit 1; }
  gpu=cuda
elif command -v rocminfo >/dev/null 2>&1; then
  gfx=$(rocminfo | grep -o 'gfx[0-9a-f]*' | head -1)
  echo "device_check: ROCm $gfx"
  cmake -S . -B build-device -G Ninja -DDS_HIP=ON -DDS_KERNELS_ONLY=ON -DDS_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release -DDS_HIP_ARCHS="$gfx" >"$out/configure.log" 2>&1 ||
    { tail -30 "$out/configure.log"; exit 1; }
  gpu=hip
else
  echo "device_check: no GPU found (nvidia-smi / rocminfo)"; exit 1
fi
start=$(date +%s)
cmake --build build-device --target "bench_gpu_ops_$gpu" -j "$jobs" >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
echo "device_check: built in $(( $(date +%s) - start )) s"
status=0
build-device/bench_gpu_ops --selftest "${args[@]}" 2>&1 | tee "$out/bench.txt" || status=$?
cmake --build build-device --target "bench_gpu_gemm_$gpu" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
for dtype in bfloat16 float16; do
  build-device/bench_gpu_gemm --dtype "$dtype" 2>&1 | tee "$out/bench_gemm_$dtype.txt" || status=$?
done
cmake --build build-device --target "bench_gpu_decode_$gpu" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
layers=${DS_BENCH_LAYERS:-8}
model=build-device/synthetic-35b-a3b-int4-L$layers
start=$(date +%s)
[ -f "$model/config.json" ] ||
  python3 bench/make_synthetic_qwen35.py "$model" --preset 35b-a3b-int4 --layers "$layers" || exit 1
echo "device_check: synthetic checkpoint in $(( $(date +%s) - start )) s"
build-device/bench_gpu_decode "$model" --dtype bfloat16 2>&1 | tee "$out/bench_decode.txt" || status=$?
exit $status
