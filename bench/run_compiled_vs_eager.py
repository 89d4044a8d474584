#!/usr/bin/env python3
"""Issue 3's compiler figures, side by side in one process (compile time in two).

1. Forward of an MLP (784-512-512-10) and of the small Fashion-MNIST CNN
   (conv32-relu-pool-conv64-relu-pool-linear128-relu-linear10) at batch 1 and 64:
   @ds.compile (traced once, opt_level 2: BN folding, epilogue fusion, loop fusion,
   memory planning) vs our own eager ops on the same weights and inputs. The two
   sides alternate for --rounds rounds; each keeps the median of its runs.
2. Memory of a 20-layer MLP forward (1024 wide, batch 64): the planned arena vs the
   intermediates without reuse (Executable.stats()).
3. Compile time of a ResNet-18-sized graph (20 convolutions with batch norm, relu
   and residual adds, batch 1, 224x224): a cold process with an empty kernel cache
   (DS_CACHE_DIR), then a second process compiling the same graph.

Batch 1 compiled: the MLP's two large GEMVs split over a pool worker kept
spinning for the stretch of small steps (hot runs, src/core/hot_run.h), and
lingering 50 us after a run for the next one when runs come back to back;
DS_HOT_RUNS=0 turns hot runs off, DS_HOT_LINGER_US=0 the lingering, for an A/B.
Each row also gives the process CPU time per run (all threads): what a spinning
worker costs.

Writes bench/results/compiled_vs_eager.json. OMP_WAIT_POLICY defaults to PASSIVE
(as bench/train_fashion_mnist.py): with spinning OpenMP workers (oneDNN) on a
shared 2-core machine the convolutions measured 100x slower and noisy.

  cmake -B build -DDS_BUILD_PYTHON=ON && ninja -C build _core
  PYTHONPATH=build/python python3 bench/run_compiled_vs_eager.py [--threads 2] [--rounds 5] [--out F]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before libdeepseek loads OpenMP
import deepseek as ds  # noqa: E402
import _sidebyside  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(fn, budget):
    return _sidebyside.median_seconds(fn, budget, warmup=3, min_runs=10, max_runs=2000)


def cpu_us_per_run(fn, runs=2000):
    """Process CPU time (user + system, all threads) per back-to-back run."""
    fn()
    t0 = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - t0) / runs * 1e6


def weights(rng, *shape, scale=0.05):
    return ds.Tensor((rng.standard_normal(shape) * scale).astype(np.float32))


def mlp_model(rng):
    w = [(weights(rng, 512, 784), weights(rng, 512)), (weights(rng, 512, 512), weights(rng, 512)),
         (weights(rng, 10, 512), weights(rng, 10))]

    def forward(x):
        h = ds.relu(ds.linear(x, *w[0]))
        h = ds.relu(ds.linear(h, *w[1]))
        return ds.linear(h, *w[2])
    return forward, (784,)


def cnn_model(rng):
    c1, b1 = weights(rng, 32, 1, 3, 3, scale=0.3), weights(rng, 32)
    c2, b2 = weights(rng, 64, 32, 3, 3), weights(rng, 64)
    l1, lb1 = weights(rng, 128, 3136, scale=0.02), weights(rng, 128)
    l2, lb2 = weights(rng, 10, 128), weights(rng, 10)

    def forward(x):
        h = ds.max_pool2d(ds.relu(ds.conv2d(x, c1, b1, padding=1)), 2)
        h = ds.max_pool2d(ds.relu(ds.conv2d(h, c2, b2, padding=1)), 2)
        h = ds.relu(ds.linear(ds.flatten(h), l1, lb1))
        return ds.linear(h, l2, lb2)
    return forward, (1, 28, 28)


def compare_forward(rounds, budget):
    rng = np.random.default_rng(0)
    rows = []
    for name, make in (("MLP 784-512-512-10", mlp_model), ("Fashion-MNIST CNN", cnn_model)):
        forward, feature_shape = make(rng)
        compiled = ds.compile(forward, target="cpu")
        for batch in (1, 64):
            x = ds.Tensor(rng.standard_normal((batch,) + feature_shape).astype(np.float32))
            want, got = forward(x).numpy(), compiled(x).numpy()
            err = float(np.max(np.abs(want - got)) / (1 + np.max(np.abs(want))))
            eager_t, compiled_t = [], []
            for _ in range(rounds):
                eager_t.append(median_seconds(lambda: forward(x), budget))
                compiled_t.append(median_seconds(lambda: compiled(x), budget))
            e, c = sorted(eager_t)[rounds // 2], sorted(compiled_t)[rounds // 2]
            runs = max(20, int(0.2 / e))
            eager_cpu = cpu_us_per_run(lambda: forward(x), runs)
            compiled_cpu = cpu_us_per_run(lambda: compiled(x), runs)
            rows.append({"case": f"{name} batch {batch}", "eager_us": e * 1e6,
                         "compiled_us": c * 1e6, "speedup": e / c, "max_rel_err": err,
                         "eager_cpu_us_per_run": eager_cpu, "compiled_cpu_us_per_run": compiled_cpu,
                         "load_average_1min": os.getloadavg()[0]})
            print(f"{rows[-1]['case']:32s} eager {e * 1e6:9.1f} us  compiled {c * 1e6:9.1f} us  "
                  f"{e / c:5.2f}x  (err {err:.1e}; CPU per run {eager_cpu:.1f} / "
                  f"{compiled_cpu:.1f} us)", flush=True)
    return rows


def idle_cpu_after_runs(seconds=0.5):
    """CPU time the process burns while idle right after the runs: hot runs must
    leave no worker spinning once a run has returned."""
    time.sleep(0.05)
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"idle after the runs: {cpu * 1e3:.2f} ms CPU in {seconds * 1e3:.0f} ms", flush=True)
    return {"idle_s": seconds, "cpu_s": cpu}


def planned_memory():
    rng = np.random.default_rng(1)
    g = ds.Graph()
    h = g.placeholder("x", shape=[64, 1024], dtype="float32")
    for i in range(20):
        h = ds.relu(ds.linear(h, g.constant(weights(rng, 1024, 1024)), g.constant(weights(rng, 1024))))
    g.output(h, "y")
    stats = ds.compile(g, target="cpu").stats()
    ratio = stats["arena_bytes"] / stats["unplanned_bytes"]
    print(f"20-layer MLP forward: arena {stats['arena_bytes']} B vs unplanned "
          f"{stats['unplanned_bytes']} B = {ratio:.3f}x", flush=True)
    return {"arena_bytes": stats["arena_bytes"], "unplanned_bytes": stats["unplanned_bytes"],
            "ratio": ratio}


def resnet18_graph():
    """ResNet-18's layers at batch 1, 224x224, weights random, BN statistics constant."""
    rng = np.random.default_rng(2)
    g = ds.Graph()

    def conv_bn(x, cin, cout, k, stride):
        w = g.constant(weights(rng, cout, cin, k, k, scale=0.05))
        y = ds.conv2d(x, w, stride=stride, padding=k // 2)
        stats = [g.constant(ds.Tensor(rng.uniform(lo, hi, cout).astype(np.float32)))
                 for lo, hi in ((-0.1, 0.1), (0.5, 1.5), (0.5, 1.5), (-0.1, 0.1))]
        return ds.batch_norm(y, *stats)

    x = g.placeholder("x", shape=[1, 3, 224, 224], dtype="float32")
    h = ds.max_pool2d(ds.relu(conv_bn(x, 3, 64, 7, 2)), 3, stride=2, padding=1)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            y = ds.relu(conv_bn(h, cin, cout, 3, s))
            y = conv_bn(y, cout, cout, 3, 1)
            skip = conv_bn(h, cin, cout, 1, s) if (s != 1 or cin != cout) else h
            h, cin = ds.relu(y + skip), cout
    g.output(ds.linear(ds.flatten(ds.global_avg_pool2d(h)), g.constant(weights(rng, 1000, 512))), "y")
    return g


def compile_seconds_child():
    g = resnet18_graph()
    t0 = time.perf_counter()
    exe = ds.compile(g, target="cpu")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "kernels": exe.stats()["kernels"]}))


def compile_times():
    cache = tempfile.mkdtemp(prefix="ds_cache_bench_")
    env = dict(os.environ, DS_CACHE_DIR=cache)
    runs = []
    for label in ("cold", "warm"):
        out = subprocess.run([sys.executable, __file__, "--compile-child"], env=env, check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"ResNet-18-sized compile, {label}: {runs[-1]['seconds']:.3f} s "
              f"({runs[-1]['kernels']} kernels)", flush=True)
    return {"cold_s": runs[0]["seconds"], "warm_s": runs[1]["seconds"], "kernels": runs[0]["kernels"],
            "cache_dir_files": len(os.listdir(cache))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.4, help="seconds per timing")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "compiled_vs_eager.json"))
    p.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    ds.set_num_threads(args.threads)
    if args.compile_child:
        compile_seconds_child()
        return
    result = {
        "command": f"PYTHONPATH={os.environ.get('PYTHONPATH', 'build/python')} "
                   + "".join(f"{k}={os.environ[k]} " for k in ("DS_HOT_RUNS", "DS_HOT_LINGER_US")
                             if k in os.environ)
                   + f"python3 bench/run_compiled_vs_eager.py --threads {args.threads} --rounds {args.rounds}",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                    "load_average": os.getloadavg(),
                    # SCHED_FIFO (chrt -f): measured ahead of the other jobs on a loaded machine.
                    "scheduler": {os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}.get(
                        os.sched_getscheduler(0), "SCHED_OTHER")},
        "forward": compare_forward(args.rounds, args.budget),
        "idle_cpu_after_runs": idle_cpu_after_runs(),
        "planned_memory": planned_memory(),
        "compile_resnet18": compile_times(),
    }
    # Other jobs share this machine: the load at the end tells whether it changed meanwhile.
    result["machine"]["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
