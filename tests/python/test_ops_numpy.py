"""Every elementwise, reduction, shape/index and creation op against numpy in float64,
on random inputs over several shapes (0, 1, odd, large; broadcasting) and every dtype
the op takes. Tolerances per dtype are in conftest.TOL (reductions: scaled by the
number of reduced elements). The table for linalg/conv/pool/norm/random ops is in
test_ops_nn.py; test_every_op_has_a_numpy_test checks that the two tables cover
every Python op function and every registered op."""
import math

import numpy as np
import pytest

import deepseek as ds
from conftest import FLOAT_DTYPES, INT_DTYPES, as_f64, assert_close, make, on_dev, require_op

ALL_DTYPES = ["bool", "uint8", "int8", "int32", "int64", "float16", "bfloat16", "float32",
              "float64"]
SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 3, 4), (67, 257)]
_erf = np.vectorize(math.erf, otypes=[np.float64])

pytestmark = pytest.mark.usefixtures("on_device")


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(np.minimum(beta * x, threshold))) / beta)


# name -> (numpy reference, input domain, dtypes, kwargs)
UNARY = {
    "neg": (np.negative, "real", FLOAT_DTYPES + INT_DTYPES + ["int8"], {}),
    "abs": (np.abs, "real", FLOAT_DTYPES + INT_DTYPES + ["int8", "uint8"], {}),
    "exp": (np.exp, "real", FLOAT_DTYPES + INT_DTYPES, {}),
    "log": (np.log, "positive", FLOAT_DTYPES, {}),
    "log1p": (np.log1p, "positive", FLOAT_DTYPES, {}),
    "expm1": (np.expm1, "real", FLOAT_DTYPES, {}),
    "sqrt": (np.sqrt, "positive", FLOAT_DTYPES + INT_DTYPES, {}),
    "rsqrt": (lambda x: 1 / np.sqrt(x), "positive", FLOAT_DTYPES, {}),
    "sin": (np.sin, "real", FLOAT_DTYPES, {}),
    "cos": (np.cos, "real", FLOAT_DTYPES, {}),
    "tanh": (np.tanh, "real", FLOAT_DTYPES, {}),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), "real", FLOAT_DTYPES, {}),
    "relu": (lambda x: np.maximum(x, 0), "real", FLOAT_DTYPES + INT_DTYPES, {}),
    "silu": (lambda x: x / (1 + np.exp(-x)), "real", FLOAT_DTYPES, {}),
    "erf": (_erf, "real", FLOAT_DTYPES, {}),
    "floor": (np.floor, "real", FLOAT_DTYPES, {}),
    "ceil": (np.ceil, "real", FLOAT_DTYPES, {}),
    "round": (np.round, "halves", FLOAT_DTYPES, {}),
    "sign": (np.sign, "real", FLOAT_DTYPES + INT_DTYPES, {}),
    "reciprocal": (np.reciprocal, "nonzero", FLOAT_DTYPES, {}),
    "square": (np.square, "real", FLOAT_DTYPES + INT_DTYPES, {}),
    "logical_not": (np.logical_not, "small_ints", ["bool"] + FLOAT_DTYPES + INT_DTYPES, {}),
    "isnan": (np.isnan, "with_nan", FLOAT_DTYPES, {}),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), "real", FLOAT_DTYPES,
                   {"negative_slope": 0.2}),
    "elu": (lambda x: np.where(x > 0, x, 1.5 * np.expm1(x)), "real", FLOAT_DTYPES, {"alpha": 1.5}),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), "real", FLOAT_DTYPES, {}),
    "gelu_tanh": (_gelu_tanh, "real", FLOAT_DTYPES, {"approximate": "tanh"}),
    "softplus": (lambda x: _softplus(x, 2.0, 5.0), "real", FLOAT_DTYPES,
                 {"beta": 2.0, "threshold": 5.0}),
}
BOOL_RESULT = {"logical_not", "isnan", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
               "logical_or"}
FLOAT_RESULT = {"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
                "silu", "erf", "reciprocal", "leaky_relu", "elu", "gelu", "softplus", "div"}


def values(domain, shape, dtype, rng):
    """float64 values of ``shape`` in the op's domain, representable in integer dtypes."""
    integer = dtype in INT_DTYPES or dtype in ("int8", "uint8", "bool")
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(np.float64)
    if domain == "small_ints" or integer:
        low = 0 if dtype == "uint8" or domain in ("positive",) else -5
        v = rng.integers(low, 6, shape).astype(np.float64)
        return np.where(v == 0, 1, v) if domain in ("nonzero", "positive") else v
    v = rng.standard_normal(shape) * 2
    if domain == "positive":
        return np.abs(v) + 0.05
    if domain == "nonzero":
        return np.where(np.abs(v) < 0.1, 0.5, v)
    if domain == "halves":  # exact .5 cases check round-half-to-even
        return np.round(v * 2) / 2 + np.where(rng.random(shape) < 0.5, 0.0, 0.25)
    if domain == "with_nan":
        return np.where(rng.random(shape) < 0.3, np.nan, v)
    return v


def result_dtype(op, dtype):
    if op in BOOL_RESULT:
        return "bool"
    if op in FLOAT_RESULT and dtype not in FLOAT_DTYPES:
        return "float32"
    return dtype


def _cases(table):
    return [(op, dt) for op, spec in table.items() for dt in spec[2]]


@pytest.mark.parametrize("op, dtype", _cases(UNARY))
def test_unary(op, dtype, rng):
    fn_name = "gelu" if op == "gelu_tanh" else op
    require_op(fn_name)
    ref, domain, _, kwargs = UNARY[op]
    for shape in SHAPES:
        x, x64 = make(values(domain, shape, dtype, rng), dtype)
        got = getattr(ds, fn_name)(x, **kwargs)
        assert got.shape == shape and got.dtype == result_dtype(fn_name, dtype), (op, shape)
        with np.errstate(all="ignore"):
            want = ref(x64)
        assert_close(got, want, result_dtype(fn_name, dtype) if dtype in FLOAT_DTYPES else "float32")


def _py_mod(a, b):
    return np.mod(a, b)


# name -> (numpy reference, (domain a, domain b), dtypes)
BINARY = {
    "add": (np.add, ("real", "real"), FLOAT_DTYPES + INT_DTYPES + ["int8", "uint8"]),
    "sub": (np.subtract, ("real", "real"), FLOAT_DTYPES + INT_DTYPES),
    "mul": (np.multiply, ("real", "real"), FLOAT_DTYPES + INT_DTYPES),
    "div": (np.divide, ("real", "nonzero"), FLOAT_DTYPES + INT_DTYPES),
    "pow": (np.power, ("positive", "real"), FLOAT_DTYPES),
    "maximum": (np.maximum, ("real", "real"), FLOAT_DTYPES + INT_DTYPES),
    "minimum": (np.minimum, ("real", "real"), FLOAT_DTYPES + INT_DTYPES),
    "mod": (_py_mod, ("real", "nonzero"), FLOAT_DTYPES + INT_DTYPES),
    "eq": (np.equal, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES + ["bool"]),
    "ne": (np.not_equal, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES + ["bool"]),
    "lt": (np.less, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES),
    "le": (np.less_equal, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES),
    "gt": (np.greater, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES),
    "ge": (np.greater_equal, ("small_ints", "small_ints"), FLOAT_DTYPES + INT_DTYPES),
    "logical_and": (np.logical_and, ("small_ints", "small_ints"), ["bool", "float32", "int32"]),
    "logical_or": (np.logical_or, ("small_ints", "small_ints"), ["bool", "float32", "int32"]),
}
PAIRS = [((), ()), ((0,), (1,)), ((1,), (7,)), ((3, 5), (5,)), ((2, 1, 4), (3, 1)),
         ((4, 1), (1, 6)), ((), (2, 3)), ((67, 257), (67, 257))]


@pytest.mark.parametrize("op, dtype", _cases(BINARY))
def test_binary_with_broadcasting(op, dtype, rng):
    require_op(op)
    ref, (da, db), _ = BINARY[op]
    for sa, sb in PAIRS:
        a, a64 = make(values(da, sa, dtype, rng), dtype)
        b, b64 = make(values(db, sb, dtype, rng), dtype)
        got = getattr(ds, op)(a, b)
        want = ref(a64, b64)
        assert got.shape == want.shape and got.dtype == result_dtype(op, dtype), (op, sa, sb)
        assert_close(got, want, result_dtype(op, dtype) if dtype in FLOAT_DTYPES else "float32")


def test_where(rng):
    require_op("where")
    for dtype in FLOAT_DTYPES + INT_DTYPES:
        for sc, sa, sb in [((3, 4), (3, 4), (3, 4)), ((4,), (3, 1), ()), ((0, 2), (1,), (2,)),
                           ((2, 1, 5), (3, 5), (2, 3, 1))]:
            c = rng.random(sc) < 0.5
            a, a64 = make(values("real", sa, dtype, rng), dtype)
            b, b64 = make(values("real", sb, dtype, rng), dtype)
            got = ds.where(on_dev(ds.tensor(c)), a, b)
            assert got.dtype == dtype
            assert_close(got, np.where(c, a64, b64), dtype)


def test_cast_between_all_dtypes(rng):
    require_op("cast")
    v = values("small_ints", (5, 3), "int8", rng)
    for src in ALL_DTYPES:
        for dst in ALL_DTYPES:
            # Negative floats to unsigned are undefined in C++ and numpy alike; integers wrap.
            x, x64 = make(np.abs(v) if src in FLOAT_DTYPES and dst == "uint8" else v, src)
            got = ds.cast(x, dst)
            assert got.dtype == dst
            # numpy's astype is the reference (integers wrap); numpy has no bfloat16, whose
            # results are the (exactly representable) values themselves.
            want = x64 if dst == "bfloat16" else x64.astype(dst).astype(np.float64)
            np.testing.assert_array_equal(as_f64(got), want, err_msg=f"{src} -> {dst}")


# ---- reductions: (numpy reference, dtypes, empty allowed)
REDUCTIONS = {
    "sum": (np.sum, FLOAT_DTYPES + INT_DTYPES, True),
    "mean": (np.mean, FLOAT_DTYPES, False),
    "max": (np.max, FLOAT_DTYPES + INT_DTYPES, False),
    "min": (np.min, FLOAT_DTYPES + INT_DTYPES, False),
    "prod": (np.prod, FLOAT_DTYPES + INT_DTYPES, True),
    "var": (np.var, FLOAT_DTYPES, False),
    "std": (np.std, FLOAT_DTYPES, False),
    "logsumexp": (lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
                  FLOAT_DTYPES, False),
}
AXES = [((), None), ((1,), 0), ((7,), None), ((3, 5), 1), ((3, 5), (0, 1)), ((2, 3, 4), (0, 2)),
        ((2, 3, 4), -1), ((0, 3), 1), ((37, 1029), 1), ((37, 1029), 0)]


def _reduce_values(op, shape, dtype, rng):
    if op == "prod":  # near 1, so long products neither overflow nor vanish
        if dtype in FLOAT_DTYPES:
            return rng.uniform(0.9, 1.1, shape)
        return np.where(rng.random(shape) < 0.05, -1.0, 1.0)
    return values("real", shape, dtype, rng)


@pytest.mark.parametrize("op, dtype", [(op, dt) for op, spec in REDUCTIONS.items()
                                       for dt in spec[1]])
def test_reductions(op, dtype, rng):
    require_op(op)
    ref, _, empty_ok = REDUCTIONS[op]
    for shape, axis in AXES:
        n_red = int(np.prod([shape[a] for a in np.atleast_1d(axis)])) if axis is not None and shape \
            else int(np.prod(shape))
        if n_red == 0 and not empty_ok:
            continue
        for keepdims in (False, True):
            x, x64 = make(_reduce_values(op, shape, dtype, rng), dtype)
            got = getattr(ds, op)(x, axis=axis, keepdims=keepdims)
            want = ref(x64, axis=axis, keepdims=keepdims)
            assert got.shape == np.shape(want), (op, shape, axis, keepdims)
            if op in ("sum", "prod") and dtype in INT_DTYPES:
                assert got.dtype == "int64"
            tol_dtype = dtype if dtype in FLOAT_DTYPES else "float32"
            # Rounding errors of a sum grow with the number of terms.
            assert_close(got, want, tol_dtype, scale=max(1.0, np.sqrt(max(n_red, 1))))


def test_var_std_ddof(rng):
    x = rng.standard_normal((6, 9))
    for op, ref in [("var", np.var), ("std", np.std)]:
        require_op(op)
        got = getattr(ds, op)(on_dev(ds.tensor(x)), axis=1, ddof=1)
        assert_close(got, ref(x, axis=1, ddof=1), "float64")


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int64"])
def test_arg_reductions_pick_the_first_extreme(op, dtype, rng):
    require_op(op)
    ref = getattr(np, op)
    for shape, axis in [((7,), None), ((1,), 0), ((3, 5), 1), ((3, 5), 0), ((2, 3, 4), -1),
                        ((37, 1029), 1)]:
        v = rng.integers(-3, 4, shape).astype(np.float64)  # many ties
        x, x64 = make(v, dtype)
        for keepdims in (False, True):
            got = getattr(ds, op)(x, axis=axis, keepdims=keepdims)
            want = ref(x64, axis=axis, keepdims=keepdims)
            assert got.dtype == "int64"
            np.testing.assert_array_equal(got.to("cpu").numpy(), want)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_family(op, dtype, rng):
    require_op(op)
    for shape, axis in [((1,), 0), ((7,), -1), ((3, 5), 0), ((2, 3, 4), 1), ((37, 1029), -1),
                        ((0, 4), 1)]:
        x, x64 = make(rng.standard_normal(shape) * 3, dtype)
        m = x64.max(axis=axis, keepdims=True) if x64.size else 0
        lse = m + np.log(np.exp(x64 - m).sum(axis=axis, keepdims=True))
        want = np.exp(x64 - lse) if op == "softmax" else x64 - lse
        assert_close(getattr(ds, op)(x, axis=axis), want, dtype, scale=2)


# ---- shape and indexing: every dtype (they move data without arithmetic)
def _shape_cases(rng):
    a = rng.standard_normal((2, 3, 4))
    idx = rng.integers(0, 3, (2, 5, 4))
    return [
        ("reshape", lambda t: ds.reshape(t, [4, -1]), lambda x: x.reshape(4, -1)),
        ("reshape", lambda t: ds.reshape(t, [24]), lambda x: x.reshape(24)),
        ("flatten", lambda t: ds.flatten(t), lambda x: x.reshape(2, 12)),
        ("flatten", lambda t: ds.flatten(t, 0, 1), lambda x: x.reshape(6, 4)),
        ("squeeze", lambda t: ds.squeeze(ds.reshape(t, [2, 1, 3, 1, 4])),
         lambda x: x.reshape(2, 3, 4)),
        ("squeeze", lambda t: ds.squeeze(ds.reshape(t, [2, 1, 3, 1, 4]), axis=1),
         lambda x: x.reshape(2, 3, 1, 4)),
        ("reshape", lambda t: ds.unsqueeze(t, -1), lambda x: x[..., None]),
        ("permute", lambda t: ds.permute(t, [2, 0, 1]), lambda x: x.transpose(2, 0, 1)),
        ("permute", lambda t: ds.transpose(t), lambda x: x.swapaxes(-1, -2)),
        ("broadcast_to", lambda t: ds.broadcast_to(t[:, :1], [5, 2, 3, 4]),
         lambda x: np.broadcast_to(x[:, :1], (5, 2, 3, 4))),
        ("concat", lambda t: ds.concat([t, t[:, :1]], axis=1),
         lambda x: np.concatenate([x, x[:, :1]], axis=1)),
        ("concat", lambda t: ds.concat([t[:0], t], axis=0), lambda x: x),
        ("stack", lambda t: ds.stack([t, t], axis=-1), lambda x: np.stack([x, x], axis=-1)),
        ("split", lambda t: ds.split(t, [1, 3], axis=2)[1], lambda x: x[:, :, 1:]),
        ("split", lambda t: ds.split(t, 3, axis=1)[2], lambda x: x[:, 2:3]),
        ("slice", lambda t: ds.slice(t, 2, 1, None, 2), lambda x: x[:, :, 1::2]),
        ("slice", lambda t: ds.slice(t, -1, -3, -1), lambda x: x[..., -3:-1]),
        ("take_along_axis", lambda t: ds.take_along_axis(t, on_dev(ds.tensor(idx)), axis=1),
         lambda x: np.take_along_axis(x, idx, axis=1)),
        ("index_select", lambda t: ds.index_select(t, 1, on_dev(ds.Tensor([2, 0, 2]))),
         lambda x: x[:, [2, 0, 2]]),
        ("index_select", lambda t: ds.index_select(t, 0, on_dev(ds.Tensor([], dtype="int64"))),
         lambda x: x[:0]),
        ("pad", lambda t: ds.pad(t, [(0, 1), (2, 0), (1, 1)]),
         lambda x: np.pad(x, [(0, 1), (2, 0), (1, 1)])),
        ("pad", lambda t: ds.pad(t, [0, 0, 2, 1, 3, 2], mode="reflect"),
         lambda x: np.pad(x, [(0, 0), (2, 1), (3, 2)], mode="reflect")),
        ("tril", lambda t: ds.tril(t), np.tril),
        ("tril", lambda t: ds.tril(t, k=-1), lambda x: np.tril(x, -1)),
        ("triu", lambda t: ds.triu(t, 2), lambda x: np.triu(x, 2)),
    ], a


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_shape_and_index_ops(dtype, rng):
    cases, a = _shape_cases(rng)
    v = a if dtype in FLOAT_DTYPES else values("small_ints", a.shape, dtype, rng)
    for op, fn, ref in cases:
        require_op(op)
        x, x64 = make(v, dtype)
        got = fn(x)
        want = ref(x64)
        assert got.dtype == dtype and got.shape == want.shape, op
        np.testing.assert_array_equal(as_f64(got), want, err_msg=op)


def test_pad_constant_value_and_embedding(rng):
    require_op("pad")
    x, x64 = make(rng.standard_normal((3, 2)), "float32")
    np.testing.assert_array_equal(as_f64(ds.pad(x, [1, 2], value=-4.0)),
                                  np.pad(x64, [(1, 2), (0, 0)], constant_values=-4.0))
    require_op("embedding")
    w, w64 = make(rng.standard_normal((10, 4)), "float32")
    idx = rng.integers(0, 10, (2, 3))
    got = ds.embedding(on_dev(ds.tensor(idx)), w)
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(as_f64(got), w64[idx])


def test_index_errors_name_the_op():
    require_op("index_select")
    with pytest.raises(ds.Error, match="index_select"):
        ds.index_select(ds.zeros([3]), 0, ds.Tensor([5]))
    with pytest.raises(ds.Error, match="take_along_axis"):
        ds.take_along_axis(ds.zeros([3, 2]), ds.Tensor([[0, 4]]), axis=1)


# ---- creation
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "float16"])
def test_creation(dtype):
    for op in ("arange", "full", "one_hot"):
        require_op(op)
    cases = [
        (ds.arange(5, dtype=dtype), np.arange(5)),
        (ds.arange(2, 11, 3, dtype=dtype), np.arange(2, 11, 3)),
        (ds.arange(0, 0, dtype=dtype), np.arange(0)),
        (ds.full([2, 3], 7, dtype=dtype), np.full((2, 3), 7)),
        (ds.zeros([0, 4], dtype=dtype), np.zeros((0, 4))),
        (ds.ones([3], dtype=dtype), np.ones(3)),
        (ds.one_hot(ds.Tensor([0, 3, 1]), 4, dtype=dtype), np.eye(4)[[0, 3, 1]]),
    ]
    for got, want in cases:
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(as_f64(got), want)
    got = ds.arange(0, 1, 0.25, dtype="float64")
    np.testing.assert_allclose(got.numpy(), np.arange(0, 1, 0.25))
