"""Where a ds training step's GPU time goes: ds.profile() around a few steps of the
issue-5 training cases (ResNet-50 b256 bf16 SGD, also channels-last as resnet50_cl;
GPT-2 124M 16x1024 bf16 AdamW),
then the op table sorted by self CUDA time, the step's wall time, and the share of
the wall time the GPU was busy (the rest is host work or waiting).

    PYTHONPATH=<build>/python python3 bench/gpu/profile_train.py [--cases gpt2,resnet50] [--steps 3]
    PYTHONPATH=build/python /usr/bin/python3 bench/gpu/profile_train.py --smoke   # CPU check
"""
import argparse
import time

import numpy as np

import deepseek as ds


def resnet50_step(smoke, channels_last=False):
    batch, size, classes = (2, 32, 10) if smoke else (256, 224, 1000)
    rng = np.random.default_rng(0)
    x = ds.Tensor(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
    y = ds.Tensor(rng.integers(0, classes, size=batch).astype(np.int64))
    model = ds.models.resnet50(num_classes=classes, channels_last=channels_last)
    step = ds.optim.TrainStep(model, ds.optim.SGD(lr=0.1, momentum=0.9),
                              ds.nn.functional.cross_entropy,
                              target="cpu" if smoke else "cuda", precision="bf16",
                              return_output=False)  # as run_models.py times it
    return step, x, y


def gpt2_step(smoke):
    cfg = (dict(block_size=32, vocab_size=101, n_layer=2, n_head=2, n_embd=32) if smoke else
           dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768))
    batch = 2 if smoke else 16
    tokens = np.random.default_rng(1).integers(0, cfg["vocab_size"],
                                               size=(batch, cfg["block_size"] + 1))
    x = ds.Tensor(np.ascontiguousarray(tokens[:, :-1]).astype(np.int64))
    y = ds.Tensor(np.ascontiguousarray(tokens[:, 1:]).astype(np.int64))
    model = ds.models.gpt2(ds.models.GPTConfig(**cfg))
    step = ds.optim.TrainStep(model, ds.optim.AdamW(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1),
                              ds.models.lm_loss, target="cpu" if smoke else "cuda",
                              precision="bf16", return_output=False)
    return step, x, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="gpt2,resnet50")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    sync = (lambda: None) if args.smoke else ds.cuda.synchronize
    for case in args.cases.split(","):
        step, x, y = {"gpt2": gpt2_step, "resnet50": resnet50_step,
                      "resnet50_cl": lambda smoke: resnet50_step(smoke, True)}[case](args.smoke)
        if not args.smoke:
            x, y = x.to("cuda"), y.to("cuda")
        for _ in range(2):  # compile, then the CUDA graph capture
            step.step(x, y)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step.step(x, y)
        sync()
        plain_ms = (time.perf_counter() - t0) / args.steps * 1e3
        with ds.profile(record_shapes=True) as prof:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step.step(x, y)
            sync()
            prof_ms = (time.perf_counter() - t0) / args.steps * 1e3
        avg = prof.key_averages()
        busy_ms = sum(r.self_device_ns for r in avg.rows) / 1e6 / args.steps
        print(f"== {case}: step {plain_ms:.1f} ms unprofiled, {prof_ms:.1f} ms profiled, "
              f"GPU busy {busy_ms:.1f} ms per step")
        print(avg.table(sort_by="name" if args.smoke else "self_cuda", row_limit=args.rows))
        if not args.smoke:  # the same by input shapes: which convolutions or GEMMs
            print(prof.key_averages(group_by="shape").table(sort_by="self_cuda",
                                                            row_limit=args.rows))


if __name__ == "__main__":
    main()
