#!/usr/bin/env bash
# Tensor parallelism on CPU ranks: serves the same checkpoint at -tp 1 and -tp 2 (two MPI ranks of
# one core each on a 2-core machine, against one process with both cores) and prints what
# `vllm bench serve` reports for each (TTFT: prefill; TPOT and output tokens/s: decode), then rank 0's
# share of step time spent in collectives. The per-call all-reduce time is bench_allreduce's.
#   bench/tp_cpu.sh [MODEL]    default: a synthetic Qwen3.5-35B-A3B-shaped int4 checkpoint, 4 layers,
#                              written once to build/synthetic-35b-a3b-4l
# Environment: as tools/serve_bench.sh (DS_BENCH_CONCURRENCY default "1 4", DS_BENCH_INPUT 128,
# DS_BENCH_OUTPUT 32, DS_BENCH_PROMPTS 8).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-build/synthetic-35b-a3b-4l}
if [ $# -eq 0 ] && [ ! -f "$model/config.json" ]; then
  python3 bench/make_synthetic_qwen35.py "$model" --preset 35b-a3b-int4 --layers 4
fi
export DS_BENCH_CONCURRENCY=${DS_BENCH_CONCURRENCY:-1 4} DS_BENCH_INPUT=${DS_BENCH_INPUT:-128}
export DS_BENCH_OUTPUT=${DS_BENCH_OUTPUT:-32} DS_BENCH_PROMPTS=${DS_BENCH_PROMPTS:-8}
for tp in 1 2; do
  echo "=== --tensor-parallel-size $tp ==="
  tools/serve_bench.sh "$model" -tp "$tp" --max-model-len 1024 --max-num-seqs 8 --kv-cache-memory-bytes 1G
done
