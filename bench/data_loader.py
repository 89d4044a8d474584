#!/usr/bin/python3
"""Data pipeline figures: ds.data vs PyTorch on Fashion-MNIST, side by side.

1. Loading the training set (60000 images from the .gz IDX files, scaled to
   [0, 1] float32): ds.data.fashion_mnist vs gzip + numpy + torch.
2. One shuffled epoch at batch 128: ds.data.DataLoader vs
   torch.utils.data.DataLoader(TensorDataset, shuffle=True), images/s.
3. Waiting on data while the loop works (a 1 ms sleep per batch stands in for a
   training step that leaves a core free): ds with prefetch=2 vs prefetch=0.

Runs alternate ds / torch --repeats times; medians are reported.
Run with Debian's python (which has python3-torch) and the built module:
  PYTHONPATH=build/python /usr/bin/python3 bench/data_loader.py
"""
import argparse
import gzip
import statistics
import time

import numpy as np

import deepseek as ds

DATA_DIR = ds.data.FASHION_MNIST_DIR


def torch_load(torch):
    def idx(name):
        raw = gzip.decompress(open(f"{DATA_DIR}/{name}", "rb").read())
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    images = torch.from_numpy(idx("train-images-idx3-ubyte.gz").copy()).float().div_(255)
    labels = torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    return images.unsqueeze(1), labels


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def epoch_seconds(loader):
    def run():
        n = 0
        for images, _ in loader:
            n += images.shape[0]
        return n
    return timed(run)


def waiting_seconds(loader):
    """Time spent inside next() while the loop sleeps 1 ms per batch."""
    waited, it = 0.0, iter(loader)
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        waited += time.perf_counter() - t
        if batch is None:
            return waited
        time.sleep(0.001)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    ds.set_num_threads(args.threads)

    load = {"ds": [], "torch": []}
    epoch = {"ds": [], "torch": []}
    for _ in range(args.repeats):
        s, train = timed(lambda: ds.data.fashion_mnist(train=True))
        load["ds"].append(s)
        s, (images, labels) = timed(lambda: torch_load(torch))
        load["torch"].append(s)
        s, n = epoch_seconds(ds.data.DataLoader(train, batch_size=128, shuffle=True, seed=0))
        epoch["ds"].append(n / s)
        tl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=128, shuffle=True)
        s, n = epoch_seconds(tl)
        epoch["torch"].append(n / s)
    wait = {p: statistics.median(waiting_seconds(ds.data.DataLoader(
        train, batch_size=128, shuffle=True, prefetch=p)) for _ in range(args.repeats))
        for p in (0, 2)}

    med = {k: {p: statistics.median(v) for p, v in d.items()} for k, d in
           (("load", load), ("epoch", epoch))}
    print(f"{'case':44} | {'ours':>10} | {'peer':>10} | ratio")
    print(f"{'load Fashion-MNIST train (s, lower better)':44} | {med['load']['ds']:10.3f} | "
          f"{med['load']['torch']:10.3f} | {med['load']['torch'] / med['load']['ds']:.2f}x")
    print(f"{'shuffled epoch, batch 128 (images/s)':44} | {med['epoch']['ds']:10.0f} | "
          f"{med['epoch']['torch']:10.0f} | {med['epoch']['ds'] / med['epoch']['torch']:.2f}x")
    print(f"{'ds: time waiting on data per epoch (s)':44} | prefetch=2 {wait[2]:.4f} | "
          f"prefetch=0 {wait[0]:.4f}")


if __name__ == "__main__":
    main()
