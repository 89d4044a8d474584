"""ds.models against PyTorch with the same weights, one comparison per case: torchvision's
ResNet and nanoGPT's GPT as written out in torch_models.py (and torchvision itself where
it is installed). Run by test_models.py with an interpreter that imports torch:

    python3 models_torch_cases.py <case>      # prints "ok" when ds matches PyTorch

Every parameter and buffer is random (BN statistics and scales too), so a mapping that
swaps or drops one shows in the outputs. Tolerance: |ds - torch| <= 1e-4 * max|torch| +
1e-4 * |torch| (float32 throughout).
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

import deepseek as ds
import torch_models

RTOL = 1e-4


def assert_close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = float(np.abs(want).max()) if want.size else 1.0
    err = float(np.abs(got - want).max()) if want.size else 0.0
    print(f"{what}: max |ds - torch| = {err:.3g} (max |torch| = {scale:.3g})")
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def _randomized(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or name.endswith(".attn.bias"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
    return model


def _ds_copy(torch_model, ds_model):
    ds.models.load_torch_state_dict(ds_model, torch_model.state_dict())
    return ds_model


def case_state_dict_keys():
    pairs = [(torch_models.resnet(18), ds.models.resnet18()),
             (torch_models.resnet(50, 10), ds.models.resnet50(10)),
             (torch_models.GPT(block_size=8, vocab_size=30, n_layer=3, n_head=2, n_embd=8),
              ds.models.gpt2(ds.models.GPTConfig(block_size=8, vocab_size=30, n_layer=3,
                                                 n_head=2, n_embd=8)))]
    try:
        import torchvision
        pairs += [(torchvision.models.resnet18(), ds.models.resnet18()),
                  (torchvision.models.resnet50(), ds.models.resnet50())]
        print("torchvision", torchvision.__version__)
    except ImportError:
        print("torchvision not installed: torch_models.py's ResNet only")
    for tm, dm in pairs:
        want = {k: tuple(v.shape) for k, v in tm.state_dict().items()
                if not k.endswith(("num_batches_tracked", ".attn.bias")) and k != "lm_head.weight"}
        got = {k: tuple(v.shape) for k, v in dm.state_dict().items()}
        assert got == want, (set(got) ^ set(want))
        n_torch = sum(p.numel() for p in tm.parameters())  # tied weights counted once
        n_ds = sum(int(np.prod(p.shape)) for p in dm.parameters())
        assert n_ds == n_torch, (n_ds, n_torch)


def _compare_resnet(depth, shape, train):
    tm = _randomized(torch_models.resnet(depth, 10), seed=depth)
    dm = _ds_copy(tm, getattr(ds.models, f"resnet{depth}")(10))
    tm.train(train)
    dm.train(train)
    x = np.random.default_rng(depth).standard_normal(shape, dtype=np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    assert_close(dm(x).numpy(), want, f"resnet{depth} logits")
    if train:  # the running statistics moved the same way
        for name, value in tm.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                assert_close(dm.state_dict()[name].numpy(), value.numpy(), name)


def case_resnet18_eval():
    _compare_resnet(18, (2, 3, 64, 64), train=False)


def case_resnet50_eval():
    _compare_resnet(50, (1, 3, 64, 64), train=False)


def case_resnet18_train_mode():
    _compare_resnet(18, (3, 3, 40, 40), train=True)


GPT_CFG = dict(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=32)


def _gpt_pair():
    tm = torch_models.GPT(**GPT_CFG)
    dm = _ds_copy(tm, ds.models.gpt2(ds.models.GPTConfig(**GPT_CFG)))
    return tm, dm


def case_gpt_forward():
    torch.manual_seed(0)
    tm, dm = _gpt_pair()
    for b, t in [(2, 16), (1, 1), (3, 7)]:
        idx = np.random.default_rng(t).integers(0, GPT_CFG["vocab_size"], size=(b, t))
        with torch.no_grad():
            want = tm(torch.from_numpy(idx)).numpy()
        assert_close(dm(idx).numpy(), want, f"gpt logits [{b}, {t}]")


def case_gpt_sgd_step():
    """One SGD step: the same loss, and the same parameters after it (the tied
    embedding gets the gradients of both the lookup and the output projection)."""
    torch.manual_seed(1)
    tm, dm = _gpt_pair()
    tokens = np.random.default_rng(4).integers(0, GPT_CFG["vocab_size"], size=(2, 13))
    x, y = tokens[:, :-1].copy(), tokens[:, 1:].copy()

    opt = torch.optim.SGD(tm.parameters(), lr=0.5)
    logits = tm(torch.from_numpy(x))
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), torch.from_numpy(y).view(-1))
    loss.backward()
    opt.step()

    step = ds.optim.TrainStep(dm, ds.optim.SGD(lr=0.5), ds.models.lm_loss)
    ds_loss, _ = step.step(x, y)
    assert_close(float(ds_loss.item()), float(loss.item()), "loss")
    got = dm.state_dict()
    for name, value in tm.state_dict().items():
        if name in got:
            assert_close(got[name].numpy(), value.detach().numpy(), name)


if __name__ == "__main__":
    globals()["case_" + sys.argv[1]]()
    print("ok")
