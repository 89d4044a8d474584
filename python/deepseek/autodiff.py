"""Function transforms: ds.grad and ds.value_and_grad (JAX/MLX style).

    f = lambda x, w: ds.sum(ds.tanh(x @ w))
    dw = ds.grad(f, argnums=1)(x, w)

The function is traced once per argument signature (dtypes and shapes) into a
graph holding its value and gradients, compiled, and the executable is reused.
"""
from . import _core


def _tensor(a):
    return a if isinstance(a, _core.Tensor) else _core.Tensor(a)


def value_and_grad(fn, argnums=0):
    """Returns a function computing ``(fn(*args), gradients w.r.t. args[argnums])``.

    ``argnums`` is an int (one gradient) or a sequence of ints (a tuple of them).
    ``fn`` must return a one-element floating tensor.
    """
    single = isinstance(argnums, int)
    nums = [argnums] if single else [int(a) for a in argnums]
    core = _core._value_and_grad(lambda args: fn(*args), nums)

    def wrapped(*args):
        value, grads = core([_tensor(a) for a in args])
        return value, (grads[0] if single else tuple(grads))

    return wrapped


def grad(fn, argnums=0):
    """Returns a function computing the gradients of ``fn`` w.r.t. ``args[argnums]``."""
    vg = value_and_grad(fn, argnums)
    return lambda *args: vg(*args)[1]
