"""``torch.nn`` on ds tensors: its ``functional`` namespace. Modules (torch.nn.Linear...) are
not mirrored here: build models with ds.nn, or convert a real torch module with
ds.from_torch."""
from .._tensor import unsupported
from . import functional  # noqa: F401


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(f"torch.nn.{name}")
