"""``torch.nn.functional`` on ds tensors: torch's signatures, ds ops underneath.

Arguments ds has no counterpart for (``weight=`` of the losses, ``return_indices=``, a
reflect/replicate padding ds lacks...) raise a TorchCompatError naming the call."""
from __future__ import annotations

import math

from ... import _core, ops
from ..._core import nn as _ds_nn
from .._tensor import TorchTensor, ds_tensor, unsupported, unwrap


def _x(input):
    return ds_tensor(input)


def _no(call: str, **given):
    """Rejects arguments set away from the torch default that ds cannot honour."""
    for arg, value in given.items():
        if value:
            raise unsupported(f"torch.nn.functional.{call}({arg}=...)")


# ---- activations
def relu(input, inplace=False):
    return TorchTensor(ops.relu(_x(input)))


def relu6(input, inplace=False):
    return TorchTensor(ops.minimum(ops.relu(_x(input)), 6.0))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return TorchTensor(ops.leaky_relu(_x(input), negative_slope))


def elu(input, alpha=1.0, inplace=False):
    return TorchTensor(ops.elu(_x(input), alpha))


def gelu(input, approximate="none"):
    return TorchTensor(ops.gelu(_x(input), approximate))


def silu(input, inplace=False):
    return TorchTensor(ops.silu(_x(input)))


def sigmoid(input):
    return TorchTensor(ops.sigmoid(_x(input)))


def tanh(input):
    return TorchTensor(ops.tanh(_x(input)))


def softplus(input, beta=1.0, threshold=20.0):
    return TorchTensor(ops.softplus(_x(input), beta, threshold))


def _softmax_dim(input, dim):
    # torch's legacy default when dim is omitted: 0 for 0-, 1- and 3-D inputs, else 1.
    return dim if dim is not None else (0 if _x(input).ndim in (0, 1, 3) else 1)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    x = _x(input) if dtype is None else ops.cast(_x(input), dtype)
    return TorchTensor(ops.softmax(x, _softmax_dim(input, dim)))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    x = _x(input) if dtype is None else ops.cast(_x(input), dtype)
    return TorchTensor(ops.log_softmax(x, _softmax_dim(input, dim)))


# ---- linear, convolution, pooling
def linear(input, weight, bias=None):
    return TorchTensor(ops.linear(_x(input), unwrap(weight), unwrap(bias)))


def _conv_padding(padding, weight, dilation):
    if padding == "valid":
        return 0
    if padding == "same":
        kernel = _x(weight).shape[2:]
        dil = [dilation] * 2 if isinstance(dilation, int) else list(dilation)
        if any(d * (k - 1) % 2 for d, k in zip(dil, kernel)):
            raise unsupported("torch.nn.functional.conv2d(padding='same') with an even kernel")
        return [d * (k - 1) // 2 for d, k in zip(dil, kernel)]
    return padding


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return TorchTensor(ops.conv2d(_x(input), unwrap(weight), unwrap(bias), stride,
                                  _conv_padding(padding, weight, dilation), dilation, groups))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    return TorchTensor(ops.conv_transpose2d(_x(input), unwrap(weight), unwrap(bias), stride,
                                            padding, output_padding, dilation, groups))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    _no("max_pool2d", return_indices=return_indices)
    return TorchTensor(ops.max_pool2d(_x(input), kernel_size, stride or None, padding, dilation,
                                      ceil_mode))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    _no("avg_pool2d", divisor_override=divisor_override)
    return TorchTensor(ops.avg_pool2d(_x(input), kernel_size, stride or None, padding, ceil_mode,
                                      count_include_pad))


def adaptive_avg_pool2d(input, output_size):
    x = _x(input)
    size = [output_size] * 2 if isinstance(output_size, int) else list(output_size)
    size = [x.shape[2 + i] if s is None else s for i, s in enumerate(size)]
    return TorchTensor(ops.adaptive_avg_pool2d(x, size))


# ---- normalization, dropout, embedding
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    if training:
        raise unsupported("torch.nn.functional.batch_norm(training=True)",
                          "ds.torch_compat maps inference batch norm; use ds.nn.BatchNorm2d")
    return TorchTensor(ops.batch_norm(_x(input), unwrap(running_mean), unwrap(running_var),
                                      unwrap(weight), unwrap(bias), eps))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    return TorchTensor(ops.layer_norm(_x(input), unwrap(weight), unwrap(bias), eps,
                                      normalized_shape=shape))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    return TorchTensor(ops.group_norm(_x(input), num_groups, unwrap(weight), unwrap(bias), eps))


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    _no("normalize", out=out is not None)
    x = _x(input)
    if p != 2:
        raise unsupported(f"torch.nn.functional.normalize(p={p})")
    norm = ops.sqrt(ops.sum(ops.square(x), dim, True))
    return TorchTensor(ops.div(x, ops.maximum(norm, eps)))


def dropout(input, p=0.5, training=True, inplace=False):
    """Identity unless ``training`` (torch's default here): then a seeded Bernoulli mask
    drawn from deepseek.torch.manual_seed's sequence, scaled by 1/(1-p)."""
    x = _x(input)
    if not training or p == 0:
        return TorchTensor(x)
    from .. import next_seed
    keep = ops.bernoulli(list(x.shape), next_seed(), 1.0 - p, dtype=x.dtype)
    return TorchTensor(ops.mul(x, ops.mul(keep, 1.0 / (1.0 - p))))


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    _no("embedding", max_norm=max_norm)
    return TorchTensor(ops.embedding(_x(input), unwrap(weight)))


def one_hot(tensor, num_classes=-1):
    x = _x(tensor)
    if num_classes < 0:
        num_classes = int(ops.max(x).item()) + 1
    return TorchTensor(ops.one_hot(x, num_classes, dtype="int64"))


def pad(input, pad, mode="constant", value=0.0):
    """torch lists (before, after) pairs from the LAST dim backwards; ds from the first."""
    x = _x(input)
    if mode not in ("constant", "reflect"):
        raise unsupported(f"torch.nn.functional.pad(mode={mode!r})")
    pairs = [list(pad[i:i + 2]) for i in range(0, len(pad), 2)][::-1]
    pairs = [[0, 0]] * (x.ndim - len(pairs)) + pairs
    return TorchTensor(ops.pad(x, pairs, mode, value or 0.0))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False):
    _no("scaled_dot_product_attention", dropout_p=dropout_p)
    q, k, v = _x(query), _x(key), _x(value)
    scores = ops.mul(ops.matmul(q, ops.transpose(k, -2, -1)), 1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        ones = ops.ones([q.shape[-2], k.shape[-2]], dtype="bool")
        attn_mask = ops.tril(ones)
    if attn_mask is not None:
        mask = unwrap(attn_mask)
        scores = (ops.where(mask, scores, -math.inf) if mask.dtype == _core.bool
                  else ops.add(scores, mask))
    return TorchTensor(ops.matmul(ops.softmax(scores, -1), v))


# ---- losses (per-class weight=, the deprecated size_average/reduce: not mapped)
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    _no("cross_entropy", weight=weight is not None, size_average=size_average is not None,
        reduce=reduce is not None)
    return TorchTensor(_ds_nn.functional.cross_entropy(_x(input), _x(target), label_smoothing,
                                                       ignore_index, reduction))


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    _no("nll_loss", weight=weight is not None, size_average=size_average is not None,
        reduce=reduce is not None)
    return TorchTensor(_ds_nn.functional.nll_loss(_x(input), _x(target), ignore_index,
                                                  reduction))


def _pointwise_loss(name):
    ds_fn = getattr(_ds_nn.functional, name)

    def fn(input, target, size_average=None, reduce=None, reduction="mean"):
        _no(name, size_average=size_average is not None, reduce=reduce is not None)
        return TorchTensor(ds_fn(_x(input), _x(target), reduction))
    fn.__name__ = name
    return fn


mse_loss = _pointwise_loss("mse_loss")
l1_loss = _pointwise_loss("l1_loss")


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    _no("smooth_l1_loss", size_average=size_average is not None, reduce=reduce is not None)
    return TorchTensor(_ds_nn.functional.smooth_l1_loss(_x(input), _x(target), beta, reduction))


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    _no("binary_cross_entropy_with_logits", weight=weight is not None,
        pos_weight=pos_weight is not None, size_average=size_average is not None,
        reduce=reduce is not None)
    return TorchTensor(_ds_nn.functional.binary_cross_entropy_with_logits(
        _x(input), _x(target), reduction))


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(f"torch.nn.functional.{name}")
