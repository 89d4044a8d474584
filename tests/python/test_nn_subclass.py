"""ds.nn.Module subclassed in Python: registration by attribute, recursion through
Python and C++ children, eager calls, ds.grad, optimizers, ds.compile, TrainStep,
state dicts and safetensors."""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import deepseek as ds

F = ds.nn.functional


class Head(ds.nn.Module):
    """A nested Python module with its own parameter and a buffer forward updates."""

    def __init__(self, features, classes, scaled):
        super().__init__()
        self.hidden = ds.nn.Linear(features, 16)
        self.out = ds.nn.Linear(16, classes)
        self.scaled = scaled
        if scaled:
            self.scale = ds.nn.Parameter(np.ones(classes, dtype=np.float32))
            self.register_buffer("calls", np.zeros(1, dtype=np.float32))

    def forward(self, x):
        y = self.out(ds.relu(self.hidden(x)))
        if not self.scaled:
            return y
        self.calls = self.calls + 1.0
        return y * self.scale


class CNN(ds.nn.Module):
    def __init__(self, scaled_head=True):
        super().__init__()
        self.conv1 = ds.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = ds.nn.Conv2d(4, 8, 3, padding=1)
        self.pool = ds.nn.MaxPool2d(2)
        self.flatten = ds.nn.Flatten()
        self.head = Head(8 * 2 * 2, 3, scaled_head)

    def forward(self, x):
        x = self.pool(ds.relu(self.conv1(x)))
        x = self.pool(ds.relu(self.conv2(x)))
        return self.head(self.flatten(x))


def make_cnn(seed=5, scaled_head=True):
    ds.nn.manual_seed(seed)
    return CNN(scaled_head)


def data(rng, n=16):
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=n).astype(np.int64)
    return x, y


def test_attributes_register_parameters_buffers_and_children():
    net = make_cnn()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                     "head.scale", "head.hidden.weight", "head.hidden.bias", "head.out.weight",
                     "head.out.bias"]
    assert len(net.parameters()) == 9
    assert set(net.state_dict()) == set(names) | {"head.calls"}
    assert isinstance(net.head.scale, ds.Tensor)
    np.testing.assert_array_equal(np.asarray(net.head.scale), np.ones(3))
    # Assigning a tensor to a registered parameter updates its slot.
    net.head.scale = ds.Tensor(np.full(3, 2.0, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(dict(net.named_parameters())["head.scale"]), 2.0)
    # Plain attributes stay Python attributes.
    net.note = "plain"
    assert net.note == "plain" and "note" not in net.state_dict()
    assert "Head" in repr(net) and "CNN" in repr(net)
    with pytest.raises(TypeError, match="CNN.conv1: it is a submodule"):
        net.conv1 = 3
    with pytest.raises(TypeError, match="Head.scale: it is a parameter"):
        net.head.scale = "x"
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing
    # Reassigning a child replaces it in the C++ tree.
    net.flatten = ds.nn.Flatten()
    net.conv2 = ds.nn.Conv2d(4, 8, 3, padding=1)
    assert len(net.parameters()) == 9


def test_module_tree_walks_python_and_cpp_children():
    net = make_cnn()
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "conv1", "conv2", "pool", "flatten", "head", "head.hidden", "head.out"]
    assert net.children()[0] is net.conv1 and net.modules()[5] is net.head
    seq = ds.nn.Sequential(ds.nn.Linear(2, 3), net)
    assert [n for n, _ in seq.named_modules()][:4] == ["", "0", "1", "1.conv1"]
    assert seq.children()[1] is net  # the Python object itself, with its Python type
    linears = [m for m in seq.modules() if isinstance(m, ds.nn.Linear)]
    assert len(linears) == 3


def test_train_and_eval_recurse_through_python_and_cpp_children():
    net = make_cnn()
    net.eval()
    assert not net.training and not net.head.training and not net.head.hidden.training
    net.train()
    assert net.conv1.training and net.head.out.training


def test_eager_call_and_compile_agree(rng):
    net = make_cnn()
    x, _ = data(rng)
    eager = np.asarray(net(x))
    assert eager.shape == (16, 3)
    traced = ds.compile(lambda t: net(t), target="cpu")
    np.testing.assert_allclose(np.asarray(traced(ds.Tensor(x))), eager, rtol=1e-5, atol=1e-6)


def test_matches_an_equivalent_sequential_exactly(rng):
    net = make_cnn(seed=9, scaled_head=False)
    seq = ds.nn.Sequential(ds.nn.Conv2d(1, 4, 3, padding=1), ds.nn.ReLU(), ds.nn.MaxPool2d(2),
                           ds.nn.Conv2d(4, 8, 3, padding=1), ds.nn.ReLU(), ds.nn.MaxPool2d(2),
                           ds.nn.Flatten(), ds.nn.Linear(32, 16), ds.nn.ReLU(),
                           ds.nn.Linear(16, 3))
    mapping = {"conv1": "0", "conv2": "3", "head.hidden": "7", "head.out": "9"}
    seq.load_state_dict({mapping[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v
                         for k, v in net.state_dict().items()})
    x, y = data(rng)
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(seq(x)))
    steps = [ds.optim.TrainStep(m, ds.optim.SGD(lr=0.1, momentum=0.9), F.cross_entropy)
             for m in (net, seq)]
    for _ in range(3):
        a, b = (s.step(x, y)[0].item() for s in steps)
        assert a == b
    seq_params = dict(seq.named_parameters())
    for name, value in net.named_parameters():
        key = mapping[name.rsplit(".", 1)[0]] + "." + name.rsplit(".", 1)[1]
        np.testing.assert_array_equal(np.asarray(value), np.asarray(seq_params[key]), err_msg=name)


def test_train_step_reduces_the_loss_and_carries_buffers(rng):
    net = make_cnn()
    x, y = data(rng, 32)
    step = ds.optim.TrainStep(net, ds.optim.Adam(lr=1e-2), F.cross_entropy)
    losses = [step.step(x, y)[0].item() for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses
    # The buffer the forward replaces comes back from every compiled step.
    assert np.asarray(net.head.calls)[0] == 30


def test_grad_and_optimizer_step_equal_the_train_step(rng):
    x, y = data(rng)
    eager_net, step_net = make_cnn(), make_cnn()
    names = [n for n, _ in eager_net.named_parameters()]

    def loss(*params):
        return F.cross_entropy(ds.nn.functional_call(eager_net, dict(zip(names, params)), x), y)

    value, grads = ds.value_and_grad(loss, argnums=tuple(range(len(names))))(
        *eager_net.parameters())
    opt = ds.optim.SGD(lr=0.1)
    opt.step(eager_net, list(grads))
    step_loss = ds.optim.TrainStep(step_net, ds.optim.SGD(lr=0.1), F.cross_entropy).step(x, y)[0]
    assert value.item() == pytest.approx(step_loss.item(), rel=1e-6)
    want = dict(step_net.named_parameters())
    for name, p in eager_net.named_parameters():
        np.testing.assert_allclose(np.asarray(p), np.asarray(want[name]), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    with pytest.raises(KeyError, match="no parameters"):
        ds.nn.functional_call(eager_net, {"nope": ds.ones([1])}, x)


def test_state_dict_round_trip_through_safetensors(rng, tmp_path):
    net = make_cnn(seed=1)
    x, y = data(rng)
    ds.optim.TrainStep(net, ds.optim.Adam(lr=1e-2), F.cross_entropy).step(x, y)
    path = tmp_path / "cnn.safetensors"
    ds.save_safetensors(path, net.state_dict())
    saved = {k: np.asarray(v).copy() for k, v in net.state_dict().items()}
    other = make_cnn(seed=2)
    assert not np.array_equal(np.asarray(other(x)), np.asarray(net(x)))
    other.load_state_dict(ds.load_safetensors(path))
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(np.asarray(value), saved[name], err_msg=name)
    assert np.asarray(other.head.calls)[0] == 1  # the compiled step's forward
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(net(x)))
    with pytest.raises(ValueError, match="missing: head.scale"):
        other.load_state_dict({k: v for k, v in net.state_dict().items() if k != "head.scale"})


def test_steps_keep_their_model_alive_and_leave_nothing_at_exit(rng):
    x, y = data(rng)
    step = ds.optim.TrainStep(make_cnn(), ds.optim.SGD(lr=0.1), F.cross_entropy)
    evaluate = ds.optim.EvalStep(make_cnn())
    gc.collect()
    assert np.isfinite(step.step(x, y)[0].item())
    assert np.asarray(evaluate(x)).shape == (16, 3)
    # A model class and a loss lambda in __main__ referenced by live steps at exit:
    # nothing may be left uncollectable (nanobind reports leaked instances on stderr).
    script = textwrap.dedent("""
        import numpy as np
        import deepseek as ds
        class Net(ds.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = ds.nn.Linear(4, 3)
            def forward(self, x):
                return self.fc(x)
        model = Net()
        step = ds.optim.TrainStep(model, ds.optim.Adam(),
                                  lambda out, y: ds.nn.functional.cross_entropy(out, y))
        evaluate = ds.optim.EvalStep(model)
        step.step(np.ones((2, 4), np.float32), np.zeros(2, np.int64))
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    assert "leaked" not in run.stderr, run.stderr
