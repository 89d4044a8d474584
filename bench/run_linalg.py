#!/usr/bin/env python3
"""Issue 2's linear-algebra figures, side by side in one run.

Runs build/ds_bench_linalg (ours) and, on the same cases and thread count,
numpy (matmul) and PyTorch CPU (conv2d forward, backward-data and
backward-weight through aten.convolution_backward; the Fashion-MNIST CNN's max
pools and first linear layer). Ours and the peer are two long-lived processes
that time one case per request, alternating case by case for several rounds;
each side's median is kept. Prints `case | ours | peer | ratio | ours/peak` and
writes bench/results/linalg.json.

  cmake -B build -DDS_BUILD_BENCH=ON && ninja -C build ds_bench_linalg
  python3 bench/run_linalg.py [--build build] [--threads 2] [--rounds 3] [--quick]
      [--peer-python /usr/bin/python3] [--isa avx2]

The peer runs under /usr/bin/python3 by default (Debian's python3-torch and
python3-numpy). --isa avx2 holds both sides to AVX2+FMA kernels, to stand in for
the AVX2 development machine on a larger host.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _sidebyside import (PEER_TIMING, add_binary_and_peer_args, in_turn, machine,
                         median, peer_versions, thread_env, write_json)

ROOT = Path(__file__).resolve().parent.parent

PEER = PEER_TIMING + r"""
import json, sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
budget = float(sys.argv[2])

def timed(fn):
    return median_seconds(fn, budget)

def time_case(c):
    if c["kind"] == "matmul":
        n = c["n"]
        a = np.random.rand(n, n).astype(np.float32)
        b = np.random.rand(n, n).astype(np.float32)
        return timed(lambda: a @ b)
    if c["kind"] == "linear":
        x, w, b = torch.rand(c["n"], c["in"]), torch.rand(c["out"], c["in"]), torch.rand(c["out"])
        with torch.no_grad():
            return timed(lambda: torch.nn.functional.linear(x, w, b))
    x = torch.rand(c["n"], c["c"], c["h"], c["w"]) * 2 - 1
    if c["kind"].startswith("maxpool"):
        with torch.no_grad():
            y, idx = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
            if c["kind"] == "maxpool_fwd":
                return timed(lambda: torch.nn.functional.max_pool2d(x, 2))
            # PyTorch keeps the argmax from the forward; ours recomputes it.
            return timed(lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                y, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx))
    w = torch.rand(c["o"], c["c"], c["k"], c["k"]) * 2 - 1
    pad = [c["pad"], c["pad"]]
    with torch.no_grad():
        if c["kind"] == "conv_fwd":
            return timed(lambda: torch.nn.functional.conv2d(x, w, padding=pad))
        gy = torch.nn.functional.conv2d(x, w, padding=pad)
        mask = [True, False, False] if c["kind"] == "conv_bwd_data" else [False, True, False]
        return timed(lambda: torch.ops.aten.convolution_backward(
            gy, x, w, None, [1, 1], pad, [1, 1], False, [0, 0], 1, mask))

print("ready", flush=True)
for line in sys.stdin:
    print(time_case(json.loads(line)), flush=True)
"""


def bench_env(threads, isa=None):
    env = dict(os.environ)
    # BENCHMARKS.md: drop the machine-wide OpenBLAS core override while timing.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if isa == "avx2":
        # Both sides limited to AVX2+FMA kernels, to stand in for the AVX2 development
        # machine on a larger (quieter) AVX-512 host.
        env.update({"DNNL_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                    "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    return thread_env(threads, env)


class Server:
    """A benchmark process that times one case per request line (ours or the peer)."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def time(self, request):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            sys.exit(f"benchmark process {self.proc.args[0]} exited (code {self.proc.wait()})")
        return float(reply)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def flops(c):
    if c["kind"] == "matmul":
        return 2.0 * c["n"] ** 3
    if c["kind"] == "linear":
        return 2.0 * c["n"] * c["in"] * c["out"]
    if c["kind"].startswith("maxpool"):
        return None  # memory-bound: no FLOP figure
    oh = c["h"] + 2 * c["pad"] - c["k"] + 1
    ow = c["w"] + 2 * c["pad"] - c["k"] + 1
    # Forward, backward-data and backward-weight each do the same multiply-adds.
    return 2.0 * c["n"] * c["o"] * oh * ow * c["c"] * c["k"] * c["k"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_binary_and_peer_args(ap)
    ap.add_argument("--isa", choices=["avx2"], help="limit both sides' kernels to this ISA")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "linalg.json"))
    args = ap.parse_args()
    binary = Path(args.build) / "ds_bench_linalg"
    if not binary.exists():
        sys.exit(f"{binary} not found: configure with -DDS_BUILD_BENCH=ON and build ds_bench_linalg")

    env = bench_env(args.threads, args.isa)
    listing = json.loads(subprocess.run([str(binary), "--list"], env=env, capture_output=True,
                                        text=True, check=True).stdout)
    cases = listing["cases"]
    budget = "0.2" if args.quick else "1.0"
    ours = Server([str(binary), "--serve", budget], env)
    peer = Server([args.peer_python, "-c", PEER, str(args.threads), budget], env)
    if peer.proc.stdout.readline().strip() != "ready":
        sys.exit("the peer (numpy + torch) did not start")
    # Ours and the peer alternate case by case (and swap order every round), so both
    # see the same machine state.
    ours_runs = [[] for _ in cases]
    peer_runs = [[] for _ in cases]
    for r in range(args.rounds):
        for i, c in enumerate(cases):
            order = [("ours", lambda: ours.time(str(i))), ("peer", lambda: peer.time(json.dumps(c)))]
            for side, run in in_turn(order, r):
                (ours_runs if side == "ours" else peer_runs)[i].append(run())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    ours.close()
    peer.close()
    peak = listing["peak_gflops"]
    rows = []
    for i, c in enumerate(cases):
        ours_s = median(ours_runs[i])
        peer_s = median(peer_runs[i])
        f = flops(c)
        row = {"case": c["name"], "kind": c["kind"], "params": c, "ours_seconds": ours_s,
               "peer_seconds": peer_s,
               "peer": "numpy" if c["kind"] == "matmul" else "pytorch",
               # Throughput ratio: > 1 means ours is faster.
               "ratio": peer_s / ours_s}
        if f is not None:
            row.update({"ours_gflops": f / ours_s / 1e9, "peer_gflops": f / peer_s / 1e9,
                        "ours_fraction_of_peak": f / ours_s / 1e9 / peak})
        rows.append(row)

    print(f"{'case':40} | {'ours':>14} | {'peer':>20} | {'ratio':>6} | ours/peak")
    for r in rows:
        if r["kind"] == "matmul":
            ours = f"{r['ours_gflops']:.1f} GFLOP/s"
            peer = f"{r['peer_gflops']:.1f} GFLOP/s numpy"
        else:
            ours = f"{r['ours_seconds'] * 1e3:.2f} ms"
            peer = f"{r['peer_seconds'] * 1e3:.2f} ms torch"
        frac = r.get("ours_fraction_of_peak")
        print(f"{r['case']:40} | {ours:>14} | {peer:>20} | {r['ratio']:6.2f} | "
              f"{'-' if frac is None else f'{frac:.0%}'}")
    print(f"peak (FMA, {args.threads} threads): {peak:.1f} GFLOP/s")

    result = {"machine": machine(), "peers": peer_versions(args.peer_python),
              "isa_limit": args.isa, "threads": args.threads, "rounds": args.rounds, "peak_gflops": peak,
              "ratio_meaning": "peer time / our time (> 1: ours faster)", "cases": rows}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
