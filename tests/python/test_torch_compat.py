"""@ds.torch_compat and deepseek.torch: torch-style calls on ds tensors, each checked against
a float64 numpy reference (float32 tolerance: rtol 2e-5, atol 1e-6 unless stated)."""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import deepseek as ds
import deepseek.torch as torch
from deepseek.torch import TorchCompatError
from deepseek.torch import nn as torch_nn

F = torch_nn.functional
TOL = dict(rtol=2e-5, atol=1e-6)

ISSUE_PROGRAM = """\
import torch
import deepseek as ds
@ds.torch_compat
def pytorch_model(x):
    return torch.nn.functional.relu(x * 2)
x = ds.Tensor([1.0, 2.0, 3.0])
print(pytorch_model(x))
"""

# Put first on PYTHONPATH: drops every sys.path entry holding a torch package, so the
# subprocess runs as on a machine without PyTorch.
HIDE_TORCH = """\
import os, sys
sys.path[:] = [p for p in sys.path
               if not os.path.exists(os.path.join(p or '.', 'torch', '__init__.py'))]
"""


def _env(tmp_path, hide_torch):
    package_root = os.path.dirname(os.path.dirname(ds.__file__))
    paths = [package_root, os.environ.get("PYTHONPATH", "")]
    if hide_torch:
        (tmp_path / "sitecustomize.py").write_text(HIDE_TORCH)
        paths.insert(0, str(tmp_path))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _run(tmp_path, args, hide_torch=True, python=sys.executable):
    return subprocess.run([python, *args], env=_env(tmp_path, hide_torch), capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(got, want, **tol):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, **(tol or TOL))


# ---- the issue's program, with and without PyTorch
def test_issue_program_without_pytorch(tmp_path):
    (tmp_path / "prog.py").write_text(ISSUE_PROGRAM)
    plain = _run(tmp_path, ["prog.py"])
    assert plain.returncode != 0 and "No module named 'torch'" in plain.stderr, plain
    run = _run(tmp_path, ["-m", "deepseek.torch", "prog.py"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[2. 4. 6.]"


def test_runner_imports_beside_the_program_and_passes_arguments(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "helpers.py").write_text("import torch\ndef double(x):\n    return torch.mul(x, 2)\n")
    (app / "main.py").write_text("import sys, helpers\nprint(helpers.double(float(sys.argv[1])),"
                                 " sys.argv[2:])\n")
    run = _run(tmp_path, ["-m", "deepseek.torch", str(app / "main.py"), "1.5", "--flag"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "3.0 ['--flag']"


def test_import_hook_answers_only_torch_names(tmp_path):
    (tmp_path / "hook.py").write_text(textwrap.dedent("""\
        import deepseek as ds
        ds.torch_compat.install_import_hook()
        import torch
        import torch.nn.functional as F
        import deepseek.torch
        assert torch is deepseek.torch and F is deepseek.torch.nn.functional
        assert torch.nn.functional is F
        try:
            import torch.fft
        except ImportError as e:
            print(e)
        import numpy  # other imports are untouched
        """))
    run = _run(tmp_path, ["hook.py"])
    assert run.returncode == 0, run.stderr
    assert "ds.torch_compat: torch.fft is not supported" in run.stdout


def _python_with_torch():
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([python, "-c", "import torch, deepseek"], capture_output=True,
                               env=_env(None, False)) if os.path.exists(python) else None
        if probe is not None and probe.returncode == 0:
            return python
    return None


def test_issue_program_with_real_pytorch(tmp_path):
    python = _python_with_torch()
    if python is None:
        pytest.skip("no interpreter here imports real torch with this deepseek build")
    (tmp_path / "prog.py").write_text(ISSUE_PROGRAM + textwrap.dedent("""\
        import torch.nn.functional as F
        def helper(x):  # not decorated: real torch hands the TorchTensor to ds
            return F.relu(torch.flatten(x)) + torch.ones(3).numpy()
        @ds.torch_compat
        def model(x):
            return helper(x.view(3, 1) - 2)
        print(model(x), type(model(x)).__name__, type(torch).__module__)
        # With PyTorch present the hook changes nothing, even for submodules torch lacks.
        ds.torch_compat.install_import_hook()
        import importlib
        assert importlib.import_module("torch") is torch and "deepseek" not in torch.__file__
        try:
            import torch.no_such_module
        except ModuleNotFoundError as e:
            assert "ds.torch_compat" not in str(e), e
        """))
    run = _run(tmp_path, ["prog.py"], hide_torch=False, python=python)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["[2. 4. 6.]", "[1. 1. 2.] Tensor builtins"]


SAME_MODEL_TWICE = """\
import numpy as np
import torch
import deepseek.torch as dtorch


def build(nn):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 8, 3, stride=2, groups=2, bias=False), nn.GELU(),
                nn.AvgPool2d(2, 1), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.head = nn.ModuleList([nn.Linear(32, 16), nn.LayerNorm(16),
                                       nn.Linear(16, 10)])
            self.embed = nn.Embedding(10, 10)
            self.drop = nn.Dropout(0.3)

        def forward(self, x, labels):
            h = self.drop(self.features(x))
            for layer in self.head:
                h = layer(h)
            return nn.LogSoftmax(dim=1)(h + self.embed(labels))
    return Net()


torch.manual_seed(0)
ref = build(torch.nn)
with torch.no_grad():
    for p in ref.parameters():
        p.add_(torch.randn(p.shape) * 0.1)  # norm scales and shifts away from 1 and 0
mine = build(dtorch.nn)
assert list(mine.state_dict()) == list(ref.state_dict()), (list(mine.state_dict()))
mine.load_state_dict(ref.state_dict())
x, labels = torch.randn(6, 1, 12, 12), torch.tensor([1, 2, 3, 4, 5, 0])
ref.drop.p = mine.drop.p = 0.0  # train mode without randomness: batch statistics
for mode in ("train", "eval"):
    getattr(ref, mode)(), getattr(mine, mode)()
    with torch.no_grad():
        want = ref(x, labels).numpy()
    got = mine(dtorch.tensor(x.numpy()), dtorch.tensor(labels.numpy())).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for name, buf in ref.named_buffers():
        np.testing.assert_allclose(dict(mine.named_buffers())[name].numpy(), buf.numpy(),
                                   rtol=1e-5, atol=1e-6)
print("ok")
"""


def test_nn_modules_match_pytorch_given_its_weights(tmp_path):
    python = _python_with_torch()
    if python is None:
        pytest.skip("no interpreter here imports real torch with this deepseek build")
    (tmp_path / "same_model.py").write_text(SAME_MODEL_TWICE)
    run = _run(tmp_path, ["same_model.py"], hide_torch=False, python=python)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "ok"


def test_nn_modules_defaults_and_registration():
    torch.manual_seed(1)
    layer = torch.nn.Linear(400, 30)
    bound = 1 / np.sqrt(400)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = layer.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.BatchNorm2d(3))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight",
                                                        "2.bias"]
    assert [n for n, _ in model.named_buffers()] == ["2.running_mean", "2.running_var",
                                                     "2.num_batches_tracked"]
    assert model.eval() is model and not model[2].training
    with pytest.raises(KeyError, match="missing keys"):
        model.load_state_dict({"0.weight": w})
    with pytest.raises(ds.ShapeError, match="'0.bias' has shape"):
        model.load_state_dict({"0.bias": np.zeros(3)}, strict=False)
    with pytest.raises(TorchCompatError, match="torch.nn.LSTM"):
        torch.nn.LSTM(2, 2)


# ---- the decorator
def test_decorator_swaps_torch_only_during_the_call():
    # A module whose `torch` is something else and whose `F` is a module named like torch's:
    # during the call both mean deepseek.torch; the module's own globals never change.
    real_f = types.ModuleType("torch.nn.functional")
    namespace = {"torch": "the real torch", "F": real_f}
    exec("def model(x):\n    return F.relu(x).sum(dim=0) + torch.ones(2)\n", namespace)
    decorated = ds.torch_compat(namespace["model"])
    x = ds.Tensor(np.array([[1.0, -2.0], [3.0, 4.0]], dtype=np.float32))
    out = decorated(x)
    assert isinstance(out, ds.Tensor)
    close(out.numpy(), [5.0, 5.0])
    assert decorated.__name__ == "model"
    assert namespace["torch"] == "the real torch" and namespace["F"] is real_f
    with pytest.raises(AttributeError):  # undecorated, F is still the (empty) module
        namespace["model"](x)


WEIGHT = ds.Tensor(np.array([[1.0, 2.0], [3.0, -4.0]], dtype=np.float32))


def test_module_level_ds_tensors_get_torch_methods():
    @ds.torch_compat
    def project(x):
        return (WEIGHT @ x).sum(dim=1), WEIGHT
    out, weight = project(ds.Tensor(np.eye(2, dtype=np.float32)))
    close(out.numpy(), [3.0, -1.0])
    assert weight is WEIGHT  # returned as the very ds tensor it was
    assert isinstance(WEIGHT, ds.Tensor)


def test_decorator_returns_structures_of_ds_tensors():
    @ds.torch_compat
    def split_stats(x):
        values, indices = torch.max(x, dim=1)
        return {"max": values, "argmax": indices, "parts": x.chunk(2, dim=0)}
    x = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], dtype=np.float32)
    out = split_stats(ds.Tensor(x))
    close(out["max"].numpy(), [5.0, 7.0])
    assert out["argmax"].numpy().tolist() == [1, 0]
    assert all(isinstance(p, ds.Tensor) for p in out["parts"])
    close(out["parts"][1].numpy(), x[1:])


def test_decorated_code_builds_graphs(rng):
    w, b = rand(rng, 5, 3), rand(rng, 5)

    @ds.torch_compat
    def head(x):
        h = torch.nn.functional.linear(x, torch.tensor(w), torch.tensor(b))
        return torch.nn.functional.log_softmax(h.view(x.size(0), -1), dim=1)

    x = rand(rng, 4, 3)
    graph = ds.Graph()
    graph.output(head(graph.placeholder("x", [4, 3])), name="y")
    got = ds.compile(graph, target="cpu").run({"x": x})["y"]
    h = x.astype(np.float64) @ w.T + b
    want = h - np.log(np.exp(h).sum(1, keepdims=True))
    close(got, want, rtol=1e-5, atol=1e-5)
    close(head(ds.Tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_decorated_code_differentiates_with_ds_grad(rng):
    @ds.torch_compat
    def loss(x, w):
        return torch.nn.functional.mse_loss(torch.tanh(x @ w), torch.zeros(3, 2))
    x, w = rand(rng, 3, 4), rand(rng, 4, 2)
    got = ds.grad(loss, argnums=1)(x, w)
    y = np.tanh(x.astype(np.float64) @ w)
    close(got.numpy(), x.T @ (2 * y / y.size * (1 - y ** 2)), rtol=1e-5, atol=1e-6)


# ---- torch.* functions and Tensor methods against numpy
def test_reductions_with_dim_and_keepdim(rng):
    a = rand(rng, 3, 4, 5)
    x = torch.tensor(a)
    a64 = a.astype(np.float64)
    close(torch.sum(x, dim=1).numpy(), a64.sum(1))
    close(x.sum(dim=(0, 2), keepdim=True).numpy(), a64.sum((0, 2), keepdims=True))
    close(x.mean(-1).numpy(), a64.mean(-1))
    close(torch.amax(x, dim=0).numpy(), a64.max(0))
    close(x.std(dim=2).numpy(), a64.std(2, ddof=1), rtol=1e-5)  # torch: unbiased
    close(x.var(dim=2, unbiased=False).numpy(), a64.var(2), rtol=1e-5)
    values, indices = x.min(dim=1, keepdim=True)
    close(values.numpy(), a64.min(1, keepdims=True))
    assert np.array_equal(indices.numpy(), a.argmin(1)[:, None, :])
    close(torch.max(x).numpy(), a64.max())
    close(torch.logsumexp(x, dim=1).numpy(), np.log(np.exp(a64).sum(1)), rtol=1e-5)
    assert torch.argmax(x, dim=2).numpy().tolist() == a.argmax(2).tolist()
    assert (x > 0).any(dim=1).numpy().tolist() == (a > 0).any(1).tolist()
    assert torch.all(x > -10).item() and not (x > 0).all().item()
    close(x.norm(dim=-1).numpy(), np.sqrt((a64 ** 2).sum(-1)), rtol=1e-5)
    index = np.array([[[2, 0, 1, 1, 0]]] * 3)
    close(x.gather(1, torch.tensor(index)).numpy(), np.take_along_axis(a, index, 1))
    close(torch.index_select(x, 2, torch.tensor([4, 0])).numpy(), a[:, :, [4, 0]])
    close(x[0].triu(1).numpy(), np.triu(a[0], 1))


def test_shape_functions_and_methods(rng):
    a = rand(rng, 2, 3, 4)
    x = torch.tensor(a)
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.dim() == 3 and x.numel() == 24
    assert x.shape == torch.Size([2, 3, 4])
    close(x.view(6, 4).numpy(), a.reshape(6, 4))
    close(x.reshape(-1).numpy(), a.reshape(-1))
    close(x.permute(2, 0, 1).contiguous().numpy(), a.transpose(2, 0, 1))
    close(x.transpose(0, 2).numpy(), a.swapaxes(0, 2))
    close(x.unsqueeze(1).numpy(), a[:, None])
    close(x.flatten().numpy(), a.reshape(-1))
    close(x.flatten(1).numpy(), a.reshape(2, 12))
    close(x[:, 1:, ::2].numpy(), a[:, 1:, ::2])
    close(x[:1].expand(3, 3, 4).numpy(), np.broadcast_to(a[:1], (3, 3, 4)))
    close(x[0].repeat(2, 1).numpy(), np.tile(a[0], (2, 1)))
    close(x.squeeze(0).numpy(), a)  # a non-unit dim is left alone, as torch does
    close(torch.cat([x, x * 2], dim=1).numpy(), np.concatenate([a, a * 2], 1))
    close(torch.stack([x, -x], dim=-1).numpy(), np.stack([a, -a], -1))
    parts = torch.split(x, [1, 3], dim=2)
    close(parts[1].numpy(), a[:, :, 1:])
    assert [p.shape[1] for p in x.chunk(2, dim=1)] == [2, 1]
    close(torch.t(x[0]).numpy(), a[0].T)
    close(x[0].T.numpy(), a[0].T)


def test_elementwise_math_and_where(rng):
    a, b = rand(rng, 4, 5), rand(rng, 5)
    x, y = torch.tensor(a), torch.tensor(b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    close((x * 2 + y / 3 - 1).numpy(), a64 * 2 + b64 / 3 - 1, rtol=1e-5)
    close((2 - x).numpy(), 2 - a64)
    close(torch.add(x, y, alpha=3).numpy(), a64 + 3 * b64, rtol=1e-5)
    close(torch.clamp(x, min=-0.5, max=0.5).numpy(), np.clip(a64, -0.5, 0.5))
    close(torch.where(x > y, x, y).numpy(), np.maximum(a64, b64))
    close(x.masked_fill(x < 0, 0.0).numpy(), np.maximum(a64, 0))
    close(torch.exp(x).numpy(), np.exp(a64), rtol=1e-5)
    close(x.abs().sqrt().numpy(), np.sqrt(np.abs(a64)), rtol=1e-5)
    close(torch.softmax(x, dim=0).numpy(), np.exp(a64) / np.exp(a64).sum(0), rtol=1e-5)
    close(torch.matmul(x, torch.tensor(a.T)).numpy(), a64 @ a64.T, rtol=1e-5, atol=1e-5)
    close((x @ x.t()).numpy(), a64 @ a64.T, rtol=1e-5, atol=1e-5)
    assert (x > 0).dtype == torch.bool
    assert x.long().dtype == torch.int64 and x.float().dtype == torch.float32
    assert x.double().dtype == torch.float64 and x.is_floating_point()
    assert x.to(torch.float16).dtype == torch.float16 and x.to("cpu") is x


def test_creation():
    assert torch.zeros(2, 3).numpy().tolist() == [[0.0] * 3] * 2
    assert torch.ones((2,), dtype=torch.int64).numpy().tolist() == [1, 1]
    assert torch.arange(4).dtype == torch.int64 and torch.arange(0.0, 1.0, 0.5).numpy().tolist() \
        == [0.0, 0.5]
    close(torch.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    close(torch.eye(3).numpy(), np.eye(3))
    close(torch.full_like(torch.zeros(2, 2), 7.0).numpy(), np.full((2, 2), 7.0))
    torch.manual_seed(3)
    first = torch.randn(1000).numpy()
    torch.manual_seed(3)
    assert np.array_equal(torch.randn(1000).numpy(), first)
    assert abs(first.mean()) < 0.15 and abs(first.std() - 1) < 0.1


# ---- torch.nn.functional
def _conv2d_ref(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + b[None, :, None, None]


def test_functional_layers(rng):
    x, w, b = rand(rng, 2, 3, 7, 7), rand(rng, 4, 3, 3, 3), rand(rng, 4)
    got = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=1)
    close(got.numpy(), _conv2d_ref(x.astype(np.float64), w, b, 2, 1), rtol=1e-5, atol=1e-5)
    same = F.conv2d(torch.tensor(x), torch.tensor(w), padding="same")
    close(same.numpy(), _conv2d_ref(x.astype(np.float64), w, np.zeros(4), 1, 1), rtol=1e-5,
          atol=1e-5)
    a = x.astype(np.float64)[:, :, :6, :6]
    pooled = a.reshape(2, 3, 3, 2, 3, 2)
    close(F.max_pool2d(torch.tensor(x[:, :, :6, :6]), 2).numpy(), pooled.max((3, 5)))
    close(F.avg_pool2d(torch.tensor(x[:, :, :6, :6]), 2).numpy(), pooled.mean((3, 5)))
    close(F.adaptive_avg_pool2d(torch.tensor(x), 1).numpy(),
          x.astype(np.float64).mean((2, 3), keepdims=True), rtol=1e-5)
    h = rand(rng, 4, 6)
    g, s = rand(rng, 6), rand(rng, 6)
    h64 = h.astype(np.float64)
    norm = (h64 - h64.mean(1, keepdims=True)) / np.sqrt(h64.var(1, keepdims=True) + 1e-5)
    close(F.layer_norm(torch.tensor(h), (6,), torch.tensor(g), torch.tensor(s)).numpy(),
          norm * g + s, rtol=1e-4, atol=1e-5)
    close(F.linear(torch.tensor(h), torch.tensor(w.reshape(4, -1)[:, :6])).numpy(),
          h64 @ w.reshape(4, -1)[:, :6].T, rtol=1e-5, atol=1e-5)
    # torch.nn.functional.pad lists the LAST dim first.
    padded = F.pad(torch.tensor(h), (1, 2, 0, 1))
    close(padded.numpy(), np.pad(h64, ((0, 1), (1, 2))))


def test_functional_activations_and_losses(rng):
    a = rand(rng, 6, 5)
    x = torch.tensor(a)
    a64 = a.astype(np.float64)
    from math import erf
    gelu = a64 * 0.5 * (1 + np.vectorize(erf)(a64 / np.sqrt(2)))
    close(F.gelu(x).numpy(), gelu, rtol=1e-5, atol=1e-6)
    close(F.silu(x).numpy(), a64 / (1 + np.exp(-a64)), rtol=1e-5)
    close(F.relu6(x * 10).numpy(), np.clip(a64 * 10, 0, 6), rtol=1e-5)
    close(F.leaky_relu(x, 0.2).numpy(), np.where(a64 > 0, a64, 0.2 * a64))
    log_p = a64 - np.log(np.exp(a64).sum(1, keepdims=True))
    close(F.log_softmax(x, dim=1).numpy(), log_p, rtol=1e-5, atol=1e-6)
    close(F.softmax(x, dim=-1).numpy(), np.exp(log_p), rtol=1e-5)
    target = np.array([0, 4, 2, 1, 3, 0])
    close(F.cross_entropy(x, torch.tensor(target)).numpy(),
          -log_p[np.arange(6), target].mean(), rtol=1e-5)
    close(F.nll_loss(F.log_softmax(x, 1), torch.tensor(target), reduction="sum").numpy(),
          -log_p[np.arange(6), target].sum(), rtol=1e-5)
    y = rand(rng, 6, 5)
    close(F.mse_loss(x, torch.tensor(y)).numpy(), ((a64 - y) ** 2).mean(), rtol=1e-5)
    close(F.l1_loss(x, torch.tensor(y), reduction="none").numpy(), np.abs(a64 - y))
    assert np.array_equal(F.dropout(x, 0.5, training=False).numpy(), a)
    kept = F.dropout(torch.ones(10000), 0.25).numpy()
    assert set(np.unique(kept)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((kept == 0).mean() - 0.25) < 0.03


def test_scaled_dot_product_attention(rng):
    q, k, v = rand(rng, 2, 3, 4, 8), rand(rng, 2, 3, 5, 8), rand(rng, 2, 3, 5, 8)
    mask = rng.random((4, 5)) > 0.3
    mask[:, 0] = True  # True: attend (torch's boolean convention here)

    def reference(q, k, v, allowed):
        scores = q.astype(np.float64) @ k.swapaxes(-1, -2) / np.sqrt(8)
        scores = np.where(allowed, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        return (p / p.sum(-1, keepdims=True)) @ v

    got = F.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                         attn_mask=torch.tensor(mask))
    close(got.numpy(), reference(q, k, v, mask), rtol=1e-5, atol=1e-6)
    k, v = k[:, :, :4], v[:, :, :4]
    causal = F.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                            is_causal=True)
    close(causal.numpy(), reference(q, k, v, np.tril(np.ones((4, 4), dtype=bool))), rtol=1e-5,
          atol=1e-6)


# ---- errors naming the call
def test_unmapped_calls_name_themselves():
    x = torch.tensor([1.0, 2.0])
    with pytest.raises(TorchCompatError, match=r"ds.torch_compat: torch.fft.fft is not supported"):
        torch.fft.fft(x)
    with pytest.raises(TorchCompatError, match=r"torch.linalg.svd"):
        torch.linalg.svd(x)
    with pytest.raises(TorchCompatError, match=r"torch.device\('cuda'\)"):
        torch.device("cuda")
    assert torch.device("cpu") == "cpu" and not torch.cuda.is_available()
    with pytest.raises(TorchCompatError, match=r"torch.not_a_function"):
        torch.not_a_function(x)
    with pytest.raises(NotImplementedError, match=r"torch.nn.functional.grid_sample"):
        F.grid_sample(x, x)
    with pytest.raises(TorchCompatError, match=r"torch.nn.Transformer"):
        torch.nn.Transformer()
    with pytest.raises(TorchCompatError, match=r"Tensor.scatter_"):
        x.scatter_(0, x, x)
    with pytest.raises(TorchCompatError, match=r"max_pool2d\(return_indices=...\)"):
        F.max_pool2d(torch.zeros(1, 1, 2, 2), 2, return_indices=True)
    with pytest.raises(TorchCompatError, match=r"Tensor.__setitem__"):
        x[0] = 3.0
    assert not hasattr(x, "grad_fn") and getattr(torch, "cuda_missing", None) is None

    @ds.torch_compat
    def uses_fft(t):
        return torch.fft.rfft(t)
    with pytest.raises(TorchCompatError, match="torch.fft.rfft"):
        uses_fft(ds.Tensor([1.0, 2.0]))
