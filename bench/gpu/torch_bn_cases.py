"""PyTorch's side of bench/cpp/bench_cuda_bn.cpp: F.batch_norm(training=True) at
ResNet-50's batch-norm shapes (batch 256, bf16 activations, float32 weight, bias
and running statistics, NCHW), forward and backward (autograd of y against dy),
timed like ds (CUDA events, median after warm-up).

    python3 bench/gpu/torch_bn_cases.py [--ds bench_bn_ds.txt]

prints `name median_ms` per case; with --ds (the output of ds_bench_cuda_bn) it
then prints ds vs PyTorch per case (ratio = torch_ms / ds_ms, > 1: ds faster).
"""
import argparse

import torch
import torch.nn.functional as F
from _torch_timing import med

SHAPES = [(64, 112), (256, 56), (1024, 14), (2048, 7)]


def cases(n=256):
    for c, hw in SHAPES:
        name = f"bn_c{c}_{hw}"
        x = (torch.rand(n, c, hw, hw, device="cuda", dtype=torch.bfloat16) * 4 - 1).requires_grad_()
        w = (torch.rand(c, device="cuda") + 0.5).requires_grad_()
        b = (torch.rand(c, device="cuda") * 2 - 1).requires_grad_()
        rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
        dy = torch.rand(n, c, hw, hw, device="cuda", dtype=torch.bfloat16) * 2 - 1

        def fwd():
            with torch.no_grad():
                F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)

        y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)

        def bwd():
            torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)

        yield name + "_fwd", fwd
        yield name + "_bwd", bwd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ds", help="output of ds_bench_cuda_bn")
    args = ap.parse_args()
    torch_ms = {}
    for name, fn in cases():
        torch_ms[name] = med(fn, 20)
        print(f"{name:22s} {torch_ms[name]:10.4f}", flush=True)
    if args.ds:
        print(f"\n{'case':22s} {'ds_ms':>10s} {'torch_ms':>10s} {'ratio':>8s}")
        for line in open(args.ds):
            parts = line.split()
            if len(parts) == 6 and parts[0] in torch_ms:
                ds_ms = float(parts[3])
                print(f"{parts[0]:22s} {ds_ms:10.4f} {torch_ms[parts[0]]:10.4f} {torch_ms[parts[0]] / ds_ms:8.2f}")


if __name__ == "__main__":
    main()
