#!/usr/bin/env bash
# Installs what is missing, builds every target, and runs every test: the GoogleTest suites (ctest)
# and the Python end-to-end / differential suites (pytest, in build/venv). This is the README's test
# command; .ci/run calls it. Test data lives in tests/data (DS_SHARED_DATA=DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
DS_WITH_HIPCC=1 tools/setup.sh all
DS_REQUIRE_GPU_TOOLCHAINS=${CI:+1} tools/gpu_compile_check.sh
export DS_BUILD_DIR="$PWD/build"
PYTHON=python3
[ -x build/venv/bin/python ] && PYTHON="$PWD/build/venv/bin/python"
(cd build && ctest -j "$(nproc)" --output-on-failure --timeout 900)
if compgen -G "tests/py/test_*.py" >/dev/null; then
  "$PYTHON" -m pytest -q tests/py
fi
