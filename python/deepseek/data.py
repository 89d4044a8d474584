"""Datasets and the DataLoader (C++: ds::data).

    train = ds.data.fashion_mnist(train=True)           # images [N,1,28,28], labels [N]
    loader = ds.data.DataLoader(train, batch_size=128, shuffle=True, seed=0)
    for images, labels in loader:                        # one epoch, prefetched
        ...

Any object with ``__len__`` and ``__getitem__`` (returning a tuple of arrays or
tensors) is a dataset too; TensorDataset and fashion_mnist gather whole batches
in C++ without the GIL.
"""
from ._core.data import (  # noqa: F401
    FASHION_MNIST_DIR, DataLoader, TensorDataset, fashion_mnist,
)
from ._core import read_idx  # noqa: F401
