#!/usr/bin/env bash
# Serving throughput as `vllm bench serve` measures it: starts `deltaserve serve MODEL [serve flags]`
# on a free loopback port, waits for /health, runs bench/bench_serve.py (request and token throughput,
# TTFT / TPOT / ITL mean, median, p99) at each concurrency level, then stops the server. The same
# bench_serve.py command runs unchanged against `vllm serve`. On a GPU machine without the server's
# build dependencies, carry a deltaserve built elsewhere for that GPU and point DS_SERVE_BINARY at it
# (its libraries through LD_LIBRARY_PATH).
#   tools/serve_bench.sh MODEL [serve flags...]
# Environment: DS_SERVE_BINARY (default build/deltaserve), DS_TOKENIZER (a tokenizer directory, default
# the model's or build/tokenizers/qwen35), DS_BENCH_CONCURRENCY ("1 8 64"), DS_BENCH_INPUT (256 words),
# DS_BENCH_OUTPUT (128 tokens), DS_BENCH_PROMPTS (default: bench_serve.py's), DS_BENCH_JSON (a file).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: tools/serve_bench.sh MODEL [serve flags...]"; exit 2; }
model=$1
shift
bin=${DS_SERVE_BINARY:-build/deltaserve}
tok=${DS_TOKENIZER:-}
if [ -z "$tok" ] && [ ! -f "$model/tokenizer.json" ] && [ -f build/tokenizers/qwen35/tokenizer.json ]; then
  tok=build/tokenizers/qwen35
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/serve_bench.XXXXXX.log)
args=("$model" --host 127.0.0.1 --port "$port")
[ -n "$tok" ] && args+=(--tokenizer "$tok")
"$bin" serve "${args[@]}" "$@" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "serve_bench: the server exited:"; tail -30 "$log"; exit 1
  fi
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "serve_bench: not healthy after 600 s"; tail -30 "$log"; exit 1; }
grep -E "Memory profiling|KV cache size|decode graphs|Decode graphs|Loaded" "$log" || true
bench=(--base-url "http://127.0.0.1:$port" --concurrency ${DS_BENCH_CONCURRENCY:-1 8 64}
       --input-len "${DS_BENCH_INPUT:-256}" --output-len "${DS_BENCH_OUTPUT:-128}")
[ -n "${DS_BENCH_PROMPTS:-}" ] && bench+=(--num-prompts "$DS_BENCH_PROMPTS")
[ -n "${DS_BENCH_JSON:-}" ] && bench+=(--json "$DS_BENCH_JSON")
python3 bench/bench_serve.py "${bench[@]}"
# Tensor-parallel runs: rank 0's periodic share of step time spent in collectives.
grep -h "tensor parallel (" "$log" | tail -3 || true
