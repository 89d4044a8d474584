"""@ds.compile over functions: traced once per signature, symbolic batch."""
import numpy as np
import pytest

import deepseek as ds


def test_decorator_traces_once_per_signature():
    traces = []

    @ds.compile
    def f(x, w):
        traces.append(1)
        return ds.tanh(x @ w) + 1.0

    x = np.random.rand(4, 3).astype(np.float32)
    w = np.random.rand(3, 2).astype(np.float32)
    y = f(ds.tensor(x), ds.tensor(w))
    np.testing.assert_allclose(y.numpy(), np.tanh(x @ w) + 1.0, rtol=1e-5, atol=1e-6)
    f(ds.tensor(x), ds.tensor(w))
    assert len(traces) == 1
    f(ds.tensor(np.random.rand(5, 3).astype(np.float32)), ds.tensor(w))
    assert len(traces) == 2 and f.compilations == 2


def test_symbolic_batch_serves_every_batch_size():
    @ds.compile(target="cpu", symbolic_batch=True)
    def g(x):
        return ds.relu(x - 1.0), ds.sum(x, axis=1)

    for n in (1, 7, 33):
        x = np.full((n, 4), 3.0, dtype=np.float32)
        r, s = g(x)
        assert r.shape == (n, 4) and s.shape == (n,)
        np.testing.assert_allclose(s.numpy(), np.full(n, 12.0))
    assert g.compilations == 1


def test_compile_rejects_non_callables_and_reports_shape_errors():
    with pytest.raises(TypeError):
        ds.compile(42)

    @ds.compile
    def h(a, b):
        return a + b

    with pytest.raises(ds.ShapeError):
        h(np.zeros((2, 3), np.float32), np.zeros((4,), np.float32))
