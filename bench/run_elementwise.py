"""Elementwise ops and reductions over 10^7 float32 values: ds vs numpy, side by side.

Usage: PYTHONPATH=build/python python3 bench/run_elementwise.py [--rounds 5] [--threads 2]

Ours and numpy alternate case by case (order swapped every round); medians are
reported. Every case is memory-bound, so the roofline is the measured copy
bandwidth (numpy's copyto of the same array): `ours/copy` is the achieved fraction
of it, counting bytes read + written once each.
"""
import argparse
import json
import os
import platform
import statistics
import sys

import numpy as np

from _sidebyside import best_seconds, in_turn

N = 10_000_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "elementwise.json"))
    args = ap.parse_args()
    os.environ["DS_NUM_THREADS"] = str(args.threads)
    import deepseek as ds
    ds.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    a = rng.standard_normal(N, dtype=np.float32)
    b = rng.standard_normal(N, dtype=np.float32)
    m = a.reshape(10_000, 1_000)
    da, db, dm = ds.tensor(a), ds.tensor(b), ds.tensor(m)
    out = np.empty_like(a)

    # name: (ours, numpy, bytes moved)
    f4 = 4 * N
    cases = {
        "add": (lambda: da + db, lambda: np.add(a, b, out=out), 3 * f4),
        "mul": (lambda: da * db, lambda: np.multiply(a, b, out=out), 3 * f4),
        "exp": (lambda: ds.exp(da), lambda: np.exp(a, out=out), 2 * f4),
        "tanh": (lambda: ds.tanh(da), lambda: np.tanh(a, out=out), 2 * f4),
        "sigmoid": (lambda: ds.sigmoid(da),
                    lambda: np.divide(1.0, 1.0 + np.exp(-a), out=out), 2 * f4),
        "relu": (lambda: ds.relu(da), lambda: np.maximum(a, 0, out=out), 2 * f4),
        "where(a>b)": (lambda: ds.where(da > db, da, db),
                       lambda: np.where(a > b, a, b), 3 * f4),
        "sum (all)": (lambda: ds.sum(da), lambda: np.sum(a), f4),
        "max (all)": (lambda: ds.max(da), lambda: np.max(a), f4),
        "sum (last axis)": (lambda: ds.sum(dm, axis=1), lambda: np.sum(m, axis=1), f4),
        "mean (axis 0)": (lambda: ds.mean(dm, axis=0), lambda: np.mean(m, axis=0), f4),
    }
    copy_t = best_seconds(lambda: np.copyto(out, a))
    copy_bw = 2 * f4 / copy_t

    samples = {k: ([], []) for k in cases}
    for r in range(args.rounds):
        for name, (ours, peer, _) in cases.items():
            for idx, fn in in_turn([(0, ours), (1, peer)], r):
                samples[name][idx].append(best_seconds(fn, repeat=3))

    rows = []
    print(f"{'case':18} | {'ours ms':>8} | {'numpy ms':>8} | {'ratio':>6} | {'ours GB/s':>9} | ours/copy")
    print("-" * 75)
    for name, (_, _, nbytes) in cases.items():
        o = statistics.median(samples[name][0])
        p = statistics.median(samples[name][1])
        gbs = nbytes / o / 1e9
        rows.append({"case": name, "ours_ms": o * 1e3, "numpy_ms": p * 1e3, "ratio": p / o,
                     "ours_gbs": gbs, "fraction_of_copy": nbytes / o / copy_bw})
        print(f"{name:18} | {o * 1e3:8.2f} | {p * 1e3:8.2f} | {p / o:6.2f} | {gbs:9.1f} | "
              f"{nbytes / o / copy_bw:6.0%}")
    print(f"\nratio = numpy time / ours (> 1: ours faster). copy bandwidth (numpy copyto): "
          f"{copy_bw / 1e9:.1f} GB/s. ds threads: {args.threads}; numpy elementwise is "
          f"single-threaded.")
    result = {"machine": platform.node(), "cpu": ds.info().splitlines()[1], "threads": args.threads,
              "n": N, "copy_gbs": copy_bw / 1e9, "rounds": args.rounds, "cases": rows,
              "command": " ".join([sys.executable] + sys.argv)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
