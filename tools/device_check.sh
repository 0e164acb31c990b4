#!/usr/bin/env bash
# The device check (DESIGN.md §4.6): one command for a GPU machine, about 9 minutes (fewer with
# DS_BENCH_LAYERS=4). Builds the GPU backend for the GPU it finds (CUDA: that card's sm only; ROCm:
# its gfx) without the server's dependencies (DS_KERNELS_ONLY), then runs, in order:
#  1. the selftest (every op against the CPU backend in fp32, bf16 and fp16 activations) and
#     bench_gpu_ops (each op's bytes/s against a read kernel); on CUDA, nccl_one_rank (the NCCL
#     communicator's collectives on this GPU as one rank);
#  2. bench_gpu_gemm with bf16 and fp16 activations (the 4-bit GEMM and MoE experts against the
#     dense GEMM and the read kernel);
#  3. gpu_fidelity: every fixture in bf16 and fp16 against the CPU runtime (max |dlogit|, greedy
#     continuations, batching and chunking invariance, WikiText-2 perplexity);
#  4. bench/make_synthetic_qwen35.py writes a Qwen3.5-35B-A3B-shaped GPTQ int4 checkpoint (random
#     weights) of DS_BENCH_LAYERS layers (default 8 of the real 40: about 6.5 GB, a minute to write
#     and load) into build-device/, and bench_gpu_decode runs it with bf16 activations (decode
#     tokens/s at batch 1, 8, 64 on captured graphs and prefill, against the bytes roofline);
#  5. with DS_SERVE_BINARY (a deltaserve built elsewhere for this GPU, its libraries on
#     LD_LIBRARY_PATH, build/tokenizers carried with it), tools/serve_bench.sh serves that checkpoint
#     and prints vllm bench serve's figures at concurrency 1, 8, 64.
# Exit status: non-zero when a selftest case or a fidelity row fails or a bench does not finish.
# The arguments go to bench_gpu_ops only.
#   [DS_BENCH_LAYERS=N] [DS_SERVE_BINARY=PATH] tools/device_check.sh [--only OP] [--repeats N]
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
if [ "$gpu" = cuda ]; then
  cmake --build build-device --target nccl_one_rank -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
  build-device/nccl_one_rank 2>&1 | tee "$out/nccl.txt" || status=$?
fi
cmake --build build-device --target "bench_gpu_gemm_$gpu" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
for dtype in bfloat16 float16; do
  build-device/bench_gpu_gemm --dtype "$dtype" 2>&1 | tee "$out/bench_gemm_$dtype.txt" || status=$?
done
cmake --build build-device --target "gpu_fidelity_$gpu" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
build-device/gpu_fidelity 2>&1 | tee "$out/fidelity.txt" || status=$?
cmake --build build-device --target "bench_gpu_decode_$gpu" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
layers=${DS_BENCH_LAYERS:-8}
model=build-device/synthetic-35b-a3b-int4-L$layers
start=$(date +%s)
[ -f "$model/config.json" ] ||
  python3 bench/make_synthetic_qwen35.py "$model" --preset 35b-a3b-int4 --layers "$layers" || exit 1
echo "device_check: synthetic checkpoint in $(( $(date +%s) - start )) s"
build-device/bench_gpu_decode "$model" --dtype bfloat16 2>&1 | tee "$out/bench_decode.txt" || status=$?
if [ -n "${DS_SERVE_BINARY:-}" ]; then
  # A deltaserve built elsewhere for this GPU (the server's dependencies are not on this machine):
  # vllm bench serve's figures at concurrency 1, 8, 64 on the same synthetic checkpoint.
  tools/serve_bench.sh "$model" --max-model-len 4096 2>&1 | tee "$out/bench_serve.txt" || status=$?
fi
exit $status
