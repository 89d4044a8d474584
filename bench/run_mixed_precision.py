#!/usr/bin/env python3
"""bf16 vs fp32 on the CPU: matmul GFLOP/s and the Fashion-MNIST training step.

Three settings side by side, interleaved --repeats times (medians reported):
  fp32            float32 kernels
  bf16            native bf16 kernels (oneDNN bf16 primitives) where the CPU has
                  avx512_bf16, else the emulation
  bf16-emulated   DS_BF16=emulate: bf16 operands widened to float32, float32
                  kernels, rounded once (what every CPU can do)
Matmul: n x n x n, eager ds.matmul on tensors of that dtype (best of --iters).
Training: `ds train --precision P --max-steps S --no-eval` steady images/s.
Convolutions (--convs): the CNN's two layers at batch 128, forward, backward-input and
backward-weight, each compiled alone (best of 40 runs, milliseconds).

  PYTHONPATH=build/python python3 bench/run_mixed_precision.py --ds build/ds
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {"fp32": ("float32", {}), "bf16": ("bfloat16", {}),
            "bf16-emulated": ("bfloat16", {"DS_BF16": "emulate"})}

MATMUL_CHILD = """
import sys, time
import deepseek as ds
n, dtype, iters = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
a = ds.cast(ds.random_normal([n, n], 1, 0.0, 1.0), dtype)
b = ds.cast(ds.random_normal([n, n], 2, 0.0, 1.0), dtype)
ds.matmul(a, b)
times = []
for _ in range(iters):
    t0 = time.perf_counter()
    ds.matmul(a, b)
    times.append(time.perf_counter() - t0)
best = min(times)
print(2.0 * n ** 3 / best / 1e9)
"""


# Both sides wait passively, as `ds train` does: spinning OpenMP workers starve
# whenever other processes share the cores (bench/train_fashion_mnist.py).
BASE_ENV = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))


CONV_CHILD = """
import sys, time
import deepseek as ds
from deepseek import ops
dtype = sys.argv[1]
def best_ms(fn, args):
    f = ds.compile(fn, target="cpu")
    f(*args)
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3
geo = {"stride": [1], "padding": [1], "dilation": [1], "groups": 1}
for c, o, h in ((1, 32, 28), (32, 64, 14)):
    x = ds.cast(ds.random_normal([128, c, h, h], 1, 0.0, 1.0), dtype)
    w = ds.cast(ds.random_normal([o, c, 3, 3], 2, 0.0, 1.0), dtype)
    gy = ds.cast(ds.random_normal([128, o, h, h], 3, 0.0, 1.0), dtype)
    fwd = best_ms(lambda x, w: ops._apply1("conv2d", [x, w], geo), (x, w))
    bwd_in = best_ms(lambda gy, w: ops._apply1("conv2d_backward_input", [gy, w],
                                                  dict(geo, input_size=[h, h])), (gy, w))
    bwd_w = best_ms(lambda x, gy: ops._apply1("conv2d_backward_weight", [x, gy],
                                                 dict(geo, kernel_size=[3, 3])), (x, gy))
    print(f"conv {c}->{o} {h}x{h}: {fwd:.2f} / {bwd_in:.2f} / {bwd_w:.2f}")
"""


def conv_table(threads):
    print("conv ms, fwd / bwd-in / bwd-w (batch 128, 3x3 pad 1)")
    for name, (dtype, env) in SETTINGS.items():
        out = subprocess.run([sys.executable, "-c", CONV_CHILD, dtype],
                             env=dict(BASE_ENV, DS_NUM_THREADS=str(threads), **env),
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"conv child failed:\n{out.stderr}")
        for line in out.stdout.strip().splitlines():
            print(f"  {name:<14} {line}")


def matmul_gflops(n, dtype, env, iters, threads):
    env = dict(BASE_ENV, DS_NUM_THREADS=str(threads), **env)
    out = subprocess.run([sys.executable, "-c", MATMUL_CHILD, str(n), dtype, str(iters)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"matmul child failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def train_rate(ds, precision, env, steps, threads):
    cmd = [ds, "train", "--epochs", "1", "--max-steps", str(steps + 1), "--no-eval", "--out", "",
           "--threads", str(threads), "--precision", precision]
    out = subprocess.run(cmd, env=dict(BASE_ENV, DS_NUM_THREADS=str(threads), **env),
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ds train failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    m = re.search(r"steady throughput.*?: ([0-9.]+) images/s", out.stdout)
    if not m:
        sys.exit(f"no throughput line in ds train's output:\n{out.stdout}")
    return float(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ds", default=os.path.join(HERE, "..", "build", "ds"))
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--convs", action="store_true", help="also time the CNN's convolutions per layer")
    args = p.parse_args()
    if args.convs:
        conv_table(args.threads)

    gflops = {k: [] for k in SETTINGS}
    rates = {k: [] for k in SETTINGS}
    for _ in range(args.repeats):
        for name, (dtype, env) in SETTINGS.items():
            gflops[name].append(matmul_gflops(args.n, dtype, env, args.iters, args.threads))
            precision = "fp32" if name == "fp32" else "bf16"
            rates[name].append(train_rate(args.ds, precision, env, args.steps, args.threads))
    result = {"matmul_gflops": {k: statistics.median(v) for k, v in gflops.items()},
              "train_images_per_s": {k: statistics.median(v) for k, v in rates.items()},
              "runs": {"matmul": gflops, "train": rates}, "n": args.n, "steps": args.steps,
              "threads": args.threads}
    print(f"{'case':<34} {'fp32':>9} {'bf16':>9} {'bf16-emul':>10} {'bf16/fp32':>10}")
    for label, key in ((f"matmul {args.n}^3 GFLOP/s", "matmul_gflops"),
                       ("ds train CNN images/s", "train_images_per_s")):
        r = result[key]
        print(f"{label:<34} {r['fp32']:9.1f} {r['bf16']:9.1f} {r['bf16-emulated']:10.1f} "
              f"{r['bf16'] / r['fp32']:9.2f}x")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mixed_precision.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
