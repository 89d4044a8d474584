"""Eager tensors: construction, numpy interop, properties, operators, indexing."""
import gc

import numpy as np
import pytest

import deepseek as ds


# ---- construction
@pytest.mark.parametrize("data, shape, dtype", [
    ([1.0, 2.0, 3.0], (3,), "float32"),
    ([[1, 2], [3, 4]], (2, 2), "int64"),
    ([True, False], (2,), "bool"),
    (3.5, (), "float32"),
    (7, (), "int64"),
    ([], (0,), "float32"),
    ([[1.5], [2.5], [3]], (3, 1), "float32"),
])
def test_from_python_data(data, shape, dtype):
    t = ds.Tensor(data)
    assert t.shape == shape and t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data).astype(dtype))


@pytest.mark.parametrize("np_dtype", ["float64", "float32", "float16", "int8", "uint8", "int32",
                                      "int64", "bool"])
def test_numpy_keeps_dtype_and_is_copied(np_dtype):
    a = (np.arange(12).reshape(3, 4) % 3).astype(np_dtype)
    t = ds.tensor(a)
    assert t.dtype == np_dtype and t.shape == (3, 4)
    np.testing.assert_array_equal(t.numpy(), a)
    a[0, 0] = 1 if np_dtype != "bool" else True
    a[0, 1] = 2 if np_dtype != "bool" else False
    assert t.numpy()[0, 1] == (1 if np_dtype != "bool" else True)  # unchanged: a copy


def test_dtype_kwarg_and_aliases():
    t = ds.Tensor([1, 2, 3], dtype="float64")
    assert t.dtype == ds.float64 and t.numpy().dtype == np.float64
    assert ds.array([1.0], dtype=ds.int32).dtype == "int32"
    assert ds.tensor(np.ones(2), dtype=np.float16).dtype == ds.float16
    b = ds.Tensor([1.0, 2.5, -3.0], dtype="bfloat16")
    assert b.dtype == "bfloat16" and b.numpy().dtype == np.float32  # numpy has no bfloat16
    np.testing.assert_array_equal(b.numpy(), [1.0, 2.5, -3.0])


def test_non_contiguous_numpy_input():
    a = np.arange(24.0).reshape(4, 6)[::2, 1::2]
    np.testing.assert_array_equal(ds.tensor(a).numpy(), a)
    np.testing.assert_array_equal(ds.tensor(a.T).numpy(), a.T)


def test_tensor_of_tensor_copies():
    a = ds.Tensor([1.0, 2.0])
    b = ds.Tensor(a)
    b.numpy()[0] = 9
    assert a.numpy()[0] == 1


@pytest.mark.parametrize("bad", [np.zeros(2, np.complex64), ["a", "b"], np.zeros(2, np.int16),
                                 [[1, 2], [3]]])
def test_unsupported_data_raises(bad):
    with pytest.raises((ds.DTypeError, ValueError)):
        ds.Tensor(bad)


# ---- dtype objects
def test_dtype_objects():
    assert ds.float32.name == "float32" and str(ds.float32) == "float32"
    assert ds.float32 == "float32" and ds.float32 != "float64" and ds.float32 != 3
    assert ds.float32 == np.float32 and ds.int64 == np.dtype("int64")
    assert ds.dtype("f32") is ds.float32 and ds.dtype(float) is ds.float32
    assert ds.Tensor([1.0]).dtype is ds.float32
    assert ds.bfloat16.itemsize == 2 and ds.float64.is_floating_point and ds.int8.is_integer
    assert len({ds.float32, ds.dtype("float32")}) == 1
    with pytest.raises(ds.DTypeError, match="unknown dtype 'float128'"):
        ds.dtype("float128")


# ---- numpy out
def test_numpy_is_a_zero_copy_view_that_keeps_storage_alive():
    t = ds.Tensor([1.0, 2.0, 3.0])
    a = t.numpy()
    a[1] = 20.0
    assert t.tolist() == [1.0, 20.0, 3.0]
    del t
    gc.collect()
    ds.Tensor(np.full(3, 7.0))  # would reuse the block if it had been freed
    assert a.tolist() == [1.0, 20.0, 3.0]


def test_views_export_their_strides():
    t = ds.arange(12).reshape(3, 4)
    v = t[:, 1::2]
    np.testing.assert_array_equal(v.numpy(), np.arange(12.0).reshape(3, 4)[:, 1::2])
    v.numpy()[0, 0] = -1
    assert t.numpy()[0, 1] == -1


def test_array_protocol():
    t = ds.Tensor([[1, 2], [3, 4]], dtype="int32")
    a = np.asarray(t)
    assert a.dtype == np.int32 and a.shape == (2, 2)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.array(t).tolist() == [[1, 2], [3, 4]]


def test_properties():
    t = ds.zeros([2, 3, 4])
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.size == 24 and len(t) == 2
    assert t.device == "cpu" and t.nbytes == 96 and not t.is_symbolic
    assert ds.Tensor(2.5).item() == 2.5 and isinstance(ds.Tensor(3).item(), int)
    assert ds.Tensor(True).item() is True
    assert float(ds.Tensor([4.0])) == 4.0 and int(ds.Tensor([4])) == 4
    assert [10, 20, 30][ds.Tensor(1)] == 20 and list(range(5))[ds.Tensor(1):ds.Tensor([3])] == [1, 2]
    with pytest.raises(TypeError, match="integer"):
        [1, 2][ds.Tensor(1.0)]
    assert ds.Tensor([[1, 2]]).tolist() == [[1, 2]]
    with pytest.raises(ds.ShapeError, match="3 elements"):
        ds.Tensor([1, 2, 3]).item()
    with pytest.raises(TypeError, match="0-d"):
        len(ds.Tensor(1.0))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ds.Tensor([1, 2]))
    assert bool(ds.Tensor([1]))


def test_str_and_repr():
    t = ds.Tensor([1.0, 2.0, 3.0]) * 2
    assert str(t) == "[2. 4. 6.]"
    assert repr(t) == "tensor([2., 4., 6.], dtype=float32)"
    assert repr(ds.Tensor([1, 2])) == "tensor([1, 2], dtype=int64)"
    assert repr(ds.Tensor([0.5], dtype="bfloat16")) == "tensor([0.5], dtype=bfloat16)"
    assert repr(ds.Tensor(2.0, dtype="float64")) == "tensor(2., dtype=float64)"
    assert repr(ds.zeros([2, 2])) == "tensor([[0., 0.],\n        [0., 0.]], dtype=float32)"


# ---- operators
def test_arithmetic_matches_numpy(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32) + 3
    ta, tb = ds.tensor(a), ds.tensor(b)
    for got, want in [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
                      (-ta, -a), (abs(ta), np.abs(a)), (tb ** 2, b ** 2), (ta % tb, np.mod(a, b)),
                      (ta @ ta.T, a @ a.T), (a + tb, a + b), (a @ ds.tensor(a.T), a @ a.T)]:
        assert got.dtype == "float32"
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_python_scalars_are_weak():
    f = ds.Tensor([1.0, 2.0])
    i = ds.Tensor([1, 2], dtype="int32")
    assert (f * 2).dtype == "float32" and (2 * f).dtype == "float32"
    assert (i + 1).dtype == "int32" and (1 - i).tolist() == [0, -1]
    assert (i * 2.5).dtype == "float32" and (i * 2.5).tolist() == [2.5, 5.0]
    assert (10 / f).tolist() == [10.0, 5.0] and (2 ** f).tolist() == [2.0, 4.0]
    h = ds.Tensor([1.0], dtype="float16")
    assert (h + 1.5).dtype == "float16"


def test_comparisons_and_logic():
    a = ds.Tensor([1, 2, 3])
    for got, want in [(a < 2, [True, False, False]), (a <= 2, [True, True, False]),
                      (a > 2, [False, False, True]), (a >= 2, [False, True, True]),
                      (a == 2, [False, True, False]), (a != 2, [True, False, True]),
                      (2 < a, [False, False, True])]:
        assert got.dtype == "bool" and got.tolist() == want
    m = (a > 1) & (a < 3)
    assert m.tolist() == [False, True, False]
    assert ((a < 2) | (a > 2)).tolist() == [True, False, True]
    assert (~(a > 1)).tolist() == [True, False, False]
    with pytest.raises(ds.DTypeError, match="bool"):
        a & a
    assert (a == None) is False and (a != "x") is True  # noqa: E711


def test_numpy_on_the_left_defers_to_tensor():
    r = np.ones(3, np.float32) + ds.Tensor([1.0, 2.0, 3.0])
    assert isinstance(r, ds.Tensor) and r.tolist() == [2.0, 3.0, 4.0]


def test_broadcast_mismatch_is_a_shape_error():
    with pytest.raises(ds.ShapeError, match=r"\[3\].*\[4\]|\[4\].*\[3\]"):
        ds.zeros([3]) + ds.zeros([4])


# ---- indexing
KEYS = [1, -1, slice(1, 3), (slice(None), slice(None, None, 2)), (Ellipsis, 0), None, (None, 1),
        (1, slice(None), None), (slice(None, None, 3), 2), (slice(5, 1),), (slice(-3, None),),
        (Ellipsis,), (0, 1, 2), ()]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_basic_indexing_matches_numpy(key):
    a = np.arange(60.0, dtype=np.float32).reshape(4, 3, 5)
    got = ds.tensor(a)[key]
    np.testing.assert_array_equal(got.numpy(), a[key])


def test_integer_and_slice_indices_are_views():
    t = ds.arange(6).reshape(2, 3)
    row = t[1]
    row.numpy()[0] = 100
    assert t.tolist()[1][0] == 100


@pytest.mark.parametrize("key", [[0, 2], np.array([2, 0, 2]), (slice(None), [1, 0]),
                                 (Ellipsis, np.array([[0], [4]])), ds.Tensor([3, 1])])
def test_integer_array_indexing(key):
    a = np.arange(24.0, dtype=np.float32).reshape(4, 6)
    np_key = np.asarray(key) if isinstance(key, ds.Tensor) else key
    np.testing.assert_array_equal(ds.tensor(a)[key].numpy(), a[np_key])


def test_bad_indices():
    t = ds.zeros([2, 3])
    with pytest.raises(IndexError, match="out of bounds"):
        t[2]
    with pytest.raises(ds.ShapeError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(ValueError, match="step"):
        t[::-1]
    with pytest.raises(TypeError, match="mask"):
        t[t > 0]
    with pytest.raises(TypeError, match="unsupported index"):
        t["a"]


def test_iteration():
    t = ds.Tensor([[1, 2], [3, 4]])
    assert [r.tolist() for r in t] == [[1, 2], [3, 4]]


# ---- methods
def test_shape_methods():
    a = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    t = ds.tensor(a)
    assert t.reshape(6, 4).shape == (6, 4) and t.reshape((4, -1)).shape == (4, 6)
    v = t.reshape(24)
    v.numpy()[0] = -5  # a view of the same memory
    assert t.numpy()[0, 0, 0] == -5
    a[0, 0, 0] = -5
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    np.testing.assert_array_equal(t.transpose().numpy(), a.swapaxes(-1, -2))
    np.testing.assert_array_equal(t.transpose(0, 1).numpy(), a.swapaxes(0, 1))
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    assert t.flatten().shape == (2, 12) and t.unsqueeze(0).shape == (1, 2, 3, 4)
    assert t[:1].squeeze(0).shape == (3, 4)


def test_dtype_conversion_methods():
    t = ds.Tensor([1.7, -2.2])
    assert t.astype("int32").tolist() == [1, -2]
    assert t.to(ds.float64).dtype == "float64" and t.to("cpu").device == "cpu"
    assert t.astype(np.float16).dtype == ds.float16
    assert t.astype("float32") is not None and t.to("float32").tolist() == t.tolist()
    if "cuda" in ds.available_targets():
        assert t.to("cuda").to("cpu").tolist() == t.tolist()
    else:
        with pytest.raises(ds.UnavailableError, match="(?i)cuda"):
            t.to("cuda")


def test_reduction_methods_match_numpy(rng):
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    t = ds.tensor(a)
    np.testing.assert_allclose(t.sum().item(), a.sum(), rtol=1e-5)
    np.testing.assert_allclose(t.sum(axis=1).numpy(), a.sum(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.mean(axis=(0, 2), keepdims=True).numpy(),
                               a.mean(axis=(0, 2), keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.max(axis=-1).numpy(), a.max(axis=-1))
    np.testing.assert_allclose(t.std(axis=0, ddof=1).numpy(), a.std(axis=0, ddof=1), rtol=1e-5)
    assert t.argmax().item() == a.argmax()
    np.testing.assert_array_equal(t.argmin(axis=1).numpy(), a.argmin(axis=1))
    np.testing.assert_allclose(t.softmax().numpy().sum(axis=-1), np.ones((3, 4)), rtol=1e-5)


def test_pickle_copy_and_format():
    import copy
    import pickle
    for t in [ds.Tensor([[1.5, -2.0]]), ds.Tensor([1, 2], dtype="int8"),
              ds.Tensor([0.5], dtype="bfloat16"), ds.Tensor(True)]:
        u = pickle.loads(pickle.dumps(t))
        assert u.dtype == t.dtype and u.tolist() == t.tolist()
    t = ds.Tensor([1.0, 2.0])
    c = copy.deepcopy(t)
    c.numpy()[0] = 5.0
    assert t.tolist() == [1.0, 2.0]
    assert f"{ds.Tensor([3.14159]):.2f}" == "3.14" and f"{t}" == "[1. 2.]"
    g = ds.Graph()
    with pytest.raises(TypeError, match="symbolic"):
        pickle.dumps(g.placeholder("x", [2]))
