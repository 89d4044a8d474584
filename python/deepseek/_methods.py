"""Methods that forward to the op functions: Tensor.sum(), Tensor.T, graph.matmul(...)."""
from __future__ import annotations

from . import ops
from ._core import Graph, Tensor


def _shape_args(shape):
    # t.reshape(2, 3) and t.reshape((2, 3)) both work, as in numpy.
    return list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else list(shape)


def _reshape(self, *shape):
    """A tensor of the given shape; a view of the same memory when the layout allows."""
    return self.reshape_view(_shape_args(shape))


def _permute(self, *axes):
    return ops.permute(self, _shape_args(axes))


def _T(self):
    """All axes reversed, like numpy's ``.T``."""
    return self if self.ndim < 2 else ops.permute(self, list(range(self.ndim))[::-1])


def _iter(self):
    for i in range(len(self)):
        yield self[i]


def _rebuild(array, dtype):
    return Tensor(array, dtype=dtype)


def _reduce(self):
    """Pickles (and deep-copies) the values, through numpy."""
    if self.is_symbolic:
        raise TypeError("cannot pickle a symbolic tensor: pickle its Graph's inputs instead")
    return _rebuild, (self.numpy(), self.dtype.name)


def _format(self, spec):
    # f"{loss:.4f}" on a one-element tensor formats its value, as numpy scalars do.
    if spec and not self.is_symbolic and self.size == 1:
        return format(self.item(), spec)
    return format(str(self), spec)


_FORWARDED = ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp", "argmax", "argmin",
              "softmax", "log_softmax", "flatten", "squeeze", "unsqueeze", "transpose",
              "broadcast_to", "matmul", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh",
              "round", "floor", "ceil", "sign", "square"]


def attach():
    for name in _FORWARDED:
        setattr(Tensor, name, getattr(ops, name))
    Tensor.reshape = _reshape
    Tensor.view = _reshape
    Tensor.permute = _permute
    Tensor.T = property(_T)
    Tensor.__iter__ = _iter
    Tensor.__reduce__ = _reduce
    Tensor.__format__ = _format
    Graph.__getattr__ = _graph_op


def _graph_op(self, op: str):
    """graph.<op>(...): the op function of that name, adding its node to this graph."""
    fn = None if op.startswith("_") or op not in ops.__all__ else getattr(ops, op)
    if fn is None:
        raise AttributeError(f"'Graph' has no attribute or op '{op}' (any registered op: "
                             f"graph.add(op, inputs, attrs))")

    def method(*args, **kwargs):
        with ops.building(self):
            return fn(*args, **kwargs)
    method.__name__ = op
    method.__doc__ = fn.__doc__
    return method
