#!/usr/bin/python3
"""Fashion-MNIST CNN training throughput: `ds train` vs PyTorch CPU, side by side.

Same model, Adam lr 1e-3, batch 128, same thread count. Each side trains for
--steps steps after one warm-up step (ds traces and compiles its training step
there); runs alternate ds / torch --repeats times and the medians are compared.
Prints `case | ours | peer | ratio` and writes bench/results/train_fashion_mnist.json.

Both sides run with the same OMP_WAIT_POLICY (default PASSIVE, which `ds train`
also picks for itself): with the spinning default, PyTorch's OpenMP workers
starve whenever other processes share the cores (measured here: 295 vs 2,303
images/s for PyTorch on a loaded machine), which would flatter the ratio.

Run with Debian's python (/usr/bin/python3, which has python3-torch):
  /usr/bin/python3 bench/train_fashion_mnist.py --ds build/ds --steps 60 --threads 2
"""
import argparse
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_rate(steps, threads, data_dir, seed):
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x_all.shape[0])
    batch = 128
    start = None
    for step in range(steps + 1):
        idx = order[(step * batch) % (x_all.shape[0] - batch):][:batch]
        x, y = x_all[idx], y_all[idx]
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        (out.argmax(1) == y).sum().item()  # the accuracy ds train computes too
        loss.item()
        if step == 0:
            start = time.perf_counter()
    return steps * batch / (time.perf_counter() - start)


def ds_rate(ds, steps, threads, data_dir, seed):
    cmd = [ds, "train", "--epochs", "1", "--max-steps", str(steps + 1), "--no-eval", "--out", "",
           "--threads", str(threads), "--seed", str(seed), "--data-dir", data_dir]
    env = dict(os.environ, DS_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ds train failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    m = re.search(r"steady throughput.*?: ([0-9.]+) images/s", out.stdout)
    if not m:
        sys.exit(f"could not find the throughput line in ds train's output:\n{out.stdout}")
    return float(m.group(1)), " ".join(cmd)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_ds = os.path.join(HERE, "..", "build", "ds")
    p.add_argument("--ds", default=default_ds, help="the ds binary (default build/ds)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per run (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--out", default=os.path.join(HERE, "results", "train_fashion_mnist.json"))
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE"],
                   help="OMP_WAIT_POLICY for both sides (libgomp reads it when torch loads)")
    a = p.parse_args()
    os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not importable: install Debian's python3-torch and run this with "
                 "/usr/bin/python3")
    if not os.path.exists(os.path.join(a.data_dir, "train-images-idx3-ubyte.gz")):
        sys.exit(f"Fashion-MNIST not found in {a.data_dir}: apt-get install dataset-fashion-mnist")

    ours, peer, cmd = [], [], ""
    for r in range(a.repeats):
        rate, cmd = ds_rate(a.ds, a.steps, a.threads, a.data_dir, a.seed)
        ours.append(rate)
        peer.append(torch_rate(a.steps, a.threads, a.data_dir, a.seed))
        print(f"  repeat {r + 1}: ds {ours[-1]:.0f} img/s, torch {peer[-1]:.0f} img/s", flush=True)
    o, t = statistics.median(ours), statistics.median(peer)
    print(f"{'case':<44} | {'ours':>10} | {'peer':>10} | {'ratio':>6}")
    case = f"fashion-mnist cnn train, batch 128, {a.threads} threads"
    print(f"{case:<44} | {o:>10.0f} | {t:>10.0f} | {o / t:>6.2f}")
    import torch
    result = {
        "case": case,
        "unit": "images/s (median of repeats, steady state after one warm-up step)",
        "ours": o, "peer": t, "ratio": o / t,
        "ours_runs": ours, "peer_runs": peer,
        "peer_name": f"PyTorch {torch.__version__} CPU (eager, torch.optim.Adam)",
        "steps": a.steps, "threads": a.threads, "repeats": a.repeats,
        "omp_wait_policy": a.omp_wait_policy,
        "load_average_at_end": os.getloadavg()[0],
        "ds_command": cmd,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
