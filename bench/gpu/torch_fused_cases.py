"""PyTorch on the cases of bench/cpp/bench_cuda_fused.cpp, timed the same way
(CUDA events, median after warm-up). Prints `name median_ms` per line; the
names match the C++ benchmark's so bench/gpu/fused_bench.sh can pair them."""
import os

import torch
import torch.nn.functional as F
from _torch_timing import med


def main():
    cases = []
    x = torch.rand(8192, 8192, device="cuda") * 4 - 2
    bias = torch.rand(8192, device="cuda") * 2 - 1
    scale = torch.rand((), device="cuda") + 0.5
    dst = torch.empty_like(x)
    cases.append(("copy_fp32_8192x8192", lambda: dst.copy_(x), 20))
    cases.append(("unfused_gelu_bias_scale_fp32", lambda: F.gelu(x + bias) * scale, 20))
    if os.environ.get("DS_TORCH_COMPILE") == "1":  # Inductor's fused kernel (~30 s to compile)
        compiled = torch.compile(lambda a, b, s: F.gelu(a + b) * s)
        compiled(x, bias, scale)
        cases.append(("fused_gelu_bias_scale_fp32", lambda: compiled(x, bias, scale), 20))
    xb = x.bfloat16()  # the bf16 chain: widened, float32 math, narrowed (as ds's region)
    cases.append(("unfused_gelu_bias_scale_bf16",
                  lambda: (F.gelu(xb.float() + bias) * scale).bfloat16(), 20))
    if os.environ.get("DS_TORCH_COMPILE") == "1":
        compiled_bf16 = torch.compile(lambda a, b, s: (F.gelu(a.float() + b) * s).bfloat16())
        compiled_bf16(xb, bias, scale)
        cases.append(("fused_gelu_bias_scale_bf16", lambda: compiled_bf16(xb, bias, scale), 20))
    shift = torch.rand(8192, 1, device="cuda") * 2 - 1
    cases.append(("fused_sum_exp_rows_fp32", lambda: torch.exp(x - shift).sum(-1, keepdim=True), 20))
    logits = torch.rand(2048, 50257, device="cuda") * 8 - 4

    def log_softmax_and_probs():
        lp = torch.log_softmax(logits, -1)
        return lp, lp.exp()
    cases.append(("fused_log_softmax_rows_fp32_2048x50257", log_softmax_and_probs, 10))
    for prefix in ("", "fused_"):  # ds: the op's row kernel and the fused row region
        cases.append((prefix + "layer_norm_fp32_8192x8192", lambda: F.layer_norm(x, (8192,)), 20))
        cases.append((prefix + "softmax_fp32_8192x8192", lambda: torch.softmax(x, -1), 20))
    for dt, dname in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
        for causal in (False, True):
            shape = (16, 12, 1024, 64)
            q, k, v = (torch.rand(shape, device="cuda", dtype=dt) * 2 - 1 for _ in range(3))
            name = f"sdpa_{dname}{'_causal' if causal else ''}_16x12x1024x64"
            cases.append((name + "_fwd", lambda q=q, k=k, v=v, c=causal:
                          F.scaled_dot_product_attention(q, k, v, is_causal=c), 10))
            qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
            out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
            g = torch.rand_like(out)
            cases.append((name + "_bwd", lambda out=out, g=g, ins=(qg, kg, vg):
                          torch.autograd.grad(out, ins, g, retain_graph=True), 5))
    for name, fn, runs in cases:
        print(f"{name:<32} {med(fn, runs):10.4f}")


if __name__ == "__main__":
    main()
