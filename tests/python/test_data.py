"""ds.data: TensorDataset, DataLoader (order, coverage, drop_last, Python datasets), IDX."""
import gzip
import os
import struct

import numpy as np
import pytest

import deepseek as ds


def indexed(n):
    x = np.stack([np.arange(n, dtype=np.float32), -np.arange(n, dtype=np.float32)], axis=1)
    return ds.data.TensorDataset(x, np.arange(n, dtype=np.int64))


def epoch_indices(loader):
    return [batch[1].numpy().tolist() for batch in loader]


def test_tensor_dataset_rows():
    d = indexed(5)
    assert len(d) == 5
    x, i = d[3]
    assert x.numpy().tolist() == [3.0, -3.0] and int(i.numpy()) == 3
    assert int(d[-1][1].numpy()) == 4
    with pytest.raises(ds.Error):
        d[5]
    with pytest.raises(ds.ShapeError):
        ds.data.TensorDataset(np.zeros(3), np.zeros(4))


def test_loader_covers_every_example_and_shapes(rng):
    loader = ds.data.DataLoader(indexed(103), batch_size=10, shuffle=True, seed=7)
    assert len(loader) == 11
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(10, 2)] * 10 + [(3, 2)]
    seen = sorted(i for b in batches for i in b[1].numpy().tolist())
    assert seen == list(range(103))
    x, i = batches[0]
    np.testing.assert_array_equal(x.numpy()[:, 0], i.numpy().astype(np.float32))


def test_order_depends_only_on_seed_and_epoch():
    a = ds.data.DataLoader(indexed(64), batch_size=8, shuffle=True, seed=3, prefetch=0)
    b = ds.data.DataLoader(indexed(64), batch_size=8, shuffle=True, seed=3, prefetch=4)
    a0, a1 = epoch_indices(a), epoch_indices(a)
    assert epoch_indices(b) == a0 and epoch_indices(b) == a1 and a0 != a1
    b.set_epoch(1)
    assert epoch_indices(b) == a1
    assert sum(a0, []) == a.order(0)
    sequential = ds.data.DataLoader(indexed(25), batch_size=10, drop_last=True)
    assert epoch_indices(sequential) == [list(range(10)), list(range(10, 20))]


def test_python_map_dataset_and_its_errors():
    class Squares:
        def __len__(self):
            return 7

        def __getitem__(self, i):
            if i == 5:
                raise KeyError("no five")
            return np.full(2, i * i, np.float32), i

    loader = ds.data.DataLoader(Squares(), batch_size=2, prefetch=2)
    it = iter(loader)
    x, i = next(it)
    assert x.numpy().tolist() == [[0, 0], [1, 1]] and i.numpy().tolist() == [0, 1]
    next(it)
    with pytest.raises(ds.Error, match=r"(?s)dataset\[5\].*no five"):
        next(it)
    # Stopping early (dropping the iterator) stops the worker thread.
    for n, _ in enumerate(ds.data.DataLoader(Squares(), batch_size=1)):
        if n == 1:
            break
    with pytest.raises(TypeError):
        ds.data.DataLoader(42)


def write_idx(path, array, compress):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def test_read_idx_and_fashion_mnist_layout(tmp_path, rng):
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 1, 4, 1], np.uint8), False)
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "t10k-images-idx3-ubyte.gz").numpy(),
                                  images)
    test = ds.data.fashion_mnist(str(tmp_path), train=False)
    x, y = test.tensors
    assert x.shape == (4, 1, 28, 28) and str(x.dtype) == "float32"
    np.testing.assert_allclose(x.numpy()[:, 0], images / np.float32(255), rtol=1e-7)
    assert y.numpy().tolist() == [3, 1, 4, 1] and str(y.dtype) == "int64"
    floats = np.array([[1.5, -2.0]], np.float32)
    write_idx(tmp_path / "f.idx", floats, compress=False)
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "f.idx").numpy(), floats)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(ds.IOError, match="bad.idx.*bad magic"):
        ds.read_idx(tmp_path / "bad.idx")
    with pytest.raises(ds.NotFoundError, match="dataset-fashion-mnist"):
        ds.data.fashion_mnist(str(tmp_path), train=True)


@pytest.mark.skipif(not os.path.isdir(ds.data.FASHION_MNIST_DIR),
                    reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist_loads():
    train = ds.data.fashion_mnist()
    assert len(train) == 60000
    x, y = train[0]
    assert x.shape == (1, 28, 28) and 0 <= int(y.numpy()) < 10
