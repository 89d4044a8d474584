"""``torch.nn`` layers on ds tensors, for torch-style model classes without PyTorch:
Module (parameters, buffers and submodules by attribute, state_dict with torch's names),
the common layers with PyTorch's default initialization, Sequential and ModuleList.

Their forward passes are deepseek.torch.nn.functional calls. Weights are drawn from the
deepseek.torch.manual_seed sequence, so they differ from PyTorch's numbers for the same
seed; load_state_dict(torch_model.state_dict()) takes PyTorch's weights as they are."""
from __future__ import annotations

import collections
import math

import numpy as np

from ... import _core, ops
from .._tensor import TorchTensor, unsupported, wrap
from . import functional as F


class Parameter(TorchTensor):
    """A tensor that a Module registers as a parameter when assigned to an attribute."""

    __slots__ = ()


def _uniform(shape, bound):
    from .. import next_seed
    return Parameter(ops.random_uniform(list(shape), next_seed(), -bound, bound))


class Module:
    """torch.nn.Module: attributes that are Parameters, Modules or registered buffers are
    collected, in assignment order, into parameters(), modules() and state_dict()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning '{name}'")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = None if value is None else TorchTensor(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def register_buffer(self, name, tensor, persistent=True):
        if not persistent:
            raise unsupported("Module.register_buffer(persistent=False)")
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        setattr(self, name, tensor)

    def register_parameter(self, name, param):
        setattr(self, name, param)

    def add_module(self, name, module):
        self._modules[name] = module

    def forward(self, *args, **kwargs):
        raise unsupported(f"{type(self).__name__}.forward", "the module defines no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*wrap(args), **wrap(kwargs))

    # ---- traversal, with torch's dotted names
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        return iter(self._modules.items())

    def _named(self, table):
        for prefix, module in self.named_modules():
            for name, value in getattr(module, table).items():
                if value is not None:
                    yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self):
        return self._named("_parameters")

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        return self._named("_buffers")

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def state_dict(self):
        state = collections.OrderedDict()
        for prefix, module in self.named_modules():
            for table in ("_parameters", "_buffers"):
                for name, value in getattr(module, table).items():
                    if value is not None:
                        state[f"{prefix}.{name}" if prefix else name] = value
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copies tensors (torch tensors, numpy arrays, ds tensors) in by name; shapes must
        match. With ``strict``, missing and unexpected names are errors."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        for key, value in state_dict.items():
            if key not in own:
                continue
            array = _as_array(value)
            if tuple(array.shape) != tuple(own[key].shape):
                raise _core.ShapeError(f"load_state_dict: '{key}' has shape "
                                       f"{tuple(own[key].shape)}, the state holds "
                                       f"{tuple(array.shape)}")
            *path, name = key.split(".")
            module = self
            for part in path:
                module = module._modules[part]
            kind = Parameter if name in module._parameters else TorchTensor
            table = module._parameters if name in module._parameters else module._buffers
            table[name] = kind(_core.Tensor(array, dtype=own[key].dtype))

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, *args, **kwargs):
        return self  # the CPU, float32: what ds.torch_compat runs

    def __repr__(self):
        lines = [f"  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        body = "\n" + "\n".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({self.extra_repr()}{body})"

    def extra_repr(self):
        return ""


def _as_array(value):
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value.ds.numpy() if isinstance(value, TorchTensor) else value)


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1 / math.sqrt(in_features)  # PyTorch's kaiming_uniform(a=sqrt(5)) default
        self.in_features, self.out_features = in_features, out_features
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        if padding_mode != "zeros":
            raise unsupported(f"torch.nn.Conv2d(padding_mode={padding_mode!r})")
        kh, kw = _pair(kernel_size)
        bound = 1 / math.sqrt(in_channels // groups * kh * kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = _uniform((out_channels, in_channels // groups, kh, kw), bound)
        self.bias = _uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class BatchNorm2d(Module):
    """Training mode normalizes with the batch's statistics and updates the running ones
    (momentum, unbiased variance), as PyTorch does; eval mode uses the running ones."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        if not track_running_stats:
            raise unsupported("torch.nn.BatchNorm2d(track_running_stats=False)")
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(ops.ones([num_features])) if affine else None
        self.bias = Parameter(ops.zeros([num_features])) if affine else None
        self.register_buffer("running_mean", ops.zeros([num_features]))
        self.register_buffer("running_var", ops.ones([num_features]))
        self.register_buffer("num_batches_tracked", ops.zeros([], dtype="int64"))

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3), unbiased=False)
        count = x.numel() // x.shape[1]
        m = self.momentum
        self.running_mean = self.running_mean * (1 - m) + mean * m
        self.running_var = self.running_var * (1 - m) + var * (m * count / max(count - 1, 1))
        self.num_batches_tracked = self.num_batches_tracked + 1
        y = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + self.eps).sqrt()
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
        self.normalized_shape, self.eps = tuple(shape), eps
        self.weight = Parameter(ops.ones(shape)) if elementwise_affine else None
        self.bias = Parameter(ops.zeros(shape)) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        from .. import next_seed
        self.weight = Parameter(ops.random_normal([num_embeddings, embedding_dim], next_seed()))

    def forward(self, x):
        return F.embedding(x, self.weight)


def _layer(name, forward, params=()):
    """A parameterless layer: its constructor's arguments (``params``, with torch's
    defaults) become attributes that ``forward(self, x)`` reads."""
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = dict(params)
        values.update(zip(values, args))
        values.update(kwargs)
        for key, value in values.items():
            object.__setattr__(self, key, value)
    return type(name, (Module,), {"__init__": __init__, "forward": forward})


ReLU = _layer("ReLU", lambda self, x: F.relu(x), [("inplace", False)])
GELU = _layer("GELU", lambda self, x: F.gelu(x, self.approximate), [("approximate", "none")])
SiLU = _layer("SiLU", lambda self, x: F.silu(x), [("inplace", False)])
Tanh = _layer("Tanh", lambda self, x: F.tanh(x))
Sigmoid = _layer("Sigmoid", lambda self, x: F.sigmoid(x))
LeakyReLU = _layer("LeakyReLU", lambda self, x: F.leaky_relu(x, self.negative_slope),
                   [("negative_slope", 0.01), ("inplace", False)])
Softmax = _layer("Softmax", lambda self, x: F.softmax(x, self.dim), [("dim", None)])
LogSoftmax = _layer("LogSoftmax", lambda self, x: F.log_softmax(x, self.dim), [("dim", None)])
Identity = _layer("Identity", lambda self, x: x)
Flatten = _layer("Flatten", lambda self, x: x.flatten(self.start_dim, self.end_dim),
                 [("start_dim", 1), ("end_dim", -1)])
Dropout = _layer("Dropout", lambda self, x: F.dropout(x, self.p, self.training),
                 [("p", 0.5), ("inplace", False)])
MaxPool2d = _layer("MaxPool2d", lambda self, x: F.max_pool2d(
    x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode),
    [("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
     ("return_indices", False), ("ceil_mode", False)])
AvgPool2d = _layer("AvgPool2d", lambda self, x: F.avg_pool2d(
    x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad),
    [("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
     ("count_include_pad", True)])
AdaptiveAvgPool2d = _layer("AdaptiveAvgPool2d",
                           lambda self, x: F.adaptive_avg_pool2d(x, self.output_size),
                           [("output_size", None)])


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            modules = list(modules[0].items())
        else:
            modules = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in modules:
            self.add_module(name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
