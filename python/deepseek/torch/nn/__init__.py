"""``torch.nn`` on ds tensors: ``functional``, and the common layers with Module,
Sequential and ModuleList (``modules.py``). Anything else raises a TorchCompatError; a real
torch model converts with ds.from_torch."""
from .._tensor import unsupported
from . import functional  # noqa: F401
from .modules import (  # noqa: F401
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, GELU,
    Identity, LayerNorm, LeakyReLU, Linear, LogSoftmax, MaxPool2d, Module, ModuleList,
    Parameter, ReLU, Sequential, Sigmoid, SiLU, Softmax, Tanh,
)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(f"torch.nn.{name}")
