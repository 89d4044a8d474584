"""Inference of PyTorch models converted with ds.from_torch, side by side with PyTorch eager
in one run (same weights, inputs and thread count). Needs an interpreter with torch:

    PYTHONPATH=build-torch/python /usr/bin/python3 bench/from_torch_inference.py [threads]
"""
import os
import sys
import time

import torch

import deepseek as ds

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from from_torch_cases import FashionCNN, ResNet18, randomize  # noqa: E402


def mean_seconds(fn, repeats=10):
    fn()  # warm-up: first-run allocations and primitive creation
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    ds.set_num_threads(threads)
    cases = [("Fashion-MNIST CNN, batch 128", FashionCNN(), torch.randn(128, 1, 28, 28)),
             ("ResNet-18, batch 8, 3x64x64", ResNet18(), torch.randn(8, 3, 64, 64))]
    print(f"threads: {threads}")
    for name, model, x in cases:
        model = randomize(model)
        converted = ds.from_torch(model, x)
        array = x.numpy()
        with torch.no_grad():
            t_torch = mean_seconds(lambda: model(x))
        t_ds = mean_seconds(lambda: converted(array))
        print(f"{name}: torch {t_torch * 1e3:.1f} ms, ds {t_ds * 1e3:.1f} ms, "
              f"torch/ds = {t_torch / t_ds:.2f}")


if __name__ == "__main__":
    main()
