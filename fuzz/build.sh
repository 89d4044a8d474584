#!/bin/sh
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/, linking
# the ds library of an existing build (default: build/). Then run, e.g.:
#   ./build-fuzz/fuzz_infer_request -max_total_time=60 fuzz/corpus/infer_request
set -e
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-build}")
mkdir -p build-fuzz
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
  fuzz/fuzz_infer_request.cpp src/serve/infer_json.cpp \
  -L"$BUILD" -ldeepseek -Wl,-rpath,"$BUILD" -o build-fuzz/fuzz_infer_request
echo "built build-fuzz/fuzz_infer_request"
