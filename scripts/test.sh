#!/usr/bin/env bash
# Sets up, builds and runs every test: GoogleTest (via CTest), pytest, and the
# find_package(deepseek) consumer example. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
# ctest runs the C++ suites and pytest (registered as a CTest test).
(cd build && ctest --output-on-failure -j 2 --timeout 900)
# Install into a prefix and build the example consumer with find_package(deepseek).
cmake --install build --prefix build/install >/dev/null
cmake -S examples/cmake_consumer -B build/consumer -G Ninja \
  -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/consumer >/dev/null
LD_LIBRARY_PATH="$PWD/build/install/lib" ./build/consumer/consumer
echo "all tests passed"
