"""PyTorch's side of bench/cpp/bench_cuda_dnn.cpp: the same cases (ResNet-50
convolutions at batch 256 in bf16, pooling, batch-norm statistics, GPT-2
embedding, MLP linear), timed the same way (CUDA events, median after warm-up), NCHW like
ds and channels_last as PyTorch's fastest layout.

    python3 bench/gpu/torch_dnn_cases.py [--ds bench_dnn_ds.txt]

prints `name median_ms` per case; with --ds (the output of ds_bench_cuda_dnn)
it then prints ds vs PyTorch per case (ratio = torch_ms / ds_ms, > 1: ds faster).
"""
import argparse

import torch
import torch.nn.functional as F
from _torch_timing import med

torch.backends.cudnn.benchmark = True  # PyTorch's own algorithm search, like ds's cudnnFind


def rnd(*shape):
    return torch.rand(*shape, device="cuda", dtype=torch.bfloat16) * 2 - 1


def conv_cases(n=256):
    # name, in channels, spatial, out channels, kernel, stride, padding (bench_cuda_dnn.cpp)
    convs = [("stem7x7s2", 3, 224, 64, 7, 2, 3), ("l1_3x3", 64, 56, 64, 3, 1, 1),
             ("l1_1x1up", 64, 56, 256, 1, 1, 0), ("l2_3x3s2", 128, 56, 128, 3, 2, 1),
             ("l3_3x3", 256, 14, 256, 3, 1, 1), ("l4_1x1down", 2048, 7, 512, 1, 1, 0)]
    for name, c, hw, o, k, s, p in convs:
        for layout in ("", "_cl"):
            fmt = torch.channels_last if layout else torch.contiguous_format
            x = rnd(n, c, hw, hw).to(memory_format=fmt)
            w = rnd(o, c, k, k).to(memory_format=fmt)
            oh = (hw + 2 * p - k) // s + 1
            gy = rnd(n, o, oh, oh).to(memory_format=fmt)
            base = f"conv_{name}"
            yield base + "_fwd" + layout, lambda x=x, w=w, s=s, p=p: F.conv2d(x, w, None, s, p)
            if c > 3:
                yield base + "_bwd_data" + layout, (
                    lambda x=x, w=w, gy=gy, s=s, p=p: torch.ops.aten.convolution_backward(
                        gy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                        [True, False, False]))
            yield base + "_bwd_filter" + layout, (
                lambda x=x, w=w, gy=gy, s=s, p=p: torch.ops.aten.convolution_backward(
                    gy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                    [False, True, False]))
            if name == "l1_3x3":
                b = rnd(o)
                yield base + "_bias_relu" + layout, (
                    lambda x=x, w=w, b=b: F.relu(F.conv2d(x, w, b, 1, 1)))


def other_cases(n=256):
    x = rnd(n, 64, 112, 112)
    gy = rnd(n, 64, 56, 56)
    _, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    yield "maxpool3x3s2_fwd", lambda: F.max_pool2d(x, 3, 2, 1)
    yield "maxpool3x3s2_bwd", (lambda: torch.ops.aten.max_pool2d_with_indices_backward(
        gy, x, [3, 3], [2, 2], [1, 1], [1, 1], False, idx))
    x_cl, gy_cl = (t.to(memory_format=torch.channels_last) for t in (x, gy))
    _, idx_cl = F.max_pool2d(x_cl, 3, 2, 1, return_indices=True)
    yield "maxpool3x3s2_fwd_cl", lambda: F.max_pool2d(x_cl, 3, 2, 1)
    yield "maxpool3x3s2_bwd_cl", (lambda: torch.ops.aten.max_pool2d_with_indices_backward(
        gy_cl, x_cl, [3, 3], [2, 2], [1, 1], [1, 1], False, idx_cl))
    # Training-mode batch norm on layer1's [256, 256, 56, 56] in channels_last (ds:
    # the same values as [N*H*W, C, 1, 1]).
    xb = rnd(n, 256, 56, 56).to(memory_format=torch.channels_last)
    gb = rnd(n, 256, 56, 56).to(memory_format=torch.channels_last)
    wb, bb = rnd(256), rnd(256)
    _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(xb, wb, bb, None, None, True,
                                                                 0.1, 1e-5)
    yield "bn_train_fwd_cl", lambda: torch.ops.aten.native_batch_norm(xb, wb, bb, None, None,
                                                                      True, 0.1, 1e-5)
    yield "bn_train_bwd_cl", lambda: torch.ops.aten.native_batch_norm_backward(
        gb, xb, wb, None, None, save_mean, save_invstd, True, 1e-5, [True, True, True])
    yield "bn_stats_mean", lambda: x.mean(dim=(0, 2, 3))
    yield "bn_stats_var", lambda: x.var(dim=(0, 2, 3), unbiased=False)
    f = rnd(n, 2048, 7, 7)
    yield "global_avgpool", lambda: F.adaptive_avg_pool2d(f, 1)
    wte = rnd(50257, 768)
    tokens = torch.randint(0, 50257, (16, 1024), device="cuda")
    yield "embedding_fwd", lambda: F.embedding(tokens, wte)
    g = rnd(16 * 1024, 768)
    flat = tokens.reshape(-1)
    yield "embedding_bwd", lambda: torch.zeros_like(wte).index_add_(0, flat, g)
    yield "bias_grad_sum0", lambda: g.sum(0)
    # New names: the lambdas above read x and gy when they run, after this generator ends.
    xm, wm, bm = rnd(16 * 1024, 768), rnd(3072, 768), rnd(3072)
    yield "mlp_fc_bias_gelu", lambda: F.gelu(F.linear(xm, wm, bm), approximate="tanh")
    gm = rnd(16 * 1024, 3072)
    yield "mlp_fc_wgrad_gemm", lambda: gm.t() @ xm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ds", help="output of ds_bench_cuda_dnn, for the side-by-side table")
    args = ap.parse_args()
    torch_ms = {}
    with torch.no_grad():
        for name, fn in list(conv_cases()) + list(other_cases()):
            torch_ms[name] = med(fn, 10)
            print(f"{name:<32} {torch_ms[name]:10.4f}", flush=True)
    if not args.ds:
        return
    print("\n== ds vs PyTorch (median ms; ratio = torch_ms / ds_ms, > 1: ds faster;"
          " _cl: PyTorch channels_last)")
    for line in open(args.ds):
        parts = line.split()
        if len(parts) < 6 or line.startswith("#") or parts[0] not in torch_ms:
            continue
        name, ds_ms = parts[0], float(parts[3])
        cl = torch_ms.get(name + "_cl")
        cl_txt = f"  torch_cl {cl:9.4f}  ratio_cl {cl / ds_ms:5.2f}" if cl else ""
        print(f"  {name:<28} ds {ds_ms:9.4f}  torch {torch_ms[name]:9.4f}  "
              f"ratio {torch_ms[name] / ds_ms:5.2f}{cl_txt}  ds {float(parts[4]):7.1f} TFLOP/s")


if __name__ == "__main__":
    main()
