#!/usr/bin/env bash
# Configures and builds everything (library, ds CLI, Python module, tests) in one
# CMake build tree, so the C++ is compiled once. Usage: scripts/build.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PY=${PYTHON:-python3}
# ccache hits across checkouts in different folders (CI clones elsewhere).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$(command -v "$PY")" ${DS_CMAKE_ARGS:-}
fi
cmake --build "$BUILD" -j "$(nproc)"
