#!/usr/bin/env python3
"""Issue 3's fused-chain figures, side by side in one process.

For each chain (`gelu(x @ W + b)`, `layer_norm(x + residual)`, `softmax(q @ kT / sqrt(d))`,
the last with a causal mask too) at transformer sizes, times in turn: ds compiled at
opt_level 2 (loop fusion, LLVM JIT kernels), ds compiled at opt_level 0 (one kernel per
op), PyTorch CPU eager and numpy, all on the same float32 inputs and the same thread
count (at opt_level 2 the softmax chains are one matmul_softmax kernel each:
passes/matmul_softmax_fusion.cpp). The sides alternate for several rounds; each keeps
its median. Prints `case | ds fused | ds unfused | torch | numpy | torch/ds | load`
and writes bench/results/fusion.json. OMP_WAIT_POLICY defaults to PASSIVE for every
side.

  cmake -B build -DDS_BUILD_PYTHON=ON && ninja -C build _core
  PYTHONPATH=build/python /usr/bin/python3 bench/run_fusion.py [--threads 2] [--rounds 5]

PyTorch is Debian's python3-torch (1.13), numpy python3-numpy.
"""
import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

from _sidebyside import median_seconds

ROOT = Path(__file__).resolve().parent.parent


def numpy_layer_norm(np, x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    d = x - mu
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps) * w + b


def numpy_softmax(np, z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cases(ds, np, torch, rng):
    """Yields (name, build ds graph -> (graph, feeds), torch fn, numpy fn)."""
    tokens, d_model, d_ff = 256, 768, 3072
    x = rng.standard_normal((tokens, d_model), dtype=np.float32)
    w = (rng.standard_normal((d_model, d_ff), dtype=np.float32) * 0.03).astype(np.float32)
    b = rng.standard_normal(d_ff, dtype=np.float32)

    def gelu_graph():
        g = ds.Graph()
        xp = g.placeholder("x", shape=[tokens, d_model], dtype="float32")
        wc, bc = g.constant(ds.Tensor(w)), g.constant(ds.Tensor(b))
        g.output(ds.gelu(ds.matmul(xp, wc) + bc), "y")
        return g, {"x": x}

    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    yield (f"gelu(x @ W + b) [{tokens}x{d_model}]@[{d_model}x{d_ff}]", gelu_graph,
           lambda: torch.nn.functional.gelu(tx @ tw + tb), None)

    # The fused part alone: the bias add and GELU after the matmul.
    h = rng.standard_normal((tokens, d_ff), dtype=np.float32)

    def bias_gelu_graph():
        g = ds.Graph()
        hp = g.placeholder("h", shape=[tokens, d_ff], dtype="float32")
        g.output(ds.gelu(hp + g.constant(ds.Tensor(b))), "y")
        return g, {"h": h}

    th = torch.from_numpy(h)
    yield (f"gelu(h + b) [{tokens}x{d_ff}]", bias_gelu_graph,
           lambda: torch.nn.functional.gelu(th + tb), None)

    rows = 2048
    xr = rng.standard_normal((rows, d_model), dtype=np.float32)
    res = rng.standard_normal((rows, d_model), dtype=np.float32)
    gamma = rng.uniform(0.5, 1.5, d_model).astype(np.float32)
    beta = rng.uniform(-0.5, 0.5, d_model).astype(np.float32)

    def ln_graph():
        g = ds.Graph()
        a = g.placeholder("x", shape=[rows, d_model], dtype="float32")
        r = g.placeholder("r", shape=[rows, d_model], dtype="float32")
        g.output(ds.layer_norm(a + r, g.constant(ds.Tensor(gamma)), g.constant(ds.Tensor(beta))), "y")
        return g, {"x": xr, "r": res}

    txr, tres, tg, tbe = (torch.from_numpy(v) for v in (xr, res, gamma, beta))
    yield (f"layer_norm(x + residual) [{rows}x{d_model}]", ln_graph,
           lambda: torch.nn.functional.layer_norm(txr + tres, (d_model,), tg, tbe),
           lambda: numpy_layer_norm(np, xr + res, gamma, beta))

    # The whole row chain of issue 3's loop fusion: add, both row reductions, the
    # affine normalization and GELU in one pass per row.
    def ln_gelu_graph():
        g = ds.Graph()
        a = g.placeholder("x", shape=[rows, d_model], dtype="float32")
        r = g.placeholder("r", shape=[rows, d_model], dtype="float32")
        g.output(ds.gelu(ds.layer_norm(a + r, g.constant(ds.Tensor(gamma)),
                                       g.constant(ds.Tensor(beta)))), "y")
        return g, {"x": xr, "r": res}

    yield (f"gelu(layer_norm(x + residual)) [{rows}x{d_model}]", ln_gelu_graph,
           lambda: torch.nn.functional.gelu(
               torch.nn.functional.layer_norm(txr + tres, (d_model,), tg, tbe)), None)

    heads, seq, dh = 12, 256, 64
    q = rng.standard_normal((heads, seq, dh), dtype=np.float32)
    k = rng.standard_normal((heads, seq, dh), dtype=np.float32)
    scale = 1.0 / math.sqrt(dh)

    def attn_graph():
        g = ds.Graph()
        qp = g.placeholder("q", shape=[heads, seq, dh], dtype="float32")
        kp = g.placeholder("k", shape=[heads, seq, dh], dtype="float32")
        g.output(ds.softmax(ds.matmul(qp, ds.transpose(kp, -2, -1)) / math.sqrt(dh), -1), "y")
        return g, {"q": q, "k": k}

    tq, tk = torch.from_numpy(q), torch.from_numpy(k)
    yield (f"softmax(q @ kT / sqrt(d)) [{heads}x{seq}x{dh}]", attn_graph,
           lambda: torch.softmax(tq @ tk.transpose(-2, -1) * scale, -1),
           lambda: numpy_softmax(np, q @ k.transpose(0, 2, 1) * scale))

    # Decoder attention: -inf above the diagonal, added before the softmax.
    causal = np.triu(np.full((seq, seq), -np.inf, dtype=np.float32), 1)

    def causal_graph():
        g = ds.Graph()
        qp = g.placeholder("q", shape=[heads, seq, dh], dtype="float32")
        kp = g.placeholder("k", shape=[heads, seq, dh], dtype="float32")
        scores = ds.matmul(qp, ds.transpose(kp, -2, -1)) / math.sqrt(dh)
        g.output(ds.softmax(scores + g.constant(ds.Tensor(causal)), -1), "y")
        return g, {"q": q, "k": k}

    tc = torch.from_numpy(causal)
    yield (f"softmax(q @ kT / sqrt(d) + causal) [{heads}x{seq}x{dh}]", causal_graph,
           lambda: torch.softmax(tq @ tk.transpose(-2, -1) * scale + tc, -1),
           lambda: numpy_softmax(np, q @ k.transpose(0, 2, 1) * scale + causal))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per side per round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fusion.json"))
    args = ap.parse_args()
    os.environ["DS_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # Spinning OpenMP workers (torch, oneDNN) on a shared machine measure the
    # other processes' load, not the kernels (as bench/run_compiled_vs_eager.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch
    import deepseek as ds
    torch.set_num_threads(args.threads)
    ds.set_num_threads(args.threads)
    rng = np.random.default_rng(1)

    load_before = os.getloadavg()
    results = []
    for name, build, torch_fn, numpy_fn in cases(ds, np, torch, rng):
        graph, feeds = build()
        fused = ds.compile(graph, target="cpu", opt_level=2)
        plain = ds.compile(graph, target="cpu", opt_level=0)
        ours = fused.run(feeds)["y"]
        ref = torch_fn().numpy()
        err = float(np.max(np.abs(np.asarray(ours) - ref)))
        sides = {"ds_fused": lambda: fused.run(feeds), "ds_unfused": lambda: plain.run(feeds)}
        with torch.no_grad():
            sides["torch"] = torch_fn
            if numpy_fn is not None:
                sides["numpy"] = numpy_fn
            best = {k: [] for k in sides}
            for _ in range(args.rounds):
                for k, fn in sides.items():
                    best[k].append(median_seconds(fn, args.budget))
        med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in best.items()}
        row = {"case": name, "ms": med, "max_abs_diff_vs_torch": err,
               "kernels_fused": fused.stats()["kernels"], "kernels_unfused": plain.stats()["kernels"],
               "torch_over_ds_fused": med["torch"] / med["ds_fused"],
               # Other sessions share the 2 cores: the 1-minute load when the case ended.
               "load_average": os.getloadavg()[0]}
        results.append(row)
        print(f"{name:52s} | ds fused {med['ds_fused']:8.3f} ms ({row['kernels_fused']} kernels) | "
              f"ds unfused {med['ds_unfused']:8.3f} ms ({row['kernels_unfused']}) | "
              f"torch {med['torch']:8.3f} ms | numpy "
              f"{(str(round(med['numpy'], 3)) + ' ms') if 'numpy' in med else 'n/a (no erf)':>9s} | "
              f"torch/ds {row['torch_over_ds_fused']:.2f}x | max|diff| {err:.2e} | "
              f"load {row['load_average']:.2f}", flush=True)

    out = {
        "command": f"PYTHONPATH={os.environ.get('PYTHONPATH', 'build/python')} "
                   "/usr/bin/python3 bench/run_fusion.py "
                   f"--threads {args.threads} --rounds {args.rounds}",
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        # The machine is shared: the load average says how quiet it was.
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
