#!/usr/bin/env bash
# Fuzzes every target in fuzz/ with libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   tools/fuzz.sh [seconds_per_target] [target ...]     (default 60 s, all targets)
#
# Builds with clang into build-fuzz/ (-DDS_FUZZ=ON), then runs the targets one after another, each
# for the given time, growing build-fuzz/fuzz-corpus/<target> from the seeds in fuzz/corpus and the
# saved crashes in fuzz/regressions. Findings (crash-*, timeout-*, oom-*, leak-*) land in
# build-fuzz/fuzz-artifacts/<target>/; a run continues past them (-fork=1 -ignore_crashes=1).
# Seconds 0 only builds. It also assembles build-fuzz/fuzz-bundle/ (static-ish binaries, data,
# seeds, tools/fuzz_remote.sh) to copy to another Linux machine and run there on all cores.
#
# Environment: DS_FUZZ_JOBS (build parallelism, default nproc), DS_FUZZ_NICE (default 19),
# DS_FUZZ_FORKS (parallel fuzzing jobs per target, default 1), DS_FUZZ_BUILD (default build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
BUILD=${DS_FUZZ_BUILD:-build-fuzz}
JOBS=${DS_FUZZ_JOBS:-$(nproc)}
NICE=${DS_FUZZ_NICE:-19}
FORKS=${DS_FUZZ_FORKS:-1}
ALL=(fuzz_request_schema fuzz_jinja fuzz_tokenizer fuzz_output_parser fuzz_safetensors fuzz_model_config)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")

SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -gline-tables-only"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DDS_FUZZ=ON -DDS_BUILD_TESTS=OFF -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" >/dev/null
nice -n "$NICE" ninja -C "$BUILD" -j"$JOBS" "${ALL[@]}"

# The bundle for tools/fuzz_remote.sh.
B="$BUILD/fuzz-bundle"
mkdir -p "$B/bin" "$B/data" "$B/seeds" "$B/dicts"
for t in "${ALL[@]}"; do
  cp -f "$BUILD/fuzz/$t" "$B/bin/"
  mkdir -p "$B/seeds/$t"
  cp -f fuzz/corpus/"$t"/* "$B/seeds/$t/"
  cp -f fuzz/regressions/"$t"/* "$B/seeds/$t/" 2>/dev/null || true
done
cp -f fuzz/dicts/*.dict "$B/dicts/"
cp -f tests/data/qwen35-templates/qwen3.5_official_chat_template.jinja "$B/data/"
TOK=${DS_QWEN35_TOKENIZER:-build/tokenizers/qwen35/tokenizer.json}
[ -f "$TOK" ] && cp -f "$TOK" "$B/data/qwen35_tokenizer.json" || echo "note: $TOK missing; the bundle has no tokenizer (tools/setup.sh builds it)"
cp -f tools/fuzz_remote.sh "$B/"
[ "$SECS" = 0 ] && { echo "built $BUILD; bundle in $B"; exit 0; }

printf '%-22s %8s %12s %8s %8s\n' target seconds executions crashes timeouts > "$BUILD/fuzz-summary.txt"
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/fuzz-corpus/$t" art="$BUILD/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$art"
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
  log="$BUILD/fuzz-logs/$t.log"
  mkdir -p "$(dirname "$log")"
  echo "== $t: ${SECS}s"
  nice -n "$NICE" "$BUILD/fuzz/$t" -fork="$FORKS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="$art/" \
    "${dict[@]}" "$corpus" "fuzz/corpus/$t" "fuzz/regressions/$t" >"$log" 2>&1 || true
  execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  crashes=$(find "$art" -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' | wc -l)
  timeouts=$(find "$art" -name 'timeout-*' -o -name 'slow-unit-*' | wc -l)
  printf '%-22s %8s %12s %8s %8s\n' "$t" "$SECS" "${execs:-0}" "$crashes" "$timeouts" | tee -a "$BUILD/fuzz-summary.txt"
done
echo "summary: $BUILD/fuzz-summary.txt; findings: $BUILD/fuzz-artifacts/<target>/ (add each as fuzz/regressions/<target>/<name>)"
