"""Shared helpers for the Python API tests: inputs per dtype and tolerances."""
import numpy as np
import pytest

import deepseek as ds

FLOAT_DTYPES = ["float32", "float64", "float16", "bfloat16"]
INT_DTYPES = ["int32", "int64"]

# Tolerances per dtype against a float64 reference computed from the same (rounded)
# inputs: a few units in the last place of each format.
TOL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=2e-5, atol=1e-6),
    "float16": dict(rtol=2e-3, atol=2e-3),
    "bfloat16": dict(rtol=1.6e-2, atol=1.6e-2),
    "int32": dict(rtol=0, atol=0),
    "int64": dict(rtol=0, atol=0),
    "int8": dict(rtol=0, atol=0),
    "uint8": dict(rtol=0, atol=0),
    "bool": dict(rtol=0, atol=0),
}


# The op conformance tables run once per device here (`on_device`): inputs made by
# make() live on it, so every op runs there (its CUDA kernel, or the CPU's fallback).
DEVICES = ["cpu"] + (["cuda"] if "cuda" in ds.available_targets() else [])
_device = "cpu"


@pytest.fixture(params=DEVICES)
def on_device(request):
    global _device
    _device = request.param
    yield request.param
    _device = "cpu"


def make(values, dtype):
    """A ds tensor of ``dtype`` from float64 values, and those values as rounded to it (f64)."""
    t = ds.Tensor(np.asarray(values, dtype=np.float64), dtype=dtype)
    if _device != "cpu":
        t = t.to(_device)
    return t, as_f64(t)


def on_dev(t):
    """``t`` on the device under test (see on_device)."""
    return t.to(_device) if _device != "cpu" else t


def as_f64(t):
    return np.asarray(t.to("cpu").astype("float64").numpy(), dtype=np.float64)


def assert_close(got, want, dtype, scale=1.0):
    tol = TOL[str(dtype)]
    if str(dtype) in ("float16", "bfloat16"):
        # The reference rounded to the output format: overflow to inf matches.
        with np.errstate(over="ignore"):
            want = as_f64(ds.Tensor(np.asarray(want, dtype=np.float64), dtype=dtype))
    np.testing.assert_allclose(as_f64(got) if isinstance(got, ds.Tensor) else got, want,
                               rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)


def require_op(name):
    """Skips the test while the op is not registered in this build."""
    if name not in ds.op_names():
        pytest.skip(f"op '{name}' is not registered in this build")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
