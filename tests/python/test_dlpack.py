"""DLPack exchange with numpy, zero-copy both ways."""
import gc
import sys

import numpy as np
import pytest

import deepseek as ds


def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = ds.from_dlpack(a)
    assert t.shape == (2, 3) and t.dtype == "float32"
    a[0, 1] = 42.0                      # write through numpy, read through ds
    assert t[0, 1].item() == 42.0
    t.numpy()[1, 2] = -7.0              # write through ds, read through numpy
    assert a[1, 2] == -7.0


def test_from_numpy_keeps_the_producer_alive():
    a = np.arange(1000, dtype=np.float64)
    refs = sys.getrefcount(a)
    t = ds.from_dlpack(a)
    assert sys.getrefcount(a) > refs    # the tensor holds the array
    del a
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(1000.0))
    del t
    gc.collect()


def test_released_when_the_tensor_dies():
    a = np.ones(10)
    refs = sys.getrefcount(a)
    t = ds.from_dlpack(a)
    del t
    gc.collect()
    assert sys.getrefcount(a) == refs


def test_numpy_from_tensor_is_zero_copy():
    t = ds.arange(8).reshape(2, 4)
    a = np.from_dlpack(t)
    assert a.shape == (2, 4) and a.dtype == np.float32
    a[1, 1] = 99.0
    assert t[1, 1].item() == 99.0
    del t
    gc.collect()
    assert a[1, 1] == 99.0              # the capsule's deleter keeps the storage alive


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int8", "uint8", "int32",
                                   "int64", "bool"])
def test_round_trip_every_dtype(dtype):
    a = (np.arange(7) % 2).astype(dtype)
    t = ds.from_dlpack(a)
    assert t.dtype == dtype
    b = np.from_dlpack(t)
    assert b.dtype == a.dtype
    np.testing.assert_array_equal(b, a)
    assert np.shares_memory(a, b)


def test_strided_views():
    base = np.arange(24.0).reshape(4, 6)
    v = base[1:, ::2].T
    t = ds.from_dlpack(v)
    assert t.shape == v.shape
    np.testing.assert_array_equal(t.numpy(), v)
    np.testing.assert_array_equal((t * 1).numpy(), v)   # ops read the strides right
    back = np.from_dlpack(t[::2])
    np.testing.assert_array_equal(back, v[::2])
    assert np.shares_memory(back, base)
    r = base[::-1, ::-2]                                 # negative strides
    tr = ds.from_dlpack(r)
    assert tr.strides == (-6, -2)
    np.testing.assert_array_equal((tr + 0).numpy(), r)
    np.testing.assert_array_equal(tr.numpy(), r)
    np.testing.assert_array_equal(tr[1].numpy(), r[1])


def test_capsule_protocol():
    t = ds.Tensor([1.0, 2.0])
    assert t.__dlpack_device__() == (1, 0)
    cap = t.__dlpack__()
    assert type(cap).__name__ == "PyCapsule" and "dltensor" in repr(cap)
    u = ds.from_dlpack(cap)            # a capsule itself is accepted, once
    assert u.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="only once"):
        ds.from_dlpack(cap)
    del cap                             # an unconsumed capsule frees its export
    t.__dlpack__(stream=None)
    v = t.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(v)
    w = ds.from_dlpack(v)
    assert w.tolist() == [1.0, 2.0] and "used_dltensor_versioned" in repr(v)


def test_read_only_producer_is_refused():
    a = np.ones(3)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ds.from_dlpack(a)
    assert ds.tensor(a).tolist() == [1.0, 1.0, 1.0]   # the copying path takes it


def test_errors():
    with pytest.raises(TypeError, match="__dlpack__"):
        ds.from_dlpack([1, 2])
    g = ds.Graph()
    x = g.placeholder("x", [2])
    with pytest.raises(ValueError, match="no data"):
        x.__dlpack__()
