#!/usr/bin/env bash
# Fused CUDA kernels (generated regions, row kernels, flash attention) next to
# PyTorch on the GPU machine. Run from the repo root after scripts/gpu-run built
# the library; env B = its bin dir (build-gpu, or .gpu/bundle/bin), OUT = logs.
#   bash bench/gpu/fused_bench.sh     (DS_TORCH_COMPILE=1 adds torch.compile's fused chain)
set -uo pipefail
B=${B:-build-gpu}
OUT=${OUT:-$PWD/gpu-run-out}
mkdir -p "$OUT"
LIB=$B
[ -e "$LIB/libdeepseek.so" ] || [ -e "$LIB/libdeepseek.so.0" ] || LIB=$B/../lib
LINK=$LIB/libdeepseek.so
[ -e "$LINK" ] || LINK=$LIB/libdeepseek.so.0  # the bundle keeps the versioned name only
c++ -std=c++20 -O2 bench/cpp/bench_cuda_fused.cpp -Iinclude -Isrc "$LINK" \
  "-Wl,-rpath,$(cd "$LIB" && pwd)" -o "$OUT/ds_bench_cuda_fused" >"$OUT/bench_fused_build.log" 2>&1 \
  || { tail -20 "$OUT/bench_fused_build.log"; exit 1; }
timeout 50 "$OUT/ds_bench_cuda_fused" >"$OUT/bench_fused_ds.txt" 2>&1
echo "ds rc=$?"
timeout 50 python3 bench/gpu/torch_fused_cases.py >"$OUT/bench_fused_torch.txt" 2>&1
echo "torch rc=$?"
grep '^#' "$OUT/bench_fused_ds.txt"
echo "== fused kernels: ds vs PyTorch (median ms; ratio = torch_ms / ds_ms, >1: ds faster)"
awk 'NR==FNR { if ($1 !~ /^#/) torch[$1] = $2; next }
     !/^#/ && $4 > 0 { printf "  %-32s ds %9.4f  torch %9s  ratio %6s  ds %8.1f TFLOP/s %8.1f GB/s\n",
       $1, $4, ($1 in torch) ? torch[$1] : "-", ($1 in torch) ? sprintf("%.2f", torch[$1] / $4) : "-", $5, $6 }' \
  "$OUT/bench_fused_torch.txt" "$OUT/bench_fused_ds.txt"
grep -v '^[a-z]' "$OUT/bench_fused_torch.txt" | head -5
