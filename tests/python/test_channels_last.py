"""Channels-last (NHWC) from Python: ds.conv2d / ds.max_pool2d(channels_last=True)
against the NCHW ops on permuted inputs (on every device), Module.to_channels_last()
and ds.models.resnet18(channels_last=True) against the NCHW model."""
import numpy as np
import pytest

import deepseek as ds
from conftest import DEVICES


def nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))


def values(t):
    return t.to("cpu").numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_conv2d_and_max_pool2d_match_the_nchw_ops(device, dtype):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 4, 9, 8))
    w = rng.uniform(-1, 1, (6, 2, 3, 3))
    b = rng.uniform(-1, 1, 6)

    def t(a):
        return ds.Tensor(a, dtype=dtype).to(device)

    tol = dict(rtol=2e-2, atol=2e-2) if dtype == "bfloat16" else dict(rtol=1e-3, atol=1e-3)
    want = values(ds.conv2d(t(x), t(w), t(b), stride=2, padding=1, groups=2))
    got = ds.conv2d(t(nhwc(x)), t(w), t(b), stride=2, padding=1, groups=2, channels_last=True)
    assert tuple(got.shape) == (2, 5, 4, 6)
    np.testing.assert_allclose(values(got).astype(np.float64), nhwc(want).astype(np.float64), **tol)
    want = values(ds.max_pool2d(t(x), 3, stride=2, padding=1))
    got = values(ds.max_pool2d(t(nhwc(x)), 3, stride=2, padding=1, channels_last=True))
    np.testing.assert_array_equal(got, nhwc(want))


def test_layers_to_channels_last_returns_self_and_sets_every_descendant():
    net = ds.nn.Sequential(ds.nn.Conv2d(3, 4, 3, padding=1), ds.nn.BatchNorm2d(4), ds.nn.ReLU())
    assert not net.channels_last
    assert net.to_channels_last() is net
    assert all(m.channels_last for m in net.modules())
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(np.float32)
    y = net(ds.Tensor(nhwc(x)))
    assert tuple(y.shape) == (2, 6, 5, 4)
    net.to_channels_last(False)
    np.testing.assert_allclose(nhwc(values(net(ds.Tensor(x)))), values(y), rtol=1e-5, atol=1e-5)


def test_resnet18_channels_last_gives_the_nchw_logits():
    nchw = ds.models.resnet18(num_classes=7)
    last = ds.models.resnet18(num_classes=7, channels_last=True)
    assert last.channels_last and not nchw.channels_last
    last.load_state_dict(nchw.state_dict())
    x = ds.Tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    for m in (nchw, last):
        m.eval()
    np.testing.assert_allclose(values(last(x)), values(nchw(x)), rtol=1e-4, atol=1e-4)
