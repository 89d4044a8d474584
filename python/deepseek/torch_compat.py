"""``@ds.torch_compat``: torch-style code on ds tensors, with or without PyTorch installed.

    import torch                      # real PyTorch, or deepseek.torch (see below)
    @ds.torch_compat
    def model(x):
        return torch.nn.functional.relu(x * 2)
    model(ds.Tensor([1.0, 2.0, 3.0]))   # ds.Tensor [2. 4. 6.]

During the call the function sees ``torch`` (and any torch submodule it imported, such as
``F = torch.nn.functional``) as deepseek.torch, whose functions map onto ds ops; ds tensor
arguments arrive as TorchTensors (torch's methods) and TorchTensor results come back as
ds tensors. ``import torch`` without PyTorch: ``install_import_hook()`` (or running the
program with ``python -m deepseek.torch program.py``) lets it import deepseek.torch.
docs/torch_compat.md has the details.
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import sys
import types

from .from_torch import from_torch  # noqa: F401  (exported beside torch_compat)
from ._core import Tensor
from .torch._tensor import TorchCompatError, TorchTensor, unwrap, wrap  # noqa: F401

_SHIM = "deepseek.torch"


def _shim_for(module: types.ModuleType):
    """deepseek.torch's counterpart of a real torch module, or None if it has none."""
    name = module.__name__
    if name != "torch" and not name.startswith("torch."):
        return None
    try:
        return importlib.import_module(f"deepseek.{name}")
    except ImportError:
        return None


def _shimmed_globals(fn) -> dict:
    g = dict(fn.__globals__)
    for name, value in fn.__globals__.items():
        if isinstance(value, types.ModuleType):
            shim = _shim_for(value)
            if shim is not None:
                g[name] = shim
        elif isinstance(value, Tensor):
            # A module-level ds tensor (a weight) gets torch's methods too; and `w @ x`
            # stays a TorchTensor, which ds.Tensor's operators would not give.
            g[name] = TorchTensor(value)
    g["torch"] = importlib.import_module(_SHIM)
    return g


def torch_compat(fn):
    """Decorator: runs ``fn`` with torch meaning deepseek.torch (a fresh copy of its module
    globals per call, so other code and threads keep the real modules)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        shimmed = types.FunctionType(fn.__code__, _shimmed_globals(fn), fn.__name__,
                                     fn.__defaults__, fn.__closure__)
        shimmed.__kwdefaults__ = fn.__kwdefaults__
        return unwrap(shimmed(*wrap(args), **wrap(kwargs)))

    return run


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return importlib.import_module("deepseek." + spec.name)

    def exec_module(self, module):
        pass  # already imported as deepseek.<name>


class _ShimFinder(importlib.abc.MetaPathFinder):
    """Answers ``import torch`` (and torch.nn, torch.nn.functional) with deepseek.torch.
    It sits last on sys.meta_path, so it is only asked when no real torch was found."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch" and not fullname.startswith("torch."):
            return None
        if fullname != "torch" and sys.modules.get("torch") is not sys.modules.get(_SHIM):
            return None  # a submodule real torch lacks: its own ModuleNotFoundError stands
        if importlib.util.find_spec("deepseek." + fullname) is None:
            raise ImportError(f"ds.torch_compat: {fullname} is not supported (deepseek.torch "
                              "provides torch, torch.nn and torch.nn.functional)",
                              name=fullname)
        if fullname == "torch":
            # Submodules by their torch names, so `import torch.nn.functional as F` finds
            # the same module objects (not second copies loaded from deepseek/torch/).
            for sub in ("nn", "nn.functional"):
                sys.modules.setdefault(f"torch.{sub}", importlib.import_module(f"{_SHIM}.{sub}"))
        return importlib.util.spec_from_loader(fullname, _ShimLoader())


def install_import_hook() -> None:
    """Lets ``import torch`` import deepseek.torch where PyTorch is not installed (calling
    it again changes nothing)."""
    if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
        sys.meta_path.append(_ShimFinder())


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ShimFinder)]


torch_compat.install_import_hook = install_import_hook
torch_compat.uninstall_import_hook = uninstall_import_hook
