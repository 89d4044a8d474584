"""ds.grad / ds.value_and_grad, ds.nn and ds.optim from Python."""
import numpy as np
import pytest

import deepseek as ds


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


def test_grad_matches_finite_differences_in_float64():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))

    def f(x, w):
        return ds.sum(ds.tanh(ds.matmul(x, w)))

    value, (gx, gw) = ds.value_and_grad(f, argnums=(0, 1))(x, w)
    assert value.item() == pytest.approx(np.tanh(x @ w).sum(), rel=1e-12)
    np.testing.assert_allclose(np.asarray(gx), numeric_grad(lambda v: np.tanh(v @ w).sum(), x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(ds.grad(f, 1)(x, w)),
                               numeric_grad(lambda v: np.tanh(x @ v).sum(), w), rtol=1e-6,
                               atol=1e-8)


def test_grad_rejects_a_non_scalar_value():
    with pytest.raises(ds.ShapeError, match="one element"):
        ds.grad(lambda x: x * 2)(np.ones(3))


def test_layers_state_dict_and_modes():
    ds.nn.manual_seed(0)
    model = ds.nn.Sequential(ds.nn.Conv2d(1, 4, 3, padding=1), ds.nn.ReLU(), ds.nn.MaxPool2d(2),
                             ds.nn.Flatten(), ds.nn.Linear(16, 3))
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "4.bias", "4.weight"]
    assert model.eval() is model and not model[4].training
    x = np.random.default_rng(1).random((2, 1, 4, 4), dtype=np.float32)
    other = ds.nn.Sequential(ds.nn.Conv2d(1, 4, 3, padding=1), ds.nn.ReLU(), ds.nn.MaxPool2d(2),
                             ds.nn.Flatten(), ds.nn.Linear(16, 3))
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(other(x)))
    with pytest.raises(ds.Error, match="missing: 4.bias"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "4.bias"})


def test_losses_match_numpy():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([2, 1], dtype=np.int64)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -(logp[0, 2] + logp[1, 1]) / 2
    assert ds.nn.functional.cross_entropy(logits, labels).item() == pytest.approx(want, rel=1e-12)
    x, y = np.array([0.5, -2.0]), np.array([0.0, 1.0])
    assert ds.nn.functional.mse_loss(x, y).item() == pytest.approx(((x - y) ** 2).mean())


def test_train_step_reduces_the_loss_and_counts_steps():
    rng = np.random.default_rng(2)
    centers = np.array([[-2.0, -2.0], [2.0, -2.0], [0.0, 2.0]], dtype=np.float32)
    labels = np.arange(60, dtype=np.int64) % 3
    x = (centers[labels] + 0.3 * rng.standard_normal((60, 2))).astype(np.float32)
    ds.nn.manual_seed(3)
    model = ds.nn.Sequential(ds.nn.Linear(2, 16), ds.nn.Tanh(), ds.nn.Linear(16, 3))
    opt = ds.optim.Adam(lr=0.05)
    step = ds.optim.TrainStep(model, opt, ds.nn.functional.cross_entropy)
    first = step.step(x, labels)[0].item()
    for _ in range(40):
        loss, logits = step.step(x, labels)
    assert loss.item() < 0.2 * first
    assert opt.steps == 41
    acc = (np.asarray(ds.optim.EvalStep(model)(x)).argmax(1) == labels).mean()
    assert acc > 0.95


def test_train_step_without_the_output_returns_none_and_trains_the_same():
    x = np.random.default_rng(5).standard_normal((8, 3)).astype(np.float32)
    t = np.arange(8, dtype=np.int64) % 2
    losses = {}
    for keep in (True, False):
        ds.nn.manual_seed(6)
        model = ds.nn.Linear(3, 2)
        step = ds.optim.TrainStep(model, ds.optim.SGD(lr=0.1), ds.nn.functional.cross_entropy,
                                  return_output=keep)
        results = [step.step(x, t) for _ in range(3)]
        assert (results[-1][1] is None) == (not keep)
        losses[keep] = [r[0].item() for r in results]
    assert losses[True] == losses[False]


def test_train_step_takes_a_python_loss_and_schedules_set_the_lr():
    ds.nn.manual_seed(4)
    model = ds.nn.Linear(3, 1)
    opt = ds.optim.SGD(lr=0.1, momentum=0.9)
    step = ds.optim.TrainStep(model, opt, lambda out, target: ds.mean(ds.square(out - target)))
    x = np.ones((4, 3), dtype=np.float32)
    t = np.zeros((4, 1), dtype=np.float32)
    losses = [step.step(x, t)[0].item() for _ in range(3)]
    assert losses[2] < losses[0]
    sched = ds.optim.OneCycleLR(max_lr=0.1, total_steps=100)
    sched.apply(opt, 29)
    assert opt.lr == pytest.approx(0.1)
