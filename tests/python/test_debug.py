"""ds.debug: statistics every N steps over a compiled TrainStep, NaN/Inf detection."""
import numpy as np
import pytest

import deepseek as ds


def mse(out, y):
    return ds.nn.functional.mse_loss(out, y)


def test_tensor_stats_skip_nonfinite_values():
    s = ds.debug.tensor_stats(np.array([1, -2, 3, np.nan, np.inf, 2], np.float32))
    assert s["numel"] == 6 and s["nonfinite"] == 2
    assert s["mean"] == pytest.approx(1.0)
    assert s["std"] == pytest.approx(np.std([1, -2, 3, 2]))
    assert (s["min"], s["max"]) == (-2.0, 3.0)
    assert s["norm"] == pytest.approx(np.sqrt(18))


def test_statistics_every_n_steps_to_tensorboard(tmp_path):
    ds.nn.manual_seed(2)
    model = ds.nn.Sequential(ds.nn.Linear(3, 4), ds.nn.Tanh(), ds.nn.Linear(4, 2))
    lr = 0.1
    step = ds.optim.TrainStep(model, ds.optim.SGD(lr=lr), mse)
    writer = ds.tensorboard.SummaryWriter(tmp_path)
    dbg = ds.debug.Debugger(model, step, mse, writer=writer, every=2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)

    w0 = np.asarray(model.state_dict()["2.weight"]).copy()
    dbg.step(x, y)
    w1 = np.asarray(model.state_dict()["2.weight"])
    g = (w0 - w1) / lr  # SGD: the gradient the TrainStep applied
    st = dbg.last_stats
    assert st["grads/2.weight/norm"] == pytest.approx(np.linalg.norm(g), rel=1e-4)
    assert st["grads/2.weight/mean"] == pytest.approx(g.mean(), abs=1e-6)
    assert st["params/2.weight/max"] == pytest.approx(w0.max())
    assert st["update_ratio/2.weight"] == pytest.approx(
        np.linalg.norm(w1 - w0) / np.linalg.norm(w0), rel=1e-4)
    assert dbg.activation_names == ["0:Linear", "1:Tanh", "2:Linear", "output"]
    assert -1 <= st["activations/1:Tanh/min"] <= st["activations/1:Tanh/max"] <= 1
    dbg.step(x, y)
    dbg.step(x, y)
    assert dbg.steps == 3
    writer.close()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("grads/0.weight/norm")] == [1, 3]
    assert [e.step for e in acc.Scalars("update_ratio/0.weight")] == [1, 3]
    assert [h.step for h in acc.Histograms("activations/1:Tanh")] == [1, 3]


def test_nonfinite_loss_names_the_op():
    model = ds.nn.Sequential(ds.nn.Linear(2, 1))
    model.load_state_dict({"0.weight": np.ones((1, 2), np.float32),
                           "0.bias": np.zeros(1, np.float32)})

    def log_loss(out, y):
        return ds.mean(ds.log(out) * y)

    step = ds.optim.TrainStep(model, ds.optim.SGD(lr=0.01), log_loss)
    dbg = ds.debug.Debugger(model, step, log_loss, every=0)
    y = np.ones((1, 1), np.float32)
    dbg.step(np.array([[1, 2]], np.float32), y)
    with pytest.raises(ds.debug.NonFiniteError, match="step 2: first non-finite value") as e:
        dbg.step(np.array([[-1, -3]], np.float32), y)
    assert (e.value.step, e.value.op, e.value.phase, e.value.layer) == (2, "log", "loss", "")
    assert isinstance(e.value, ValueError)
