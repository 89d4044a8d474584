"""ds.compile(precision=...): matmul in bf16/fp16, float32 in and out."""
import numpy as np
import pytest

import deepseek as ds


@pytest.mark.parametrize("precision,tol", [("bf16", 1e-2), ("fp16", 1e-3)])
def test_compiled_mlp_in_low_precision_is_close_to_float32(precision, tol):
    def mlp(x, w1, w2):
        return ds.softmax(ds.relu(x @ w1) @ w2)

    rng = np.random.default_rng(0)
    args = [ds.tensor(rng.standard_normal(s).astype(np.float32) * 0.3)
            for s in [(16, 32), (32, 64), (64, 10)]]
    ref = ds.compile(mlp, target="cpu")(*args).numpy()
    low = ds.compile(mlp, target="cpu", precision=precision)(*args)
    assert str(low.dtype) == "float32"
    err = np.linalg.norm(low.numpy() - ref) / np.linalg.norm(ref)
    assert 0 < err < tol


def test_unknown_precision_names_the_allowed_values():
    g = ds.Graph()
    g.output(ds.relu(g.placeholder("x", shape=[2])), "y")
    with pytest.raises(ValueError, match='one of "fp32", "bf16", "fp16", got "fp64"'):
        ds.compile(g, target="cpu", precision="fp64")
