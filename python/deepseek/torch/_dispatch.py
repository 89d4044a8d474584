"""Real PyTorch calls that reach a TorchTensor (through ``__torch_function__``), and fx
targets in ds.from_torch: each real torch function mapped to its deepseek.torch function
by name, real torch tensors among the arguments converted to ds tensors."""
from __future__ import annotations

from .. import _core
from ._tensor import TorchTensor, unsupported


def _is_real_torch_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def from_real(x):
    """Real torch tensors (nested in lists/tuples/dicts too) as TorchTensors."""
    if _is_real_torch_tensor(x):
        return TorchTensor(_core.Tensor(x.detach().cpu().contiguous().numpy()))
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(from_real(v) for v in x)
    if isinstance(x, dict):
        return {k: from_real(v) for k, v in x.items()}
    return x


def _describe(func) -> str:
    module = getattr(func, "__module__", None) or "torch"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    if qualname.startswith("_TensorBase.") or qualname.startswith("Tensor."):
        return "Tensor." + qualname.split(".", 1)[1]
    if module.startswith("torch._C._"):
        # Builtins of a namespace: torch._C._nn.linear is F.linear, torch._C._fft.fft_fft
        # is torch.fft.fft.
        space = module[len("torch._C._"):]
        if space == "nn":
            return f"torch.nn.functional.{qualname}"
        name = qualname[len(space) + 1:] if qualname.startswith(space + "_") else qualname
        return f"torch.{space}.{name}"
    if module == "torch" or module.startswith("torch._C"):
        # torch.flatten's qualname is _VariableFunctionsClass.flatten
        return f"torch.{qualname.split('.')[-1]}"
    return f"{module}.{qualname}"


def resolve(func):
    """The deepseek.torch callable for real torch function ``func``: (callable, its name).
    The callable is None when ds maps no such call."""
    from .. import torch as shim
    name = _describe(func)
    if name.startswith("Tensor."):
        method = name.split(".", 1)[1]
        if method.startswith("__") and method not in vars(TorchTensor):
            return None, name
        return (lambda self, *a, **k: getattr(TorchTensor(self), method)(*a, **k)), name
    path = name.split(".")
    if path[0] != "torch":
        return None, name
    target = shim
    try:
        for part in path[1:]:
            target = getattr(target, part)
    except AttributeError:
        # torch.relu is not in torch.nn.functional's namespace and vice versa: try both.
        target = None
        if len(path) == 2 or path[1:3] == ["nn", "functional"]:
            target = getattr(shim.nn.functional, path[-1], None) or getattr(shim, path[-1], None)
    return (target if callable(target) else None), name


def call_torch_function(func, args, kwargs):
    fn, name = resolve(func)
    if fn is None:
        raise unsupported(name)
    return fn(*from_real(args), **from_real(kwargs))
