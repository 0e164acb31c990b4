#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the GoogleTest suites (ctest) and the
# Python end-to-end / differential suites (pytest). This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
DS_WITH_HIPCC=1 tools/setup.sh
DS_REQUIRE_GPU_TOOLCHAINS=${CI:+1} tools/gpu_compile_check.sh
export DS_BUILD_DIR="$PWD/build"
(cd build && ctest -j "$(nproc)" --output-on-failure --timeout 900)
if compgen -G "tests/py/test_*.py" >/dev/null; then
  python3 -m pytest -q tests/py
fi
