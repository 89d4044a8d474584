"""The CUDA axis reductions of bench/cpp/bench_cuda_reduce.cpp next to PyTorch's, in one
run on one GPU: runs the ds binary (its path the first argument), times the same cases
in PyTorch (CUDA events, median after warm-up, like the ds side) and prints

    name  ds_ms  torch_ms  ratio (torch_ms / ds_ms, >1: ds faster)  ds GB/s
"""
import subprocess
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _torch_timing import med  # noqa: E402


def torch_fn(op, x, axes):
    if op == "var":
        return lambda: torch.var(x, dim=axes, correction=0)
    return {"sum": lambda: torch.sum(x, dim=axes), "mean": lambda: torch.mean(x, dim=axes)}[op]


def main():
    run = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    out = run.stdout
    print(out + run.stderr, end="")
    if run.returncode != 0:
        sys.exit(f"{sys.argv[1]} exited with {run.returncode}")
    ds_rows = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    tensors = {}
    print(f"# {'name':<34} {'ds_ms':>9} {'torch_ms':>9} {'ratio':>6} {'ds GB/s':>8}")
    for row in ds_rows:
        if len(row) < 3 or row[1] == "no":
            continue
        name, ds_ms, gbs = row[0], float(row[1]), row[2]
        op, dtype, dims, tag = name.split("_")
        shape = tuple(int(d) for d in dims.split("x"))
        axes = tuple(int(a) for a in tag[1:])
        key = (dtype, shape)
        if key not in tensors:
            tensors.clear()  # one large tensor at a time
            dt = torch.bfloat16 if dtype == "bf16" else torch.float32
            tensors[key] = torch.rand(shape, device="cuda", dtype=dt) * 2 - 1
        t_ms = med(torch_fn(op, tensors[key], axes), 20)
        print(f"  {name:<34} {ds_ms:9.4f} {t_ms:9.4f} {t_ms / ds_ms:6.2f} {gbs:>8}")


if __name__ == "__main__":
    main()
