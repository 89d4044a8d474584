"""PyTorch's side of the GPU benchmarks, timed like the ds side: CUDA events around
one call, median of `runs` after 3 warm-ups."""
import torch


def med(fn, runs):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]
