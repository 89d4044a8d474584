"""Every op of include/ds/ops.h as a function with a NumPy/PyTorch-style signature.

Each wrapper only turns Python arguments into the op's attributes and calls
``_core.apply``: the op runs at once on concrete tensors, and adds a node when an
input is symbolic (a Graph value). ``name=`` labels that node (ignored eagerly).
Array-likes (numpy arrays, lists, scalars) are accepted wherever a tensor is.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Optional, Sequence, Union

from . import _core
from ._core import Tensor

Axis = Union[None, int, Sequence[int]]

# The graph whose methods are being called (graph.relu(x)): concrete inputs become
# its constants, so the node lands in that graph even when no input is symbolic.
_target_graph: contextvars.ContextVar = contextvars.ContextVar("deepseek_graph", default=None)


@contextlib.contextmanager
def building(graph):
    """Within this block, ops add their nodes to ``graph``."""
    token = _target_graph.set(graph)
    try:
        yield graph
    finally:
        _target_graph.reset(token)


def _apply(op: str, inputs, attrs=None, name: str = ""):
    graph = _target_graph.get()
    if graph is not None:
        inputs = [x if x is None or (isinstance(x, Tensor) and graph.owns(x)) else graph.constant(x)
                  for x in inputs]
    return _core.apply(op, inputs, attrs, name)


def _apply1(op: str, inputs, attrs=None, name: str = "") -> Tensor:
    return _apply(op, inputs, attrs, name)[0]


def _axes(axis: Axis) -> list:
    if axis is None:
        return []
    if isinstance(axis, (list, tuple)):
        return [int(a) for a in axis]
    return [int(axis)]


def _pair(v) -> list:
    return [int(e) for e in v] if isinstance(v, (list, tuple)) else [int(v)]


def _shape(shape) -> list:
    return [int(d) for d in shape] if isinstance(shape, (list, tuple)) else [int(shape)]


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


# ---- elementwise unary
def _unary(op: str):
    def fn(x, *, name: str = "") -> Tensor:
        return _apply1(op, [x], None, name)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"Elementwise {op}."
    return fn


_UNARY = ["neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
          "sigmoid", "relu", "silu", "erf", "floor", "ceil", "round", "sign", "reciprocal",
          "square", "logical_not", "isnan"]
for _op in _UNARY:
    globals()[_op] = _unary(_op)


def leaky_relu(x, negative_slope: float = 0.01, *, name: str = "") -> Tensor:
    return _apply1("leaky_relu", [x], {"negative_slope": float(negative_slope)}, name)


def elu(x, alpha: float = 1.0, *, name: str = "") -> Tensor:
    return _apply1("elu", [x], {"alpha": float(alpha)}, name)


def gelu(x, approximate: str = "none", *, name: str = "") -> Tensor:
    """GELU; ``approximate`` is "none" (erf form) or "tanh"."""
    return _apply1("gelu", [x], {"approximate": approximate}, name)


def softplus(x, beta: float = 1.0, threshold: float = 20.0, *, name: str = "") -> Tensor:
    return _apply1("softplus", [x], {"beta": float(beta), "threshold": float(threshold)}, name)


def cast(x, dtype, *, name: str = "") -> Tensor:
    return _apply1("cast", [x], {"dtype": _core.dtype(dtype)}, name)


# ---- elementwise binary: a Python scalar takes the other operand's dtype
def _operands(a, b):
    scalar = (bool, int, float)
    if isinstance(a, Tensor) and isinstance(b, scalar):
        return a, _core.scalar_like(float(b), a)
    if isinstance(b, Tensor) and isinstance(a, scalar):
        return _core.scalar_like(float(a), b), b
    return a, b


def _binary(op: str):
    def fn(a, b, *, name: str = "") -> Tensor:
        return _apply1(op, list(_operands(a, b)), None, name)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"Elementwise {op} with NumPy broadcasting and type promotion."
    return fn


_BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod", "eq", "ne", "lt", "le",
           "gt", "ge", "logical_and", "logical_or"]
for _op in _BINARY:
    globals()[_op] = _binary(_op)


def where(cond, a, b, *, name: str = "") -> Tensor:
    """Elements of ``a`` where ``cond`` is true, else of ``b`` (broadcasting)."""
    a, b = _operands(a, b)
    return _apply1("where", [cond, a, b], None, name)


# ---- reductions
def _reduction(op: str):
    def fn(x, axis: Axis = None, keepdims: bool = False, *, name: str = "") -> Tensor:
        return _apply1(op, [x], {"axes": _axes(axis), "keepdims": bool(keepdims)}, name)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"{op} over ``axis`` (int, tuple, or None for all axes)."
    return fn


for _op in ["sum", "mean", "max", "min", "prod", "logsumexp"]:
    globals()[_op] = _reduction(_op)


def var(x, axis: Axis = None, keepdims: bool = False, ddof: int = 0, *, name: str = "") -> Tensor:
    return _apply1("var", [x], {"axes": _axes(axis), "keepdims": bool(keepdims), "ddof": int(ddof)},
                   name)


def std(x, axis: Axis = None, keepdims: bool = False, ddof: int = 0, *, name: str = "") -> Tensor:
    return _apply1("std", [x], {"axes": _axes(axis), "keepdims": bool(keepdims), "ddof": int(ddof)},
                   name)


def _arg_reduction(op: str):
    def fn(x, axis: Optional[int] = None, keepdims: bool = False, *, name: str = "") -> Tensor:
        if axis is None:  # like numpy: over the flattened tensor
            x = reshape(x, [-1])
            axis = 0
        return _apply1(op, [x], {"axis": int(axis), "keepdims": bool(keepdims)}, name)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"int64 index of the {op[3:]} along ``axis`` (None: of the flattened tensor)."
    return fn


argmax = _arg_reduction("argmax")
argmin = _arg_reduction("argmin")


def softmax(x, axis: int = -1, *, name: str = "") -> Tensor:
    return _apply1("softmax", [x], {"axis": int(axis)}, name)


def log_softmax(x, axis: int = -1, *, name: str = "") -> Tensor:
    return _apply1("log_softmax", [x], {"axis": int(axis)}, name)


# ---- linear algebra
def matmul(a, b, *, name: str = "") -> Tensor:
    """Matrix product, batched and broadcasting like numpy.matmul."""
    return _apply1("matmul", [a, b], None, name)


def linear(x, weight, bias=None, *, name: str = "") -> Tensor:
    """``x @ weight.T + bias`` (PyTorch's linear; weight is [out, in])."""
    return _apply1("linear", [x, weight, bias], None, name)


def gemm(a, b, c=None, alpha: float = 1.0, beta: float = 1.0, trans_a: bool = False,
         trans_b: bool = False, *, name: str = "") -> Tensor:
    """``alpha * op(a) @ op(b) + beta * c`` (ONNX Gemm), 2-D."""
    return _apply1("gemm", [a, b, c], {"alpha": float(alpha), "beta": float(beta),
                                        "trans_a": bool(trans_a), "trans_b": bool(trans_b)}, name)


# ---- convolution and pooling (NCHW; an int means the same value for both dims)
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1, *,
           channels_last: bool = False, name: str = "") -> Tensor:
    """2-D convolution; weight is [out, in/groups, kh, kw] (OIHW). ``channels_last``:
    x is [N, H, W, C] and the result [N, OH, OW, out] (cuDNN's fastest layout)."""
    return _apply1("conv2d", [x, weight, bias],
                   {"stride": _pair(stride), "padding": _pair(padding),
                    "dilation": _pair(dilation), "groups": int(groups),
                    "channels_last": bool(channels_last)}, name)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1,
                     groups: int = 1, *, name: str = "") -> Tensor:
    """Transposed 2-D convolution; weight is [in, out/groups, kh, kw] like PyTorch."""
    return _apply1("conv_transpose2d", [x, weight, bias],
                   {"stride": _pair(stride), "padding": _pair(padding),
                    "output_padding": _pair(output_padding), "dilation": _pair(dilation),
                    "groups": int(groups)}, name)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False, *,
               channels_last: bool = False, name: str = "") -> Tensor:
    """Max pooling; ``stride`` defaults to ``kernel_size``. ``channels_last``: x is
    [N, H, W, C]."""
    return _apply1("max_pool2d", [x],
                   {"kernel_size": _pair(kernel_size),
                    "stride": [] if stride is None else _pair(stride), "padding": _pair(padding),
                    "dilation": _pair(dilation), "ceil_mode": bool(ceil_mode),
                    "channels_last": bool(channels_last)}, name)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, *, name: str = "") -> Tensor:
    """Average pooling; ``stride`` defaults to ``kernel_size``."""
    return _apply1("avg_pool2d", [x],
                   {"kernel_size": _pair(kernel_size),
                    "stride": [] if stride is None else _pair(stride), "padding": _pair(padding),
                    "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)},
                   name)


def adaptive_avg_pool2d(x, output_size, *, name: str = "") -> Tensor:
    return _apply1("adaptive_avg_pool2d", [x], {"output_size": _pair(output_size)}, name)


def global_avg_pool2d(x, *, name: str = "") -> Tensor:
    """Mean over H and W: [N, C, H, W] -> [N, C, 1, 1]."""
    return _apply1("global_avg_pool2d", [x], None, name)


# ---- normalization
def batch_norm(x, running_mean, running_var, weight=None, bias=None, eps: float = 1e-5, *,
               name: str = "") -> Tensor:
    """Inference batch norm over axis 1 with the given running statistics."""
    return _apply1("batch_norm", [x, running_mean, running_var, weight, bias], {"eps": float(eps)},
                   name)


def batch_norm_train(x, weight=None, bias=None, eps: float = 1e-5, *, name: str = ""):
    """Training-mode batch norm over axis 1 with the batch's own statistics: returns
    ``(y, mean, var)``, the variance biased. The statistics, weight and bias are float32
    (float64 for a float64 ``x``); ``y`` has ``x``'s dtype."""
    if weight is None and bias is not None:  # a bias alone: a weight of ones
        bias = _as_tensor(bias)
        weight = full(bias.shape, 1.0, dtype=bias.dtype)
        if not bias.is_symbolic and bias.device != "cpu":
            weight = weight.to(bias.device)
    y, mean, var = _apply("batch_norm_train", [x, weight, bias], {"eps": float(eps)}, name)
    return y, mean, var


def softmax_cross_entropy(logits, target, ignore_index: int = -100, label_smoothing: float = 0.0,
                          *, name: str = ""):
    """Softmax cross-entropy of each row of ``logits`` [N, C] against its class index in
    ``target`` [N] (int32/int64) as one op: returns ``(loss, lse)``, the per-row loss
    (0 where ``target == ignore_index``) and the row logsumexp, float32 (float64 for
    float64 logits). ``ds.nn.functional.cross_entropy`` reduces the loss."""
    attrs = {"ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing)}
    loss, lse = _apply("softmax_cross_entropy", [logits, target], attrs, name)
    return loss, lse


def _normalized_shape(x, weight, normalized_shape) -> list:
    if normalized_shape is not None:
        return _shape(normalized_shape)
    if weight is not None:
        return list(_as_tensor(weight).shape)
    return [_as_tensor(x).shape[-1]]


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5, *, normalized_shape=None,
               name: str = "") -> Tensor:
    """Normalizes over the trailing ``normalized_shape`` dims (default: weight's shape, else
    the last dim), then scales and shifts."""
    shape = _normalized_shape(x, weight, normalized_shape)
    return _apply1("layer_norm", [x, weight, bias], {"normalized_shape": shape, "eps": float(eps)},
                   name)


def scaled_dot_product_attention(q, k, v, *, causal: bool = False, scale: float = 0.0,
                                 layout: str = "bhsd", name: str = "") -> Tensor:
    """softmax(q @ k^T * scale [+ causal mask]) @ v over the last two dims ([..., L, D]);
    ``scale`` 0 means 1/sqrt(D). ``layout="bshd"`` takes and gives [..., L, H, D] instead
    of [..., H, L, D]. One fused (flash-style) kernel on CUDA."""
    return _apply1("scaled_dot_product_attention", [q, k, v],
                   {"causal": bool(causal), "scale": float(scale), "layout": str(layout)}, name)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, *,
               name: str = "") -> Tensor:
    return _apply1("group_norm", [x, weight, bias], {"num_groups": int(num_groups),
                                                      "eps": float(eps)}, name)


def rms_norm(x, weight=None, eps: float = 1e-6, *, normalized_shape=None, name: str = "") -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the trailing ``normalized_shape`` dims."""
    shape = _normalized_shape(x, weight, normalized_shape)
    return _apply1("rms_norm", [x, weight], {"normalized_shape": shape, "eps": float(eps)}, name)


# ---- shape and indexing
def reshape(x, shape, *, name: str = "") -> Tensor:
    """A tensor with the same elements in ``shape`` (one -1 extent is inferred)."""
    return _apply1("reshape", [x], {"shape": _shape(shape)}, name)


def flatten(x, start_axis: int = 1, end_axis: int = -1, *, name: str = "") -> Tensor:
    return _apply1("flatten", [x], {"start_axis": int(start_axis), "end_axis": int(end_axis)}, name)


def squeeze(x, axis: Axis = None, *, name: str = "") -> Tensor:
    """Drops the size-1 axes in ``axis`` (None: all of them)."""
    return _apply1("squeeze", [x], {"axes": _axes(axis)}, name)


def unsqueeze(x, axis: int, *, name: str = "") -> Tensor:
    """Inserts a size-1 axis at ``axis``."""
    shape = list(_as_tensor(x).shape)
    rank = len(shape) + 1
    if not -rank <= axis < rank:
        raise _core.InvalidArgument(f"unsqueeze: axis {axis} is out of range for rank {rank}")
    shape.insert(axis % rank, 1)
    return reshape(x, [-1 if d is None else d for d in shape], name=name)


def permute(x, axes: Sequence[int], *, name: str = "") -> Tensor:
    return _apply1("permute", [x], {"axes": _shape(axes)}, name)


def transpose(x, a: int = -2, b: int = -1, *, name: str = "") -> Tensor:
    """Swaps axes ``a`` and ``b`` (default: the last two)."""
    rank = _as_tensor(x).ndim
    axes = list(range(rank))
    for v in (a, b):
        if not -rank <= v < rank:
            raise _core.InvalidArgument(f"transpose: axis {v} is out of range for rank {rank}")
    axes[a], axes[b] = axes[b], axes[a]
    return permute(x, axes, name=name)


def broadcast_to(x, shape, *, name: str = "") -> Tensor:
    return _apply1("broadcast_to", [x], {"shape": _shape(shape)}, name)


def concat(xs: Sequence, axis: int = 0, *, name: str = "") -> Tensor:
    return _apply1("concat", list(xs), {"axis": int(axis)}, name)


def stack(xs: Sequence, axis: int = 0, *, name: str = "") -> Tensor:
    return _apply1("stack", list(xs), {"axis": int(axis)}, name)


def split(x, sizes, axis: int = 0, *, name: str = "") -> list:
    """Splits along ``axis``: ``sizes`` is a list of part sizes, or an int number of equal
    parts (like numpy.split)."""
    if isinstance(sizes, int):
        n = _as_tensor(x).shape[axis]
        if n is None or sizes <= 0 or n % sizes:
            raise _core.InvalidArgument(
                f"split: axis {axis} of extent {n} does not divide into {sizes} equal parts")
        sizes = [n // sizes] * sizes
    return _apply("split", [x], {"sizes": _shape(sizes), "axis": int(axis)}, name)


def slice(x, axis: int, start: int = 0, stop: Optional[int] = None, step: int = 1, *,
          name: str = "") -> Tensor:
    """Elements ``start:stop:step`` along ``axis`` (positive step)."""
    attrs = {"axis": int(axis), "start": int(start), "step": int(step)}
    if stop is not None:
        attrs["stop"] = int(stop)
    return _apply1("slice", [x], attrs, name)


def take_along_axis(x, indices, axis: int, *, name: str = "") -> Tensor:
    """numpy.take_along_axis (gather)."""
    return _apply1("take_along_axis", [x, indices], {"axis": int(axis)}, name)


gather = take_along_axis


def index_select(x, axis: int, indices, *, name: str = "") -> Tensor:
    """The slices of ``x`` at the 1-D ``indices`` along ``axis``."""
    return _apply1("index_select", [x, indices], {"axis": int(axis)}, name)


def embedding(indices, weight, *, name: str = "") -> Tensor:
    """Rows of ``weight`` [num, dim] at integer ``indices``: shape indices.shape + [dim]."""
    return _apply1("embedding", [indices, weight], None, name)


def pad(x, pads, mode: str = "constant", value: float = 0.0, *, name: str = "") -> Tensor:
    """Pads with (before, after) per axis from the first, as a flat list or numpy.pad-style
    pairs; ``mode`` is "constant" or "reflect"."""
    flat = []
    for p in pads:
        flat.extend(_pair(p) if isinstance(p, (list, tuple)) else [int(p)])
    return _apply1("pad", [x], {"pads": flat, "mode": mode, "value": float(value)}, name)


def tril(x, k: int = 0, *, name: str = "") -> Tensor:
    return _apply1("tril", [x], {"k": int(k)}, name)


def triu(x, k: int = 0, *, name: str = "") -> Tensor:
    return _apply1("triu", [x], {"k": int(k)}, name)


# ---- creation
def arange(start, stop=None, step=1, dtype="float32", *, name: str = "") -> Tensor:
    """Like numpy.arange: ``arange(n)`` or ``arange(start, stop, step)``."""
    if stop is None:
        start, stop = 0, start
    return _apply1("arange", [], {"start": float(start), "stop": float(stop), "step": float(step),
                                  "dtype": _core.dtype(dtype)}, name)


def full(shape, value, dtype="float32", *, name: str = "") -> Tensor:
    return _apply1("full", [], {"shape": _shape(shape), "value": float(value),
                                "dtype": _core.dtype(dtype)}, name)


def zeros(shape, dtype="float32", *, name: str = "") -> Tensor:
    return full(shape, 0.0, dtype, name=name)


def ones(shape, dtype="float32", *, name: str = "") -> Tensor:
    return full(shape, 1.0, dtype, name=name)


def one_hot(indices, num_classes: int, dtype="float32", *, name: str = "") -> Tensor:
    return _apply1("one_hot", [indices], {"num_classes": int(num_classes),
                                          "dtype": _core.dtype(dtype)}, name)


# ---- random: counter-based; the same seed gives the same numbers everywhere
def random_uniform(shape, seed: int, low: float = 0.0, high: float = 1.0, dtype="float32", *,
                   name: str = "") -> Tensor:
    return _apply1("random_uniform", [], {"shape": _shape(shape), "seed": int(seed),
                                          "low": float(low), "high": float(high),
                                          "dtype": _core.dtype(dtype)}, name)


def random_normal(shape, seed: int, mean: float = 0.0, stddev: float = 1.0, dtype="float32", *,
                  name: str = "") -> Tensor:
    return _apply1("random_normal", [], {"shape": _shape(shape), "seed": int(seed),
                                         "mean": float(mean), "stddev": float(stddev),
                                         "dtype": _core.dtype(dtype)}, name)


def bernoulli(shape, seed: int, p: float, dtype="float32", *, name: str = "") -> Tensor:
    return _apply1("bernoulli", [], {"shape": _shape(shape), "seed": int(seed), "p": float(p),
                                     "dtype": _core.dtype(dtype)}, name)


__all__ = sorted(
    _UNARY + _BINARY
    + ["leaky_relu", "elu", "gelu", "softplus", "cast", "where",
       "sum", "mean", "max", "min", "prod", "logsumexp", "var", "std", "argmax", "argmin",
       "softmax", "log_softmax", "matmul", "linear", "gemm",
       "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
       "global_avg_pool2d", "batch_norm", "batch_norm_train", "layer_norm", "group_norm", "rms_norm",
       "softmax_cross_entropy",
       "scaled_dot_product_attention", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "broadcast_to",
       "concat", "stack", "split", "slice", "take_along_axis", "gather", "index_select",
       "embedding", "pad", "tril", "triu", "arange", "full", "zeros", "ones", "one_hot",
       "random_uniform", "random_normal", "bernoulli"])
