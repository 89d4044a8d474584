"""Reference models written with ds.nn (C++: ds::models).

    model = ds.models.resnet50()                      # torchvision's architecture
    fast = ds.models.resnet50(channels_last=True)     # NHWC convolutions inside, NCHW input
    ds.models.load_torch_state_dict(model, "resnet50.safetensors")
    gpt = ds.models.gpt2(ds.models.GPTConfig(n_layer=2, n_head=2, n_embd=64))  # nanoGPT's

Parameter names and shapes equal torchvision's and nanoGPT's, so their state dicts
load directly (``num_batches_tracked``, nanoGPT's causal-mask buffers and the tied
``lm_head.weight`` are dropped on the way in).
"""
from . import _core
from ._core.models import (  # noqa: F401
    GPT, GPTConfig, ResNet, gpt2, lm_loss, resnet18, resnet34, resnet50, resnet101, resnet152,
)


def load_torch_state_dict(model, state_dict):
    """Loads a PyTorch state dict into ``model``: a dict of torch tensors, numpy arrays
    or ds tensors, or the path of a safetensors file holding one."""
    if isinstance(state_dict, str):
        state_dict = _core.load_safetensors(state_dict)
    state = {}
    for name, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        state[name] = value
    _core.models.load_torch_state_dict(model, state)
    return model
