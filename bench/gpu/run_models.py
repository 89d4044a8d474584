"""ds.models against PyTorch on one GPU, in one run (issue 5's model targets).

    PYTHONPATH=<build>/python python3 bench/gpu/run_models.py            # on the H200
    PYTHONPATH=build/python /usr/bin/python3 bench/gpu/run_models.py --smoke   # CPU check

Cases (bf16, synthetic data, the same model and optimizer on both sides):
  resnet50_train  batch 256, 224x224, SGD momentum: images/s; PyTorch eager with AMP +
                  channels_last, and torch.compile of the same (compile time apart)
  resnet50_train_cl  the same with ds's channels-last (NHWC) convolutions
                  (ds.models.resnet50(channels_last=True)), like PyTorch's side
  gpt2_train      GPT-2 124M, batch 16 x 1024 tokens, AdamW: tokens/s and MFU; PyTorch
                  with SDPA (flash) attention, eager and torch.compile
  resnet50_infer  batch 1, 224x224, eval mode: latency; PyTorch eager (AMP, channels_last)
  resnet50_infer_fp32  the same in float32 (no TF32 on either side)

Neither side keeps the model output of a training step (ds: return_output=False; PyTorch
drops its logits), so neither copies GPT-2's 3.3 GB of logits each step.
PyTorch is timed with CUDA events, ds with the wall clock around a step followed by
ds.cuda.synchronize(); both the median after warm-up.
A ds case whose compiled graph would run ops on the CPU (no CUDA kernel yet) is not
timed when more than --max-fallback steps (default 4) would: the table says which ops,
from the executable's explain(); with fewer it is timed and the table names them.
A case that fails prints the reason and the run goes on.
Prints `case | ds | torch eager | torch.compile | ratios`, writes JSON (--json).
"""
import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

import deepseek as ds

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "python"))
import torch_models  # noqa: E402  (the PyTorch references of ds.models)

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s (spec; nanoGPT's MFU uses the spec peak)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes on the CPU: checks this script, times nothing of interest")
    p.add_argument("--iters", type=int, default=10, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--max-fallback", type=int, default=4,
                   help="time ds when at most this many steps would run on the CPU")
    p.add_argument("--cases",
                   default="resnet50_train,gpt2_train,resnet50_infer,resnet50_infer_fp32")
    out = os.environ.get("OUT")
    p.add_argument("--json", default=os.path.join(out, "models_gpu.json") if out else
                   os.path.join(os.path.dirname(__file__), "..", "results", "models_gpu.json"))
    return p.parse_args()


class Skip(Exception):
    """A side of a case that cannot run here; the message says why."""


# ---- timing

def torch_median_ms(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        return wall_median_ms(fn, 0, iters)
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def wall_median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# ---- ds on the device

def cpu_fallbacks(explain):
    """{op: count} of the steps explain() marks as running on the CPU."""
    ops = collections.Counter()
    for line in explain.splitlines():
        if "[cpu fallback" in line:
            m = re.match(r"\s*%\d+ (\S+)", line)
            ops[m.group(1) if m else line.strip()] += 1
    return ops


def check_ds_placement(explain, args, res):
    """Skips the ds side when too many steps would run on the CPU; records the few."""
    if args.smoke:
        return
    fb = cpu_fallbacks(explain)
    steps = sum(fb.values())
    ops = ", ".join(f"{op} x{n}" for op, n in fb.most_common())
    if steps > args.max_fallback:
        raise Skip(f"{steps} steps have no CUDA kernel and would run on the CPU: {ops}")
    if steps:
        res["ds_cpu_fallback"] = ops


def host_roundtrip_bytes(model, n_state):
    """What a ds TrainStep moves each way per step when its outputs come back to the
    host: the parameters and optimizer state (0 when they stay on the device)."""
    params = model.parameters()
    if params[0].device != "cpu":
        return 0
    return sum(int(np.prod(p.shape)) * 4 for p in params) * (1 + n_state)


def loss_value(t):
    return float(t.to("cpu").item())


def synced(fn, args):
    """fn, then wait for the device: ds runs asynchronously once outputs stay there."""
    if args.smoke:
        return fn

    def run():
        fn()
        ds.cuda.synchronize()
    return run


def ds_time_step(step_fn, args, budget_s=30.0):
    """Warm-up then the median; gives up (Skip) when one step takes longer than the
    budget allows for the whole case."""
    t0 = time.perf_counter()
    step_fn()  # compiles
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    step_fn()
    second = time.perf_counter() - t0
    if second * (args.warmup + args.iters) > budget_s:
        raise Skip(f"one step takes {second:.1f} s (first, with compile: {first:.1f} s): "
                   f"too slow to time within {budget_s:.0f} s")
    return wall_median_ms(step_fn, max(0, args.warmup - 1), args.iters), first


# ---- cases: each returns {"unit", "work" per step, sides: {name: ms or reason}}

def case_resnet50_train(args, dev, channels_last=False):
    batch, size, classes = (4, 64, 10) if args.smoke else (256, 224, 1000)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y_np = rng.integers(0, classes, size=batch).astype(np.int64)
    res = {"unit": "images/s", "work": batch, "sides": {}}

    def ds_side():
        model = ds.models.resnet50(num_classes=classes, channels_last=channels_last)
        opt = ds.optim.SGD(lr=0.1, momentum=0.9)
        target = "cpu" if args.smoke else "cuda"
        step = ds.optim.TrainStep(model, opt, ds.nn.functional.cross_entropy, target=target,
                                  precision="bf16", return_output=False)
        x, y = ds.Tensor(x_np), ds.Tensor(y_np)
        if not args.smoke:
            x, y = x.to("cuda"), y.to("cuda")
        t0 = time.perf_counter()
        explain = step.explain(x, y)  # compiles the step for this signature
        res["ds_compile_s"] = time.perf_counter() - t0
        check_ds_placement(explain, args, res)
        losses = []
        ms, first = ds_time_step(synced(lambda: losses.append(step.step(x, y)[0]), args), args)
        res["ds_loss_first_last"] = [loss_value(losses[0]), loss_value(losses[-1])]
        res["ds_first_step_s"] = first
        if not args.smoke:
            res["ds_host_bytes_each_way"] = host_roundtrip_bytes(model, 1)
        return ms

    def torch_model():
        try:
            import torchvision
            model = torchvision.models.resnet50(num_classes=classes)
            res["torch_model"] = "torchvision"
        except ImportError:
            model = torch_models.resnet(50, classes)
            res["torch_model"] = "tests/python/torch_models.py (torchvision not installed)"
        return model.to(dev).to(memory_format=torch.channels_last).train()

    x_t = torch.from_numpy(x_np).to(dev).to(memory_format=torch.channels_last)
    y_t = torch.from_numpy(y_np).to(dev)

    def torch_step_fn(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x_t), y_t)
            loss.backward()
            opt.step()
        return step

    res["sides"]["ds"] = run_side(ds_side)
    res["sides"]["torch_eager"] = run_side(
        lambda: torch_median_ms(torch_step_fn(torch_model()), dev, args.warmup, args.iters))
    res["sides"]["torch_compile"] = run_side(lambda: torch_compiled(
        lambda: torch_step_fn(torch.compile(torch_model())), dev, args, res))
    return res


def gpt_flops_per_token(n_params, n_layer, n_head, n_embd, seq):
    """nanoGPT's estimate_mfu: 6N per token for the weights, 12 L H Q T for attention."""
    return 6 * n_params + 12 * n_layer * n_head * (n_embd // n_head) * seq


def case_gpt2_train(args, dev):
    if args.smoke:
        cfg = dict(block_size=32, vocab_size=101, n_layer=2, n_head=2, n_embd=32)
        batch = 2
    else:
        cfg = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
        batch = 16
    seq = cfg["block_size"]
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, cfg["vocab_size"], size=(batch, seq + 1)).astype(np.int64)
    x_np, y_np = np.ascontiguousarray(tokens[:, :-1]), np.ascontiguousarray(tokens[:, 1:])
    res = {"unit": "tokens/s", "work": batch * seq, "sides": {}}

    def ds_side():
        model = ds.models.gpt2(ds.models.GPTConfig(**cfg))
        res["params_non_embedding"] = model.num_params()
        opt = ds.optim.AdamW(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
        target = "cpu" if args.smoke else "cuda"
        step = ds.optim.TrainStep(model, opt, ds.models.lm_loss, target=target,
                                  precision="bf16", return_output=False)
        x, y = ds.Tensor(x_np), ds.Tensor(y_np)
        if not args.smoke:
            x, y = x.to("cuda"), y.to("cuda")
        t0 = time.perf_counter()
        explain = step.explain(x, y)  # compiles the step for this signature
        res["ds_compile_s"] = time.perf_counter() - t0
        check_ds_placement(explain, args, res)
        losses = []
        ms, first = ds_time_step(synced(lambda: losses.append(step.step(x, y)[0]), args), args)
        res["ds_loss_first_last"] = [loss_value(losses[0]), loss_value(losses[-1])]
        res["ds_first_step_s"] = first
        if not args.smoke:
            res["ds_host_bytes_each_way"] = host_roundtrip_bytes(model, 2)
        return ms

    x_t, y_t = torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev)

    def torch_step_fn(compiled):
        model = torch_models.GPT(**cfg).to(dev).train()
        res.setdefault("params_non_embedding", model.num_params())
        fused = {"fused": True} if dev.type == "cuda" else {}
        opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95),
                                weight_decay=0.1, **fused)
        fwd = torch.compile(model) if compiled else model

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                logits = fwd(x_t)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y_t.view(-1))
            loss.backward()
            opt.step()
        return step

    res["sides"]["ds"] = run_side(ds_side)
    res["sides"]["torch_eager"] = run_side(
        lambda: torch_median_ms(torch_step_fn(False), dev, args.warmup, args.iters))
    res["sides"]["torch_compile"] = run_side(
        lambda: torch_compiled(lambda: torch_step_fn(True), dev, args, res))
    if "params_non_embedding" not in res:
        return res
    flops = gpt_flops_per_token(res["params_non_embedding"], cfg["n_layer"], cfg["n_head"],
                                cfg["n_embd"], seq) * batch * seq
    res["flops_per_step"] = flops
    res["mfu"] = {side: flops / (ms * 1e-3) / H200_BF16_PEAK
                  for side, ms in res["sides"].items() if isinstance(ms, float)}
    return res


def case_resnet50_infer(args, dev, precision="bf16"):
    size = 64 if args.smoke else 224
    x_np = np.random.default_rng(2).standard_normal((1, 3, size, size), dtype=np.float32)
    res = {"unit": "ms", "work": 1, "precision": precision, "sides": {}}

    def ds_side():
        model = ds.models.resnet50().eval()
        graph = ds.Graph()
        out = model(graph.placeholder("x", shape=[1, 3, size, size], dtype="float32"))
        graph.output(out, "logits")
        t0 = time.perf_counter()
        exe = ds.compile(graph, target="cpu" if args.smoke else "cuda", precision=precision)
        res["ds_compile_s"] = time.perf_counter() - t0
        check_ds_placement(exe.explain(), args, res)
        x = ds.Tensor(x_np)
        if not args.smoke:
            x = x.to("cuda")
        return ds_time_step(synced(lambda: exe.run_tensors([x]), args), args)[0]

    def torch_side():
        try:
            import torchvision
            model = torchvision.models.resnet50()
        except ImportError:
            model = torch_models.resnet(50)
        model = model.to(dev).to(memory_format=torch.channels_last).eval()
        x = torch.from_numpy(x_np).to(dev).to(memory_format=torch.channels_last)

        def infer():
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                 enabled=precision == "bf16"):
                model(x)
        # fp32 without TF32 on both sides (ds leaves TF32 off unless asked).
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = \
            precision != "fp32" and tf32[0]
        try:
            return torch_median_ms(infer, dev, args.warmup, 5 * args.iters)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    res["sides"]["ds"] = run_side(ds_side)
    res["sides"]["torch_eager"] = run_side(torch_side)
    return res


def torch_compiled(make_step, dev, args, res):
    if args.no_compile or not hasattr(torch, "compile"):
        raise Skip("torch.compile not requested" if args.no_compile
                   else f"torch {torch.__version__} has no torch.compile")
    step = make_step()
    t0 = time.perf_counter()
    step()  # compiles
    if dev.type == "cuda":
        torch.cuda.synchronize()
    res["torch_compile_s"] = time.perf_counter() - t0
    return torch_median_ms(step, dev, args.warmup, args.iters)


def run_side(fn):
    """ms, or the reason it did not run."""
    try:
        return float(fn())
    except Skip as e:
        return f"not run: {e}"
    except Exception as e:  # a failure is a result too; the other cases still run
        traceback.print_exc()
        return f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if ds.cuda.is_available():
            ds.cuda.empty_cache()


# ---- report

def throughput(res, ms):
    return res["work"] / (ms * 1e-3)


def fmt_side(res, v):
    if not isinstance(v, float):
        return "-"
    if res["unit"] == "ms":
        return f"{v:.2f} ms"
    return f"{throughput(res, v):,.0f} {res['unit']}"


def report(results):
    print("\n== ds.models vs PyTorch (median; ratio = torch time / ds time, > 1: ds faster)")
    print(f"{'case':<16} {'ds':>18} {'torch eager':>18} {'torch.compile':>18}  ratios")
    for name, res in results.items():
        sides = res["sides"]
        ratios = []
        for peer in ("torch_eager", "torch_compile"):
            d, p = sides.get("ds"), sides.get(peer)
            if isinstance(d, float) and isinstance(p, float):
                ratios.append(f"vs {peer.split('_')[1]} {p / d:.2f}x")
        print(f"{name:<16} {fmt_side(res, sides.get('ds')):>18} "
              f"{fmt_side(res, sides.get('torch_eager')):>18} "
              f"{fmt_side(res, sides.get('torch_compile')):>18}  {' '.join(ratios)}")
        if "mfu" in res:
            print(" " * 17 + "MFU: " + ", ".join(f"{k} {v:.1%}" for k, v in res["mfu"].items()))
        if res.get("ds_host_bytes_each_way"):
            print(" " * 17 + f"ds step moves {res['ds_host_bytes_each_way'] / 1e6:,.0f} MB of "
                  "parameters + optimizer state to the device and back")
        if "torch_compile_s" in res:
            print(" " * 17 + f"torch.compile first step: {res['torch_compile_s']:.1f} s")
        if "ds_loss_first_last" in res:
            first, last = res["ds_loss_first_last"]
            print(" " * 17 + f"ds loss: {first:.3f} at the first step, {last:.3f} at the last")
        if "ds_cpu_fallback" in res:
            print(" " * 17 + f"ds timed with steps on the CPU (no CUDA kernel): "
                  f"{res['ds_cpu_fallback']}")
        if "ds_compile_s" in res:
            print(" " * 17 + f"ds compile: {res['ds_compile_s']:.1f} s")
        for side, v in sides.items():
            if not isinstance(v, float):
                print(" " * 17 + f"{side}: {v}")


def main():
    args = parse_args()
    if args.smoke:
        args.iters, args.warmup, args.no_compile = 2, 1, True
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("no CUDA device for PyTorch: run on the GPU machine, or --smoke for a CPU check")
        return 1
    else:
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if not ds.cuda.is_available():
            print(f"ds sees no CUDA device: {ds.cuda.unavailable_reason()}")
    cases = {"resnet50_train": case_resnet50_train,
             "resnet50_train_cl": lambda a, d: case_resnet50_train(a, d, channels_last=True),
             "gpt2_train": case_gpt2_train,
             "resnet50_infer": case_resnet50_infer,
             "resnet50_infer_fp32": lambda a, d: case_resnet50_infer(a, d, "fp32")}
    results = {}
    meta = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu (smoke)",
            "torch": torch.__version__, "ds": ds.__version__, "smoke": args.smoke,
            "iters": args.iters, "warmup": args.warmup, "argv": sys.argv[1:]}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    t_start = time.perf_counter()
    for name in args.cases.split(","):
        t0 = time.perf_counter()
        print(f"-- {name}", flush=True)
        results[name] = cases[name](args, dev)
        results[name]["case_s"] = time.perf_counter() - t0
        print(f"   {results[name]}", flush=True)
        meta["total_s"] = time.perf_counter() - t_start
        with open(args.json, "w") as f:  # after every case: a time limit keeps what ran
            json.dump({"meta": meta, "cases": results}, f, indent=1)
    report(results)
    print(f"\nwrote {args.json} ({meta['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
