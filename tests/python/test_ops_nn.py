"""Linear algebra, convolution, pooling, normalization and random ops against float64
numpy references, for every float dtype (and the integer dtypes matmul/linear take).
Sums of k products are checked against an error bound proportional to
sqrt(k) * (|a| @ |b|), the magnitude their rounding errors scale with."""
import numpy as np
import pytest

import deepseek as ds
from conftest import FLOAT_DTYPES, TOL, as_f64, assert_close, make, on_dev, require_op

import test_ops_numpy

pytestmark = pytest.mark.usefixtures("on_device")


def assert_bounded(got, want, bound, dtype, k):
    """|got - want| <= rtol * sqrt(k) * bound + atol, elementwise."""
    tol = TOL[dtype]
    got64 = as_f64(got)
    assert got64.shape == np.shape(want)
    err = np.abs(got64 - want)
    limit = tol["rtol"] * max(1.0, np.sqrt(k)) * bound + tol["atol"] + tol["rtol"] * np.abs(want)
    assert np.all(err <= limit), f"max excess {np.max(err - limit, initial=0)}"


def rand(rng, shape, dtype):
    return make(rng.standard_normal(shape), dtype)


# ---- linear algebra
MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((0, 3), (3, 2)), ((2, 0), (0, 3)),
                 ((1, 1), (1, 1)), ((17, 33), (33, 9)), ((2, 1, 3, 4), (5, 4, 2)),
                 ((4, 5, 6), (6, 7)), ((128, 257), (257, 96))]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + ["int32", "int64"])
def test_matmul(dtype, rng):
    require_op("matmul")
    for sa, sb in MATMUL_SHAPES:
        if dtype.startswith("int"):
            (a, a64), (b, b64) = make(rng.integers(-3, 4, sa), dtype), make(rng.integers(-3, 4, sb), dtype)
        else:
            (a, a64), (b, b64) = rand(rng, sa, dtype), rand(rng, sb, dtype)
        got = ds.matmul(a, b)
        assert got.dtype == dtype, (sa, sb)
        want = a64 @ b64
        if dtype.startswith("int"):
            np.testing.assert_array_equal(got.to("cpu").numpy(), want)
        else:
            assert_bounded(got, want, np.abs(a64) @ np.abs(b64), dtype, sa[-1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_linear_and_gemm(dtype, rng):
    require_op("linear")
    for sx, out in [((5, 7), 3), ((2, 3, 7), 4), ((0, 7), 2), ((1, 300), 65)]:
        (x, x64), (w, w64), (b, b64) = (rand(rng, sx, dtype), rand(rng, (out, sx[-1]), dtype),
                                        rand(rng, (out,), dtype))
        bound = np.abs(x64) @ np.abs(w64).T
        assert_bounded(ds.linear(x, w, b), x64 @ w64.T + b64, bound + np.abs(b64), dtype, sx[-1])
        assert_bounded(ds.linear(x, w), x64 @ w64.T, bound, dtype, sx[-1])
    require_op("gemm")
    for ta in (False, True):
        for tb in (False, True):
            (a, a64), (b, b64) = rand(rng, (4, 6)[::-1 if ta else 1], dtype), \
                rand(rng, (6, 5)[::-1 if tb else 1], dtype)
            c, c64 = rand(rng, (5,), dtype)  # broadcast over rows
            oa, ob = (a64.T if ta else a64), (b64.T if tb else b64)
            got = ds.gemm(a, b, c, alpha=0.5, beta=-2.0, trans_a=ta, trans_b=tb)
            want = 0.5 * oa @ ob - 2.0 * c64
            assert_bounded(got, want, 0.5 * np.abs(oa) @ np.abs(ob) + 2 * np.abs(c64), dtype, 6)
            assert_bounded(ds.gemm(a, b, trans_a=ta, trans_b=tb), oa @ ob,
                           np.abs(oa) @ np.abs(ob), dtype, 6)


# ---- convolution
def conv2d_ref(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out, bound = np.zeros((n, o, oh, ow)), np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
                bound[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", np.abs(patch),
                                                           np.abs(ws[:, :, i, j]))
    if b is not None:
        out += b[None, :, None, None]
        bound += np.abs(b)[None, :, None, None]
    return out, bound


def conv_transpose2d_ref(x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    cg = c // groups
    fh, fw = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    full, bound = np.zeros((n, og * groups, fh, fw)), np.zeros((n, og * groups, fh, fw))
    for g in range(groups):
        xs, ws = x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                region = (slice(None), slice(g * og, (g + 1) * og),
                          slice(i * dh, i * dh + sh * (h - 1) + 1, sh),
                          slice(j * dw, j * dw + sw * (wd - 1) + 1, sw))
                full[region] += np.einsum("nchw,co->nohw", xs, ws[:, :, i, j])
                bound[region] += np.einsum("nchw,co->nohw", np.abs(xs), np.abs(ws[:, :, i, j]))
    out = full[:, :, ph:fh - ph, pw:fw - pw]
    bound = bound[:, :, ph:fh - ph, pw:fw - pw]
    if b is not None:
        out = out + b[None, :, None, None]
        bound = bound + np.abs(b)[None, :, None, None]
    return out, bound


# (x shape, out channels, kernel, stride, padding, dilation, groups, bias)
CONV_CASES = [((1, 1, 1, 1), 1, (1, 1), 1, 0, 1, 1, False),
              ((2, 3, 7, 9), 4, (3, 3), 1, 1, 1, 1, True),
              ((1, 4, 8, 8), 6, (3, 2), (2, 1), (1, 0), 1, 2, True),
              ((2, 2, 9, 7), 3, (3, 3), 2, 2, 2, 1, False),
              ((1, 6, 5, 5), 6, (3, 3), 1, 1, 1, 6, True),      # depthwise
              ((0, 3, 5, 5), 2, (1, 1), 1, 0, 1, 1, True),      # empty batch
              ((2, 16, 14, 14), 32, (1, 1), 1, 0, 1, 1, True),  # 1x1
              ((1, 8, 28, 28), 16, (3, 3), 1, 1, 1, 1, True)]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_conv2d(dtype, rng):
    require_op("conv2d")
    for sx, o, k, s, p, d, g, has_bias in CONV_CASES:
        (x, x64), (w, w64) = rand(rng, sx, dtype), rand(rng, (o, sx[1] // g) + k, dtype)
        b, b64 = rand(rng, (o,), dtype) if has_bias else (None, None)
        got = ds.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)
        want, bound = conv2d_ref(x64, w64, b64, _pair(s), _pair(p), _pair(d), g)
        assert_bounded(got, want, bound, dtype, (sx[1] // g) * k[0] * k[1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_conv_transpose2d(dtype, rng):
    require_op("conv_transpose2d")
    # (x shape, out channels per group, kernel, stride, padding, output padding, dilation, groups)
    for sx, og, k, s, p, op, d, g in [((1, 2, 4, 5), 3, (3, 3), 1, 0, 0, 1, 1),
                                      ((2, 4, 5, 4), 2, (3, 2), 2, 1, 1, 1, 2),
                                      ((1, 3, 3, 3), 2, (2, 2), 2, 0, 0, 2, 1),
                                      ((1, 1, 1, 1), 1, (1, 1), 1, 0, 0, 1, 1)]:
        (x, x64), (w, w64) = rand(rng, sx, dtype), rand(rng, (sx[1], og) + k, dtype)
        b, b64 = rand(rng, (og * g,), dtype)
        got = ds.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, dilation=d,
                                  groups=g)
        want, bound = conv_transpose2d_ref(x64, w64, b64, _pair(s), _pair(p), _pair(op),
                                           _pair(d), g)
        assert_bounded(got, want, bound, dtype, sx[1] * k[0] * k[1])


def test_conv_rejects_bad_input():
    require_op("conv2d")
    with pytest.raises(ds.ShapeError, match="conv2d"):
        ds.conv2d(ds.zeros([1, 3, 5, 5]), ds.zeros([4, 2, 3, 3]))
    with pytest.raises(ds.DTypeError, match="conv2d"):
        ds.conv2d(ds.zeros([1, 1, 3, 3], "int32"), ds.zeros([1, 1, 1, 1], "int32"))


# ---- pooling
def _pool_out(n, k, s, p, d, ceil):
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:  # the last window must start inside the input
        out -= 1
    return out


def pool_ref(x, k, s, p, d, ceil, kind, count_include_pad=True):
    n, c, h, w = x.shape
    oh, ow = _pool_out(h, k[0], s[0], p[0], d[0], ceil), _pool_out(w, k[1], s[1], p[1], d[1], ceil)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            rows = [h0 + a * d[0] for a in range(k[0])]
            cols = [w0 + b * d[1] for b in range(k[1])]
            vr = [r for r in rows if 0 <= r < h]
            vc = [q for q in cols if 0 <= q < w]
            win = x[:, :, vr][:, :, :, vc]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                if count_include_pad:
                    cnt = (min(h0 + k[0], h + p[0]) - h0) * (min(w0 + k[1], w + p[1]) - w0)
                else:
                    cnt = len(vr) * len(vc)
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return out


# (x shape, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [((1, 1, 1, 1), (1, 1), None, (0, 0), (1, 1), False),
              ((2, 3, 8, 8), (2, 2), None, (0, 0), (1, 1), False),
              ((1, 2, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), False),
              ((1, 2, 7, 9), (3, 2), (2, 3), (1, 0), (1, 1), True),
              ((2, 2, 10, 11), (3, 3), (1, 2), (0, 1), (2, 1), False),
              ((1, 4, 32, 32), (3, 3), (2, 2), (1, 1), (1, 1), True)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_max_pool2d(dtype, rng):
    require_op("max_pool2d")
    for sx, k, s, p, d, ceil in POOL_CASES:
        x, x64 = rand(rng, sx, dtype)
        got = ds.max_pool2d(x, k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        want = pool_ref(x64, k, s or k, p, d, ceil, "max")
        np.testing.assert_array_equal(as_f64(got), want)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_avg_pools(dtype, rng):
    require_op("avg_pool2d")
    for sx, k, s, p, d, ceil in POOL_CASES:
        if d != (1, 1):
            continue
        for include in (True, False):
            x, x64 = rand(rng, sx, dtype)
            got = ds.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil,
                                count_include_pad=include)
            assert_close(got, pool_ref(x64, k, s or k, p, d, ceil, "avg", include), dtype, scale=2)
    require_op("adaptive_avg_pool2d")
    for sx, osz in [((2, 3, 7, 9), (3, 4)), ((1, 2, 8, 8), (4, 4)), ((1, 1, 5, 5), (1, 1)),
                    ((1, 2, 3, 3), (5, 2))]:
        x, x64 = rand(rng, sx, dtype)
        h, w = sx[2:]
        want = np.zeros(sx[:2] + osz)
        for i in range(osz[0]):
            for j in range(osz[1]):
                r0, r1 = (i * h) // osz[0], -(-((i + 1) * h) // osz[0])
                c0, c1 = (j * w) // osz[1], -(-((j + 1) * w) // osz[1])
                want[:, :, i, j] = x64[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        assert_close(ds.adaptive_avg_pool2d(x, osz), want, dtype, scale=2)
    require_op("global_avg_pool2d")
    x, x64 = rand(rng, (2, 3, 7, 5), dtype)
    assert_close(ds.global_avg_pool2d(x), x64.mean(axis=(2, 3), keepdims=True), dtype, scale=2)


# ---- normalization
def _normalize(x, axes, eps):
    m = x.mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_norms(dtype, rng):
    # Normalized values are O(1) but come from differences: tolerance a few ulps of the input.
    scale = 4
    require_op("batch_norm")
    for sx in [(2, 3), (2, 3, 5), (4, 2, 3, 3), (0, 3, 2)]:
        c = sx[1]
        x, x64 = rand(rng, sx, dtype)
        (m, m64), (w, w64), (b, b64) = rand(rng, (c,), dtype), rand(rng, (c,), dtype), rand(rng, (c,), dtype)
        v, v64 = make(rng.uniform(0.5, 2.0, c), dtype)
        bc = (1, c) + (1,) * (len(sx) - 2)
        want = (x64 - m64.reshape(bc)) / np.sqrt(v64.reshape(bc) + 1e-3) * w64.reshape(bc) \
            + b64.reshape(bc)
        assert_close(ds.batch_norm(x, m, v, w, b, eps=1e-3), want, dtype, scale=scale)
        assert_close(ds.batch_norm(x, m, v), (x64 - m64.reshape(bc)) / np.sqrt(v64.reshape(bc) + 1e-5),
                     dtype, scale=scale)
    require_op("layer_norm")
    for sx, nd in [((2, 7), 1), ((3, 4, 5), 2), ((1, 1), 1), ((5, 300), 1)]:
        x, x64 = rand(rng, sx, dtype)
        (w, w64), (b, b64) = rand(rng, sx[-nd:], dtype), rand(rng, sx[-nd:], dtype)
        axes = tuple(range(len(sx) - nd, len(sx)))
        assert_close(ds.layer_norm(x, w, b), _normalize(x64, axes, 1e-5) * w64 + b64, dtype,
                     scale=scale)
        assert_close(ds.layer_norm(x, normalized_shape=sx[-nd:], eps=1e-2),
                     _normalize(x64, axes, 1e-2), dtype, scale=scale)
    require_op("group_norm")
    for sx, groups in [((2, 4, 3), 2), ((1, 6, 2, 2), 3), ((2, 4, 5, 5), 1), ((1, 4), 4)]:
        x, x64 = rand(rng, sx, dtype)
        (w, w64), (b, b64) = rand(rng, (sx[1],), dtype), rand(rng, (sx[1],), dtype)
        grouped = x64.reshape(sx[0], groups, -1)
        want = _normalize(grouped, (2,), 1e-5).reshape(sx)
        bc = (1, sx[1]) + (1,) * (len(sx) - 2)
        assert_close(ds.group_norm(x, groups, w, b), want * w64.reshape(bc) + b64.reshape(bc),
                     dtype, scale=scale)
    require_op("rms_norm")
    for sx in [(2, 7), (3, 4, 5), (1, 1), (4, 513)]:
        x, x64 = rand(rng, sx, dtype)
        w, w64 = rand(rng, sx[-1:], dtype)
        r = x64 / np.sqrt((x64 ** 2).mean(axis=-1, keepdims=True) + 1e-6)
        assert_close(ds.rms_norm(x, w), r * w64, dtype, scale=scale)
        assert_close(ds.rms_norm(x), r, dtype, scale=scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_batch_norm_train(dtype, rng):
    # y from the batch's own statistics; mean and biased var come back float32
    # (float64 for a float64 x), like PyTorch's training-mode batch norm.
    require_op("batch_norm_train")
    stats = "float64" if dtype == "float64" else "float32"
    for sx in [(5, 3), (4, 2, 3, 3), (1, 1, 1, 1), (3, 4, 7)]:
        c = sx[1]
        x, x64 = make(rng.standard_normal(sx) * 2 + 1, dtype)
        (w, w64), (b, b64) = make(rng.uniform(0.5, 1.5, c), stats), make(rng.standard_normal(c), stats)
        axes = (0,) + tuple(range(2, len(sx)))
        bc = (1, c) + (1,) * (len(sx) - 2)
        mean, var = x64.mean(axis=axes), x64.var(axis=axes)
        y, m, v = ds.batch_norm_train(x, w, b, eps=1e-3)
        assert_close(y, (x64 - mean.reshape(bc)) / np.sqrt(var.reshape(bc) + 1e-3) * w64.reshape(bc)
                     + b64.reshape(bc), dtype, scale=8)
        assert_close(m, mean, stats, scale=8)
        assert_close(v, var, stats, scale=8)
        y1, _, _ = ds.batch_norm_train(x, bias=b)
        assert_close(y1, (x64 - mean.reshape(bc)) / np.sqrt(var.reshape(bc) + 1e-5) + b64.reshape(bc),
                     dtype, scale=8)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_cross_entropy(dtype, rng):
    # Per-row loss lse - (1 - ls) x[t] - ls mean(x) (0 for ignored rows) and the row
    # logsumexp, float32 (float64 for float64 logits).
    require_op("softmax_cross_entropy")
    stats = "float64" if dtype == "float64" else "float32"
    for n, c in [(6, 1), (7, 10), (3, 1001)]:
        x, x64 = make(rng.standard_normal((n, c)) * 3, dtype)
        t64 = (np.arange(n) * 7 + 3) % c
        t64[2::3] = -100
        t = on_dev(ds.Tensor(t64.astype(np.int64)))
        m = x64.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(x64 - m).sum(axis=1, keepdims=True)))[:, 0]
        keep = t64 != -100
        picked = x64[np.arange(n), np.where(keep, t64, 0)]
        for ls in (0.0, 0.1):
            loss, got_lse = ds.softmax_cross_entropy(x, t, label_smoothing=ls)
            assert_close(loss, np.where(keep, lse - (1 - ls) * picked - ls * x64.mean(axis=1), 0.0),
                         stats, scale=8)
            assert_close(got_lse, lse, stats, scale=8)


# ---- random: no numpy twin, so determinism, range and moments
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_random(dtype):
    for op in ("random_uniform", "random_normal", "bernoulli"):
        require_op(op)
    n = 200_000
    u = ds.random_uniform([n], seed=7, low=-1.0, high=3.0, dtype=dtype)
    assert u.dtype == dtype and u.shape == (n,)
    uv = as_f64(u)
    assert uv.min() >= -1.0 and uv.max() <= 3.0
    assert abs(uv.mean() - 1.0) < 0.02 and abs(uv.var() - 16 / 12) < 0.03
    np.testing.assert_array_equal(as_f64(ds.random_uniform([n], seed=7, low=-1.0, high=3.0,
                                                           dtype=dtype)), uv)
    assert not np.array_equal(as_f64(ds.random_uniform([n], seed=8, dtype=dtype)), uv)
    g = as_f64(ds.random_normal([n], seed=3, mean=2.0, stddev=0.5, dtype=dtype))
    assert abs(g.mean() - 2.0) < 0.01 and abs(g.std() - 0.5) < 0.01
    b = as_f64(ds.bernoulli([n], seed=5, p=0.3, dtype=dtype))
    assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 0.01
    assert ds.random_normal([0, 3], seed=1, dtype=dtype).shape == (0, 3)
    # The same seed gives the same numbers in any shape: a counter-based generator.
    np.testing.assert_array_equal(as_f64(ds.random_uniform([4, 5], seed=11, dtype=dtype)).ravel(),
                                  as_f64(ds.random_uniform([20], seed=11, dtype=dtype)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention(dtype, causal, rng):
    for (b, h, lq, lk, d) in [(1, 1, 1, 1, 1), (2, 3, 7, 7, 16), (1, 2, 65, 65, 64), (2, 1, 5, 9, 8)]:
        if causal and lq != lk:
            continue
        q, q64 = make(rng.standard_normal((b, h, lq, d)), dtype)
        k, k64 = make(rng.standard_normal((b, h, lk, d)), dtype)
        v, v64 = make(rng.standard_normal((b, h, lk, d)), dtype)
        s = q64 @ np.swapaxes(k64, -1, -2) / np.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((lq, lk), dtype=bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        want = (p / p.sum(-1, keepdims=True)) @ v64
        got = ds.scaled_dot_product_attention(q, k, v, causal=causal)
        assert got.shape == (b, h, lq, d)
        assert_close(got, want, dtype, scale=4 * np.sqrt(lk))
        # layout "bshd": [B, L, H, D] in and out, the same values
        t = [ds.transpose(x, 1, 2) for x in (q, k, v)]
        got = ds.scaled_dot_product_attention(*t, causal=causal, layout="bshd")
        assert got.shape == (b, lq, h, d)
        assert_close(got, np.swapaxes(want, 1, 2), dtype, scale=4 * np.sqrt(lk))


# ---- coverage of both tables
NN_TESTED = {"matmul", "linear", "gemm", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
             "adaptive_avg_pool2d", "global_avg_pool2d", "batch_norm", "batch_norm_train",
             "layer_norm", "group_norm", "softmax_cross_entropy",
             "rms_norm", "random_uniform", "random_normal", "bernoulli",
             "scaled_dot_product_attention"}
OTHER_TESTED = {"where", "cast", "arange", "full", "zeros", "ones", "one_hot", "embedding",
                "unsqueeze", "transpose", "gather", "var", "std"}
# Graph-internal ops with no Python function: gradients of other ops, checked against
# finite differences by the C++ autodiff tests; "fused" (loop fusion) and
# "fused_linear"/"fused_conv2d" (epilogue fusion) and "matmul_softmax" (matmul-softmax
# fusion), made by compiler passes and checked against the unfused graph by the C++
# fusion tests; the blocked-layout ops, made by the
# layout propagation pass and checked by its C++ tests; sources are made by Graph methods.
INTERNAL = {"placeholder", "constant", "conv2d_backward_input", "conv2d_backward_weight",
            "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
            "scatter_add_along_axis", "index_add", "fused", "fused_linear", "fused_conv2d",
            "scaled_dot_product_attention_backward", "to_blocked", "from_blocked",
            "blocked_conv2d", "blocked_max_pool2d", "batch_norm_train_backward",
            "softmax_cross_entropy_backward", "matmul_softmax"}


def test_every_op_has_a_numpy_test(rng):
    shape_ops = {op for op, _, _ in test_ops_numpy._shape_cases(rng)[0]}
    tested = (set(test_ops_numpy.UNARY) | set(test_ops_numpy.BINARY)
              | set(test_ops_numpy.REDUCTIONS) | {"argmax", "argmin", "softmax", "log_softmax"}
              | shape_ops | NN_TESTED | OTHER_TESTED)
    missing = set(ds.ops.__all__) - tested
    assert not missing, f"op functions without a numpy test: {sorted(missing)}"
    unbound = set(ds.op_names()) - set(ds.ops.__all__) - INTERNAL
    assert not unbound, f"registered ops without a Python function: {sorted(unbound)}"
