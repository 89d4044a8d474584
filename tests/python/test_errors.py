"""The exception hierarchy and its translation from C++, messages preserved."""
import numpy as np
import pytest

import deepseek as ds


@pytest.mark.parametrize("cls, bases", [
    (ds.Error, (RuntimeError,)),
    (ds.ShapeError, (ds.Error, ValueError)),
    (ds.DTypeError, (ds.Error, TypeError)),
    (ds.InvalidArgument, (ds.Error, ValueError)),
    (ds.NotFoundError, (ds.Error, LookupError)),
    (ds.UnavailableError, (ds.Error,)),
    (ds.IOError, (ds.Error, OSError)),
    (ds.OutOfMemoryError, (ds.Error, MemoryError)),
])
def test_hierarchy(cls, bases):
    for b in bases:
        assert issubclass(cls, b)
    assert cls.__module__ == "deepseek"


def test_shape_error():
    with pytest.raises(ValueError) as e:
        ds.matmul(ds.zeros([2, 3]), ds.zeros([4, 5]))
    assert isinstance(e.value, ds.ShapeError)
    assert "matmul" in str(e.value) and "3" in str(e.value) and "4" in str(e.value)


def test_unknown_op_is_not_found():
    with pytest.raises(LookupError) as e:
        ds._core.apply("matmull", [ds.zeros([1])])
    assert isinstance(e.value, ds.NotFoundError)
    assert "unknown op 'matmull'" in str(e.value) and "matmul" in str(e.value)


def test_dtype_error():
    with pytest.raises(TypeError) as e:
        ds.exp(ds.Tensor([True]))
    assert isinstance(e.value, ds.DTypeError) and "exp" in str(e.value) and "bool" in str(e.value)


def test_invalid_argument():
    with pytest.raises(ValueError) as e:
        ds.gelu(ds.zeros([2]), approximate="fast")
    assert isinstance(e.value, ds.InvalidArgument) and "'fast'" in str(e.value)


def test_attribute_kind_error_names_the_op():
    with pytest.raises(ds.DTypeError, match="softmax"):
        ds._core.apply("softmax", [ds.zeros([2])], {"axis": "last"})


@pytest.mark.parametrize("target, cls", [("gpu", ds.UnavailableError), ("cuda", ds.UnavailableError),
                                         ("npu", ds.NotFoundError)])
def test_unavailable_targets_list_the_available_ones(target, cls):
    if target in ds.available_targets():
        pytest.skip(f"target '{target}' is available on this machine")
    g = ds.Graph()
    g.relu(g.placeholder("x", [2]))
    with pytest.raises(cls) as e:
        ds.compile(g, target=target)
    msg = str(e.value)
    assert f"'{target}'" in msg
    for t in ds.available_targets():
        assert t in msg


def _exe():
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 3], dtype="float32")
    n = g.placeholder("n", shape=[2], dtype="int32")
    g.output(x * 2.0, "y")
    g.output(n + 1, "m")
    return ds.compile(g, target="cpu")


def test_feed_errors_name_the_placeholder():
    exe = _exe()
    ok = {"x": np.ones((4, 3)), "n": np.array([1, 2], np.int32)}
    out = exe.run(ok)
    assert out["y"].dtype == np.float32 and out["y"].shape == (4, 3)   # float64 fed: cast
    np.testing.assert_array_equal(out["m"], [2, 3])
    with pytest.raises(ds.NotFoundError, match="missing feed for placeholder 'n'"):
        exe.run({"x": ok["x"]})
    with pytest.raises(ds.NotFoundError, match="feed 'z' matches no placeholder.*x"):
        exe.run({**ok, "z": np.ones(1)})
    with pytest.raises(ds.ShapeError, match=r"placeholder 'x' expects shape \[None, 3\], got \[4, 2\]"):
        exe.run({**ok, "x": np.ones((4, 2))})
    with pytest.raises(ds.DTypeError, match="placeholder 'n' expects dtype int32, got float64"):
        exe.run({**ok, "n": np.ones(2)})
    with pytest.raises(ds.DTypeError, match="dict"):
        exe.run([ok["x"], ok["n"]])


def test_nan_and_inf_feeds_are_computed():
    exe = _exe()
    out = exe.run({"x": np.array([[np.nan, np.inf, -np.inf]]), "n": np.zeros(2, np.int32)})
    assert np.isnan(out["y"][0, 0]) and out["y"][0, 1] == np.inf and out["y"][0, 2] == -np.inf
