#!/usr/bin/env python3
"""Issue 2's reduction figures, side by side in one run.

Runs build/ds_bench_reduce (ours) and, on the same cases and thread count, the
peer: numpy for sum/mean/max/min, PyTorch CPU for softmax, log_softmax and
layer_norm, numpy for rms_norm (torch 1.13 has none). Ours and the peer
alternate for several rounds; each side keeps its median. Prints `case | ours |
peer | ratio | ours/roofline` (roofline: a parallel streaming read of the input)
and writes bench/results/reduce.json.

  cmake -B build -DDS_BUILD_BENCH=ON && ninja -C build ds_bench_reduce
  python3 bench/run_reduce.py [--build build] [--threads 2] [--rounds 3] [--quick]

The peer runs under /usr/bin/python3 (Debian's python3-torch and python3-numpy).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from _sidebyside import (PEER_TIMING, add_binary_and_peer_args, machine, median,
                         peer_versions, thread_env, write_json)

ROOT = Path(__file__).resolve().parent.parent

PEER = PEER_TIMING + r"""
import json, sys
import numpy as np
import torch
args = json.load(sys.stdin)
torch.set_num_threads(args["threads"])
budget = args["budget"]

def timed(fn):
    return median_seconds(fn, budget)

rng = np.random.default_rng(1)
flat = rng.uniform(-1, 1, 10_000_000).astype(np.float32)
w = rng.uniform(0.5, 1.5, 1000).astype(np.float32)
b = rng.uniform(0, 1, 1000).astype(np.float32)
tw, tb = torch.from_numpy(w), torch.from_numpy(b)

def rms_norm(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w

out = []
for c in args["cases"]:
    x = flat.reshape(c["shape"])
    axis = tuple(c["axes"]) if c["axes"] else None
    t = torch.from_numpy(x)
    op = c["op"]
    with torch.no_grad():
        if op in ("sum", "mean", "max", "min"):
            f = getattr(np, op)
            out.append(timed(lambda: f(x, axis=axis)))
        elif op == "softmax":
            out.append(timed(lambda: torch.softmax(t, -1)))
        elif op == "log_softmax":
            out.append(timed(lambda: torch.log_softmax(t, -1)))
        elif op == "layer_norm":
            out.append(timed(lambda: torch.nn.functional.layer_norm(t, (1000,), tw, tb)))
        elif op == "rms_norm":
            out.append(timed(lambda: rms_norm(x)))
print(json.dumps(out))
"""


def run_ours(binary, threads, quick):
    cmd = [str(binary)] + (["--quick"] if quick else [])
    res = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def run_peer(python, cases, threads, budget):
    payload = json.dumps({"threads": threads, "budget": budget, "cases": cases})
    res = subprocess.run([python, "-c", PEER], input=payload, env=thread_env(threads),
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def peer_name(op):
    return "torch" if op in ("softmax", "log_softmax", "layer_norm") else "numpy"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_binary_and_peer_args(ap)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reduce.json"))
    args = ap.parse_args()
    binary = Path(args.build) / "ds_bench_reduce"
    if not binary.exists():
        sys.exit(f"{binary} not found: configure with -DDS_BUILD_BENCH=ON and build ds_bench_reduce")

    ours_runs, peer_runs, rooflines, cases = [], [], [], None
    for r in range(args.rounds):
        ours = run_ours(binary, args.threads, args.quick)
        cases = [{k: v for k, v in c.items() if k != "seconds"} for c in ours["cases"]]
        rooflines.append(ours["read_gbs"])
        ours_runs.append([c["seconds"] for c in ours["cases"]])
        peer_runs.append(run_peer(args.peer_python, cases, args.threads, 0.2 if args.quick else 1.0))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    read_gbs = max(rooflines)
    input_bytes = 10_000_000 * 4
    rows = []
    for i, c in enumerate(cases):
        ours_s = median([run[i] for run in ours_runs])
        peer_s = median([run[i] for run in peer_runs])
        rows.append({"case": c["name"], "op": c["op"], "shape": c["shape"], "axes": c["axes"],
                     "ours_seconds": ours_s, "peer_seconds": peer_s, "peer": peer_name(c["op"]),
                     # Throughput ratio: > 1 means ours is faster.
                     "ratio": peer_s / ours_s,
                     # Time a streaming read of the input takes, over ours.
                     "ours_fraction_of_roofline": input_bytes / (read_gbs * 1e9) / ours_s})

    print(f"{'case':32} | {'ours':>9} | {'peer':>16} | {'ratio':>6} | ours/roofline")
    for r in rows:
        print(f"{r['case']:32} | {r['ours_seconds'] * 1e3:6.2f} ms | "
              f"{r['peer_seconds'] * 1e3:7.2f} ms {r['peer']:5} | {r['ratio']:6.2f} | "
              f"{r['ours_fraction_of_roofline']:.0%}")
    print(f"roofline: streaming read at {read_gbs:.1f} GB/s ({args.threads} threads)")

    result = {"machine": machine(), "peers": peer_versions(args.peer_python),
              "threads": args.threads, "rounds": args.rounds, "read_gbs": read_gbs,
              "ratio_meaning": "peer time / our time (> 1: ours faster)", "cases": rows}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
