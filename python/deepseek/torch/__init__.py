"""``deepseek.torch``: the common ``torch.*`` functions on ds tensors, for torch-style code
without PyTorch (``import deepseek.torch as torch``; see docs/torch_compat.md).

Every function takes ds tensors, TorchTensors or array-likes and returns TorchTensors (a ds
tensor with torch's methods). Any other ``torch.<name>`` raises a TorchCompatError naming it.
"""
from __future__ import annotations

import builtins
import math
import itertools

from .. import _core, ops
from ._tensor import (  # noqa: F401  (Size, TorchCompatError, ValuesIndices: torch's names)
    Size, TorchCompatError, TorchTensor, ValuesIndices, dims, ds_tensor, unsupported, unwrap,
)

Tensor = TorchTensor

# torch's dtype names. They shadow int, float and bool in this module, so the functions
# below leave argument conversion to the ops (builtins.* where one is needed; all, any,
# sum, max, min, abs and round are torch functions here too).
float32 = float = _core.float32
float64 = double = _core.float64
float16 = half = _core.float16
bfloat16 = _core.bfloat16
int64 = long = _core.int64
int32 = int = _core.int32
int8 = _core.int8
uint8 = _core.uint8
bool = _core.bool  # noqa: A001  (torch.bool)
dtype = _core.DType


def get_default_dtype():
    return float32


def is_tensor(x) -> bool:
    return isinstance(x, (TorchTensor, _core.Tensor))


# ---- creation
def tensor(data, dtype=None, device=None, requires_grad=False):
    return TorchTensor(_core.Tensor(unwrap(data), dtype=dtype))


def as_tensor(data, dtype=None, device=None):
    t = unwrap(data)
    if isinstance(t, _core.Tensor):
        return TorchTensor(t if dtype is None else ops.cast(t, dtype))
    return tensor(data, dtype)


from_numpy = as_tensor


def _size(size) -> list:
    return dims(size)


def full(size, fill_value, dtype=None, device=None):
    return TorchTensor(ops.full(_size(size), fill_value, dtype or float32))


def zeros(*size, dtype=None, device=None):
    return full(size, 0.0, dtype)


def ones(*size, dtype=None, device=None):
    return full(size, 1.0, dtype)


empty = zeros  # torch leaves the values unspecified; zeros is one valid choice


def full_like(x, fill_value, dtype=None):
    return full(ds_tensor(x).shape, fill_value, dtype or ds_tensor(x).dtype)


def zeros_like(x, dtype=None):
    return full_like(x, 0.0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1.0, dtype)


empty_like = zeros_like


def arange(start, end=None, step=1, dtype=None, device=None):
    if dtype is None:  # torch: integer arguments give int64
        integral = builtins.all(isinstance(v, type(1)) for v in (start, end or 0, step))
        dtype = int64 if integral else float32
    return TorchTensor(ops.arange(start, end, step, dtype))


def linspace(start, end, steps, dtype=None):
    step = (end - start) / (steps - 1) if steps > 1 else 0.0
    return TorchTensor(ops.add(ops.mul(ops.arange(steps, dtype="float64"), step), start)
                       .astype(dtype or float32))


def eye(n, m=None, dtype=None):
    rows = ops.reshape(ops.arange(n, dtype="int64"), [n, 1])
    cols = ops.arange(n if m is None else m, dtype="int64")
    return TorchTensor(ops.cast(ops.eq(rows, cols), dtype or float32))


# Random numbers: ds's generators are counter-based and keyed by a seed, so each call
# draws the next seed of a sequence that manual_seed restarts.
_seeds = itertools.count(0)


def manual_seed(seed):
    global _seeds
    _seeds = itertools.count(builtins.int(seed) * 1_000_003)


def next_seed() -> int:
    return next(_seeds)


def rand(*size, dtype=None):
    return TorchTensor(ops.random_uniform(_size(size), next_seed(), dtype=dtype or float32))


def randn(*size, dtype=None):
    return TorchTensor(ops.random_normal(_size(size), next_seed(), dtype=dtype or float32))


# ---- elementwise math
def _unary(op):
    def fn(input, *, out=None):
        if out is not None:
            raise unsupported(f"torch.{op.__name__}(out=...)")
        return TorchTensor(op(ds_tensor(input)))
    fn.__name__ = op.__name__
    return fn


for _name in ["abs", "neg", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
              "sigmoid", "relu", "erf", "floor", "ceil", "round", "sign", "reciprocal", "square",
              "logical_not", "isnan"]:
    globals()[_name] = _unary(getattr(ops, _name))
negative = globals()["neg"]


def _binary(op):
    def fn(input, other, *, out=None):
        if out is not None:
            raise unsupported(f"torch.{op.__name__}(out=...)")
        return TorchTensor(op(unwrap(input), unwrap(other)))
    fn.__name__ = op.__name__
    return fn


for _name in ["mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
              "logical_and", "logical_or", "matmul"]:
    globals()[_name] = _binary(getattr(ops, _name))
multiply, divide, true_divide = mul, div, div  # noqa: F821
greater, less, greater_equal, less_equal, not_equal = gt, lt, ge, le, ne  # noqa: F821
mm = bmm = matmul  # noqa: F821


def add(input, other, alpha=1):
    return TorchTensor(ops.add(unwrap(input), unwrap(other) if alpha == 1
                               else ops.mul(unwrap(other), alpha)))


def sub(input, other, alpha=1):
    return TorchTensor(ops.sub(unwrap(input), unwrap(other) if alpha == 1
                               else ops.mul(unwrap(other), alpha)))


subtract = sub


def clamp(input, min=None, max=None):
    return TorchTensor(input).clamp(min, max)


clip = clamp


def where(condition, input, other):
    return TorchTensor(ops.where(unwrap(condition), unwrap(input), unwrap(other)))


def softmax(input, dim, dtype=None):
    x = ds_tensor(input) if dtype is None else ops.cast(ds_tensor(input), dtype)
    return TorchTensor(ops.softmax(x, dim))


def log_softmax(input, dim, dtype=None):
    x = ds_tensor(input) if dtype is None else ops.cast(ds_tensor(input), dtype)
    return TorchTensor(ops.log_softmax(x, dim))


# ---- reductions (torch's dim / keepdim; methods and functions share the code)
def sum(input, dim=None, keepdim=False, dtype=None):  # noqa: A001
    return TorchTensor(input).sum(dim, keepdim, dtype)


def mean(input, dim=None, keepdim=False):
    return TorchTensor(input).mean(dim, keepdim)


def prod(input, dim=None, keepdim=False):
    return TorchTensor(input).prod(dim, keepdim)


def amax(input, dim=None, keepdim=False):
    return TorchTensor(input).amax(dim, keepdim)


def amin(input, dim=None, keepdim=False):
    return TorchTensor(input).amin(dim, keepdim)


def max(input, dim=None, keepdim=False):  # noqa: A001
    return TorchTensor(input).max(dim, keepdim)


def min(input, dim=None, keepdim=False):  # noqa: A001
    return TorchTensor(input).min(dim, keepdim)


def argmax(input, dim=None, keepdim=False):
    return TorchTensor(input).argmax(dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return TorchTensor(input).argmin(dim, keepdim)


def all(input, dim=None, keepdim=False):  # noqa: A001
    return TorchTensor(input).all(dim, keepdim)


def any(input, dim=None, keepdim=False):  # noqa: A001
    return TorchTensor(input).any(dim, keepdim)


def norm(input, p="fro", dim=None, keepdim=False):
    return TorchTensor(input).norm(p, dim, keepdim)


def var(input, dim=None, unbiased=True, keepdim=False):
    return TorchTensor(input).var(dim, unbiased, keepdim)


def std(input, dim=None, unbiased=True, keepdim=False):
    return TorchTensor(input).std(dim, unbiased, keepdim)


def logsumexp(input, dim, keepdim=False):
    return TorchTensor(input).logsumexp(dim, keepdim)


def numel(input) -> int:
    return TorchTensor(input).numel()


# ---- shape and joining
def cat(tensors, dim=0):
    return TorchTensor(ops.concat([ds_tensor(t) for t in tensors], dim))


concat = cat


def stack(tensors, dim=0):
    return TorchTensor(ops.stack([ds_tensor(t) for t in tensors], dim))


def reshape(input, shape):
    return TorchTensor(input).reshape(shape)


def flatten(input, start_dim=0, end_dim=-1):
    return TorchTensor(input).flatten(start_dim, end_dim)


def squeeze(input, dim=None):
    return TorchTensor(input).squeeze(dim)


def unsqueeze(input, dim):
    return TorchTensor(input).unsqueeze(dim)


def permute(input, dims):
    return TorchTensor(input).permute(dims)


def transpose(input, dim0, dim1):
    return TorchTensor(input).transpose(dim0, dim1)


swapaxes = transpose


def t(input):
    return TorchTensor(input).t()


def split(tensor, split_size_or_sections, dim=0):
    return TorchTensor(tensor).split(split_size_or_sections, dim)


def chunk(input, chunks, dim=0):
    return TorchTensor(input).chunk(chunks, dim)


def unbind(input, dim=0):
    return TorchTensor(input).unbind(dim)


def broadcast_to(input, size):
    return TorchTensor(ops.broadcast_to(ds_tensor(input), dims([size])))


def gather(input, dim, index):
    return TorchTensor(input).gather(dim, index)


def index_select(input, dim, index):
    return TorchTensor(input).index_select(dim, index)


def tril(input, diagonal=0):
    return TorchTensor(input).tril(diagonal)


def triu(input, diagonal=0):
    return TorchTensor(input).triu(diagonal)


def masked_fill(input, mask, value):
    return TorchTensor(input).masked_fill(mask, value)


class no_grad:
    """Accepted for compatibility: ds.torch_compat builds no autograd graph anyway."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


inference_mode = no_grad
pi = math.pi
inf = math.inf
nan = math.nan

def device(type, index=None):
    """torch.device: "cpu" is the one device ds.torch_compat runs on."""
    if str(type).split(":")[0] != "cpu":
        raise unsupported(f"torch.device({type!r})", "ds.torch_compat runs on the CPU")
    return "cpu"


class _Namespace:
    """A torch namespace ds does not map (torch.fft...), so that errors name the whole
    call (torch.fft.fft); ``mapped`` holds the few of its names that do have meaning."""

    def __init__(self, name, **mapped):
        self._name = name
        self.__dict__.update(mapped)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise unsupported(f"{self._name}.{attr}")

    def __repr__(self):
        return f"<unmapped namespace {self._name}>"


# `device = "cuda" if torch.cuda.is_available() else "cpu"` picks the CPU.
cuda = _Namespace("torch.cuda", is_available=lambda: False, device_count=lambda: 0)
_NAMESPACES = {name: _Namespace(f"torch.{name}") for name in [
    "autograd", "backends", "distributed", "distributions", "fft", "jit", "linalg", "onnx",
    "optim", "sparse", "special", "utils"]}

from . import nn  # noqa: E402
from .nn import functional  # noqa: E402,F401


def __getattr__(name):
    if name in _NAMESPACES:
        return _NAMESPACES[name]
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(f"torch.{name}")
