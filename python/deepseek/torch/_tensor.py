"""The torch-style view of a ds tensor: torch's Tensor methods, operators and dim/keepdim
arguments, each mapped onto a ds op. It wraps (never copies) a ``ds.Tensor``, concrete or
symbolic, so the same code runs eagerly and while a graph is being built."""
from __future__ import annotations

import collections

from .. import _core, ops

_FLOATS = ("float16", "bfloat16", "float32", "float64")

# torch.max(x, dim) and friends return (values, indices), like torch.return_types.
ValuesIndices = collections.namedtuple("ValuesIndices", ["values", "indices"])


class TorchCompatError(AttributeError, NotImplementedError):
    """A torch call, attribute or argument that ds.torch_compat does not map.

    An AttributeError too, so hasattr() and getattr(obj, name, default) keep working."""


def unsupported(call: str, why: str = "") -> TorchCompatError:
    return TorchCompatError(f"ds.torch_compat: {call} is not supported" + (f" ({why})" if why
                                                                           else ""))


def unwrap(x):
    """ds tensors inside ``x`` (TorchTensor, or lists/tuples/dicts of them)."""
    if isinstance(x, TorchTensor):
        return x._t
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(unwrap(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: unwrap(v) for k, v in x.items()}
    return x


def wrap(x):
    """``x`` with every ds.Tensor in it (lists/tuples/dicts too) seen as a TorchTensor."""
    if isinstance(x, _core.Tensor):
        return TorchTensor(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(wrap(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(wrap(v) for v in x)
    if isinstance(x, dict):
        return {k: wrap(v) for k, v in x.items()}
    return x


def ds_tensor(x) -> _core.Tensor:
    """A ds tensor for a torch-style argument (TorchTensor, ds.Tensor, array-like)."""
    x = unwrap(x)
    return x if isinstance(x, _core.Tensor) else _core.Tensor(x)


def dims(args) -> list:
    """``view(2, 3)`` and ``view((2, 3))`` both give [2, 3]; torch.Size counts as a tuple."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = args[0]
    return [int(a) for a in args]


class Size(tuple):
    """torch.Size: a tuple of extents (None marks a symbolic extent)."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"


def _reduce(op, x, dim, keepdim):
    return TorchTensor(op(ds_tensor(x), None if dim is None else dim, bool(keepdim)))


def reduce_minmax(name, x, dim=None, keepdim=False):
    """torch.max/min: over everything (a 0-d tensor) or along ``dim`` (values, indices)."""
    t = ds_tensor(x)
    if dim is None:
        return TorchTensor(getattr(ops, name)(t))
    arg = ops.argmax if name == "max" else ops.argmin
    return ValuesIndices(TorchTensor(getattr(ops, name)(t, int(dim), bool(keepdim))),
                         TorchTensor(arg(t, int(dim), bool(keepdim))))


def _binary(op):
    def forward(self, other):
        return TorchTensor(op(self._t, unwrap(other)))

    def reverse(self, other):
        return TorchTensor(op(unwrap(other), self._t))
    return forward, reverse


class TorchTensor:
    """A ds tensor with torch's Tensor interface; ``.ds`` is the ds tensor."""

    __slots__ = ("_t",)

    def __init__(self, t):
        self._t = ds_tensor(t)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        # Real PyTorch, given one of these, hands the call here: run its ds mapping.
        from . import _dispatch
        return _dispatch.call_torch_function(func, args, kwargs or {})

    # ---- identity and conversion
    @property
    def ds(self) -> _core.Tensor:
        return self._t

    @property
    def shape(self) -> Size:
        return Size(self._t.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self._t.shape[dim]

    def dim(self) -> int:
        return self._t.ndim

    ndim = property(dim)

    def numel(self) -> int:
        return self._t.size

    @property
    def dtype(self):
        return self._t.dtype

    @property
    def device(self) -> str:
        return self._t.device

    @property
    def requires_grad(self) -> bool:
        return False

    @property
    def is_cuda(self) -> bool:
        return False

    def is_floating_point(self) -> bool:
        return self._t.dtype.name in _FLOATS

    def is_contiguous(self) -> bool:
        return self._t.is_symbolic or self._t.is_contiguous()

    def to(self, *args, **kwargs):
        """``.to(dtype)``, ``.to(other)`` (its dtype) or ``.to("cpu")``."""
        target = kwargs.get("dtype", args[0] if args else None)
        if isinstance(target, TorchTensor):
            target = target.dtype
        if target is None or str(target).split(":")[0] == "cpu":
            return self
        if isinstance(target, str):
            raise unsupported(f"Tensor.to({target!r})", "ds.torch_compat runs on the CPU")
        return self.type(target)

    def type(self, dtype):
        return TorchTensor(ops.cast(self._t, dtype))

    def type_as(self, other):
        return self.type(other.dtype)

    def float(self):
        return self.type("float32")

    def double(self):
        return self.type("float64")

    def half(self):
        return self.type("float16")

    def bfloat16(self):
        return self.type("bfloat16")

    def long(self):
        return self.type("int64")

    def int(self):
        return self.type("int32")

    def bool(self):
        return self.type("bool")

    def cpu(self):
        return self

    def contiguous(self):
        return self

    def detach(self):
        return self

    def clone(self):
        return TorchTensor(self._t if self._t.is_symbolic else self._t.clone())

    def numpy(self):
        return self._t.numpy()

    def item(self):
        return self._t.item()

    def tolist(self):
        return self._t.tolist()

    # ---- shape
    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = shape[0]
        if None in shape:
            # A symbolic extent (x.view(x.size(0), 4) on a dynamic batch) is the inferred one.
            if shape.count(None) > 1 or -1 in shape:
                raise unsupported(f"Tensor.view{tuple(shape)}",
                                  "one symbolic or -1 extent at most; use the static batch")
            shape = [-1 if d is None else d for d in shape]
        return TorchTensor(ops.reshape(self._t, dims(shape)))

    reshape = view

    def view_as(self, other):
        return self.view(other.shape)

    reshape_as = view_as

    def permute(self, *axes):
        return TorchTensor(ops.permute(self._t, dims(axes)))

    def transpose(self, dim0, dim1):
        return TorchTensor(ops.transpose(self._t, int(dim0), int(dim1)))

    def t(self):
        return self if self.dim() < 2 else self.transpose(0, 1)

    @property
    def T(self):
        return self.permute(list(range(self.dim()))[::-1])

    def unsqueeze(self, dim):
        return TorchTensor(ops.unsqueeze(self._t, int(dim)))

    def squeeze(self, dim=None):
        if dim is not None and self._t.shape[dim] != 1:
            return self  # torch leaves a non-unit dim alone
        return TorchTensor(ops.squeeze(self._t, dim))

    def flatten(self, start_dim=0, end_dim=-1):
        if self.dim() == 0:
            return self.view(1)
        return TorchTensor(ops.flatten(self._t, int(start_dim), int(end_dim)))

    def expand(self, *sizes):
        want = dims(sizes)
        have = [1] * (len(want) - self.dim()) + list(self.shape)
        target = [h if w == -1 else w for w, h in zip(want, have)]
        return TorchTensor(ops.broadcast_to(self._t, target))

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *reps):
        reps = dims(reps)
        have = [1] * (len(reps) - self.dim()) + list(self.shape)
        # Tiling as a broadcast: [a, b] -> [r0, a, r1, b] -> [r0*a, r1*b].
        x = ops.reshape(self._t, [e for h in have for e in (1, h)])
        x = ops.broadcast_to(x, [e for r, h in zip(reps, have) for e in (r, h)])
        return TorchTensor(ops.reshape(x, [r * h for r, h in zip(reps, have)]))

    def split(self, split_size, dim=0):
        n = self._t.shape[dim]
        if isinstance(split_size, int):
            sizes = [min(split_size, n - s) for s in range(0, n, split_size)]
        else:
            sizes = list(split_size)
        return tuple(wrap(ops.split(self._t, sizes, int(dim))))

    def chunk(self, chunks, dim=0):
        n = self._t.shape[dim]
        return self.split(-(-n // int(chunks)), dim)

    def unbind(self, dim=0):
        return tuple(p.squeeze(dim) for p in self.split(1, dim))

    def __getitem__(self, key):
        return TorchTensor(self._t[unwrap(key)])

    def __setitem__(self, key, value):
        raise unsupported("Tensor.__setitem__", "ds tensors are immutable here; use torch.where")

    def __len__(self):
        return len(self._t)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # ---- reductions
    def sum(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.type(dtype)
        return _reduce(ops.sum, x, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return _reduce(ops.mean, self, dim, keepdim)

    def prod(self, dim=None, keepdim=False):
        return _reduce(ops.prod, self, dim, keepdim)

    def amax(self, dim=None, keepdim=False):
        return _reduce(ops.max, self, dim, keepdim)

    def amin(self, dim=None, keepdim=False):
        return _reduce(ops.min, self, dim, keepdim)

    def logsumexp(self, dim, keepdim=False):
        return _reduce(ops.logsumexp, self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        if isinstance(dim, (TorchTensor, _core.Tensor)):
            return TorchTensor(ops.maximum(self._t, unwrap(dim)))
        return reduce_minmax("max", self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        if isinstance(dim, (TorchTensor, _core.Tensor)):
            return TorchTensor(ops.minimum(self._t, unwrap(dim)))
        return reduce_minmax("min", self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return TorchTensor(ops.argmax(self._t, dim, bool(keepdim)))

    def argmin(self, dim=None, keepdim=False):
        return TorchTensor(ops.argmin(self._t, dim, bool(keepdim)))

    def all(self, dim=None, keepdim=False):
        return _reduce(ops.min, self.bool(), dim, keepdim)

    def any(self, dim=None, keepdim=False):
        return _reduce(ops.max, self.bool(), dim, keepdim)

    def norm(self, p="fro", dim=None, keepdim=False):
        if p not in ("fro", 2):
            raise unsupported(f"Tensor.norm(p={p!r})")
        return TorchTensor(ops.sqrt(ops.sum(ops.square(self._t), dim, bool(keepdim))))

    def var(self, dim=None, unbiased=True, keepdim=False):
        return TorchTensor(ops.var(self._t, dim, bool(keepdim), ddof=int(bool(unbiased))))

    def std(self, dim=None, unbiased=True, keepdim=False):
        return TorchTensor(ops.std(self._t, dim, bool(keepdim), ddof=int(bool(unbiased))))

    def softmax(self, dim):
        return TorchTensor(ops.softmax(self._t, int(dim)))

    def log_softmax(self, dim):
        return TorchTensor(ops.log_softmax(self._t, int(dim)))

    # ---- elementwise
    def clamp(self, min=None, max=None):
        x = self._t
        if min is not None:
            x = ops.maximum(x, unwrap(min))
        if max is not None:
            x = ops.minimum(x, unwrap(max))
        return TorchTensor(x)

    clip = clamp

    def gather(self, dim, index):
        return TorchTensor(ops.take_along_axis(self._t, ds_tensor(index), int(dim)))

    def index_select(self, dim, index):
        return TorchTensor(ops.index_select(self._t, int(dim), ds_tensor(index)))

    def tril(self, diagonal=0):
        return TorchTensor(ops.tril(self._t, int(diagonal)))

    def triu(self, diagonal=0):
        return TorchTensor(ops.triu(self._t, int(diagonal)))

    def masked_fill(self, mask, value):
        return TorchTensor(ops.where(unwrap(mask), value, self._t))

    def pow(self, exponent):
        return TorchTensor(ops.pow(self._t, unwrap(exponent)))

    def matmul(self, other):
        return TorchTensor(ops.matmul(self._t, unwrap(other)))

    mm = bmm = matmul

    def add(self, other, alpha=1):
        return TorchTensor(ops.add(self._t, unwrap(other) if alpha == 1
                                   else ops.mul(unwrap(other), alpha)))

    def sub(self, other, alpha=1):
        return TorchTensor(ops.sub(self._t, unwrap(other) if alpha == 1
                                   else ops.mul(unwrap(other), alpha)))

    def __repr__(self) -> str:
        return f"tensor({self._t})"

    def __str__(self) -> str:
        return str(self._t)

    def __array__(self, dtype=None, copy=None):
        arr = self._t.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __bool__(self):
        return bool(self._t)

    def __float__(self):
        return float(self._t)

    def __int__(self):
        return int(self._t)

    def __index__(self):
        return int(self._t)

    __hash__ = object.__hash__

    def __neg__(self):
        return TorchTensor(ops.neg(self._t))

    def __pos__(self):
        return self

    def __abs__(self):
        return TorchTensor(ops.abs(self._t))

    def __invert__(self):
        return TorchTensor(ops.logical_not(self._t))

    def __getattr__(self, name):
        raise unsupported(f"Tensor.{name}")


# Operators, and the unary methods named like their ops.
for _name, _op in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"),
                   ("matmul", "matmul"), ("pow", "pow"), ("mod", "mod"), ("and", "logical_and"),
                   ("or", "logical_or")]:
    _fwd, _rev = _binary(getattr(ops, _op))
    setattr(TorchTensor, f"__{_name}__", _fwd)
    setattr(TorchTensor, f"__r{_name}__", _rev)
for _name in ["eq", "ne", "lt", "le", "gt", "ge"]:
    setattr(TorchTensor, f"__{_name}__", _binary(getattr(ops, _name))[0])
    setattr(TorchTensor, _name, _binary(getattr(ops, _name))[0])
for _name, _op in [("mul", "mul"), ("div", "div"), ("maximum", "maximum"),
                   ("minimum", "minimum"), ("logical_and", "logical_and"),
                   ("logical_or", "logical_or")]:
    setattr(TorchTensor, _name, _binary(getattr(ops, _op))[0])
for _name in ["neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
              "sigmoid", "relu", "erf", "floor", "ceil", "round", "sign", "reciprocal", "square",
              "logical_not", "isnan"]:
    setattr(TorchTensor, _name, (lambda op: lambda self: TorchTensor(op(self._t)))(
        getattr(ops, _name)))
