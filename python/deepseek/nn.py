"""Layers, initialization and losses, mirroring torch.nn (C++: ds::nn).

    model = ds.nn.Sequential(ds.nn.Linear(784, 128), ds.nn.ReLU(), ds.nn.Linear(128, 10))
    loss = ds.nn.functional.cross_entropy(model(x), labels)

Weights initialize like PyTorch's defaults, from seeds drawn after
``ds.nn.manual_seed(seed)``.
"""
from ._core.nn import (  # noqa: F401
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding,
    Flatten, GELU, GroupNorm, Lambda, LayerNorm, Linear, MaxPool2d, Module, ModuleList,
    MultiheadAttention, ReLU, RMSNorm, Sequential, Sigmoid, SiLU, Softmax, Tanh, functional,
    manual_seed,
)
