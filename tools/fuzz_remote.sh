#!/usr/bin/env bash
# Runs prebuilt fuzzers on another Linux machine, every target at once on all cores.
#
#   fuzz_remote.sh [seconds_per_target] [bundle_dir]
#
# bundle_dir is what `tools/fuzz.sh 0` assembles in build-fuzz/fuzz-bundle/ (bin/, seeds/, dicts/,
# data/, this script); it defaults to the folder this script is in. The binaries link the C++
# runtime and PCRE2 statically and need only glibc. Cores are split evenly over the targets
# (-fork=N each); corpora grow in bundle_dir/corpus/<target>, findings land in
# bundle_dir/artifacts/<target>/. Prints one row per target: executions, crashes, timeouts.
set -uo pipefail
SECS=${1:-3600}
DIR=$(cd "${2:-$(dirname "$0")}" && pwd)
CORES=$(nproc)
mapfile -t TARGETS < <(ls "$DIR/bin" | grep '^fuzz_' | sort)
N=${#TARGETS[@]}
[ "$N" -gt 0 ] || { echo "no fuzz_* binaries in $DIR/bin"; exit 1; }
FORKS=$(( CORES / N )); [ "$FORKS" -lt 1 ] && FORKS=1
export DS_FUZZ_DATA="$DIR/data"
echo "$N targets x $FORKS jobs on $CORES cores, ${SECS}s each"
pids=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$DIR/corpus/$t" "$DIR/artifacts/$t" "$DIR/logs"
  dict=()
  [ -f "$DIR/dicts/$t.dict" ] && dict=(-dict="$DIR/dicts/$t.dict")
  seeds=()
  [ -d "$DIR/seeds/$t" ] && seeds=("$DIR/seeds/$t")
  "$DIR/bin/$t" -fork="$FORKS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$SECS" \
    -timeout=10 -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="$DIR/artifacts/$t/" "${dict[@]}" \
    "$DIR/corpus/$t" "${seeds[@]}" >"$DIR/logs/$t.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
printf '%-22s %8s %14s %8s %8s %8s\n' target seconds executions crashes timeouts corpus
for t in "${TARGETS[@]}"; do
  execs=$(grep -oE '^#[0-9]+' "$DIR/logs/$t.log" | tail -1 | tr -d '#')
  crashes=$(find "$DIR/artifacts/$t" -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' | wc -l)
  timeouts=$(find "$DIR/artifacts/$t" -name 'timeout-*' -o -name 'slow-unit-*' | wc -l)
  corpus=$(ls "$DIR/corpus/$t" | wc -l)
  printf '%-22s %8s %14s %8s %8s %8s\n' "$t" "$SECS" "${execs:-0}" "$crashes" "$timeouts" "$corpus"
done
