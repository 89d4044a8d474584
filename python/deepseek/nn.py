"""Layers, initialization and losses, mirroring torch.nn (C++: ds::nn).

    model = ds.nn.Sequential(ds.nn.Linear(784, 128), ds.nn.ReLU(), ds.nn.Linear(128, 10))
    loss = ds.nn.functional.cross_entropy(model(x), labels)

Weights initialize like PyTorch's defaults, from seeds drawn after
``ds.nn.manual_seed(seed)``.

Models with a Python forward subclass ``ds.nn.Module`` as in PyTorch::

    class Net(ds.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = ds.nn.Linear(4, 2)                    # a submodule
            self.scale = ds.nn.Parameter(ds.ones([2]))      # a parameter
            self.register_buffer("calls", ds.zeros([1]))   # a buffer (state_dict, no grad)

        def forward(self, x):
            return self.fc(x) * self.scale

The subclass is a C++ ``nn::Module`` whose forward calls the Python method, so
parameters(), state_dict(), train()/eval(), optimizers and the compiled
``ds.optim.TrainStep`` treat it like a built-in layer, through Python and C++
children alike. Its parameters and buffers live in C++ slots: reading
``self.scale`` inside forward gives whatever the slot holds, which is how a
training step traces forward with symbolic values.
"""
from ._core.nn import (  # noqa: F401
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding,
    Flatten, GELU, GroupNorm, Lambda, LayerNorm, Linear, MaxPool2d, Module, ModuleList,
    MultiheadAttention, ReLU, RMSNorm, Sequential, Sigmoid, SiLU, Softmax, Tanh, functional,
    manual_seed,
)
from ._core import Tensor


class Parameter:
    """Marks a tensor as a parameter when assigned to a Module attribute.

    Unlike torch.nn.Parameter this is not a tensor subclass: reading the attribute
    back gives the ds.Tensor held by the module's parameter slot.
    """

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data if isinstance(data, Tensor) else Tensor(data)

    def __repr__(self):
        return f"Parameter({self.data!r})"


_core_call = Module.__call__


def _setattr(self, name, value):
    if self._is_python_module and not name.startswith("_"):
        kind = self._kind(name)
        if isinstance(value, Parameter):
            self._set_parameter(name, value.data)
            return
        if isinstance(value, Module):
            self._set_module(name, value)  # and kept in __dict__ below, for plain reads
        elif kind == "parameter":
            self._set_parameter(name, _tensor_for(self, name, value))
            return
        elif kind == "buffer":
            self._set_buffer(name, _tensor_for(self, name, value), True)
            return
        elif kind == "submodule":
            raise TypeError(f"cannot assign {type(value).__name__} to {type(self).__name__}.{name}:"
                            " it is a submodule (assign a ds.nn.Module)")
    object.__setattr__(self, name, value)


def _tensor_for(module, name, value):
    if not isinstance(value, Tensor):
        raise TypeError(f"cannot assign {type(value).__name__} to {type(module).__name__}.{name}:"
                        f" it is a {module._kind(name)} (assign a ds.Tensor)")
    return value


def _getattr(self, name):
    # Only reached when normal lookup fails: parameters and buffers live in C++ slots.
    if not name.startswith("__"):
        value = self._get_tensor(name)
        if value is not None:
            return value
    raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


def _call(self, *args, **kwargs):
    """Runs forward: a Python subclass's with any arguments, a built-in layer's on one tensor."""
    if self._is_python_module:
        return self.forward(*args, **kwargs)
    return _core_call(self, *args, **kwargs)


def register_parameter(self, name, value):
    """Registers (or updates) the parameter ``name``; same as assigning ``Parameter(value)``."""
    self._set_parameter(name, (value if isinstance(value, Parameter) else Parameter(value)).data)


def register_buffer(self, name, tensor, persistent=True):
    """Registers (or updates) the buffer ``name``: in state_dict when persistent, never a parameter.

    A training step carries a buffer the forward replaces (``self.count = self.count + 1``)
    from one step to the next, as it does batch-norm running statistics.
    """
    self._set_buffer(name, tensor if isinstance(tensor, Tensor) else Tensor(tensor), persistent)


def add_module(self, name, module):
    """Registers ``module`` as the child ``name`` (same as assigning the attribute)."""
    setattr(self, name, module)


def children(self):
    """The direct submodules (Python and C++ ones), in registration order."""
    return [m for _, m in self.named_children()]


def named_modules(self, prefix=""):
    """(dotted name, module) for this module and every descendant, parents first."""
    yield prefix, self
    for name, child in self.named_children():
        yield from named_modules(child, f"{prefix}.{name}" if prefix else name)


def modules(self):
    """This module and every descendant, parents first (e.g. to re-initialize layers)."""
    return [m for _, m in named_modules(self)]


Module.children = children
Module.named_modules = named_modules
Module.modules = modules
Module.__setattr__ = _setattr
Module.__getattr__ = _getattr
Module.__call__ = _call
Module.register_parameter = register_parameter
Module.register_buffer = register_buffer
Module.add_module = add_module


def functional_call(module, parameters, *args, **kwargs):
    """Calls ``module(*args)`` with ``parameters`` (name -> tensor) in place of its own,
    like torch.func.functional_call; use it to take gradients w.r.t. parameters::

        names = [n for n, _ in model.named_parameters()]
        loss = lambda *ps: F.cross_entropy(ds.nn.functional_call(model, dict(zip(names, ps)), x), y)
        grads = ds.grad(loss, argnums=tuple(range(len(names))))(*model.parameters())
    """
    known = {n for n, _ in module.named_parameters()}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise KeyError(f"functional_call: {type(module).__name__} has no parameters {unknown}")
    previous = module._swap_parameters(dict(parameters))
    try:
        return module(*args, **kwargs)
    finally:
        module._swap_parameters(previous)
