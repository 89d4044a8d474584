"""ds.from_torch's converters for torch.nn layers (fx leaves): each takes the converter
(for constants and nested layers), the torch module and the call's arguments as
TorchTensors, and returns what the module's forward would, built from deepseek.torch ops."""
from __future__ import annotations

import math

from .torch import nn as _shim_nn
from .torch._dispatch import resolve
from .torch._tensor import TorchTensor, unsupported

F = _shim_nn.functional


def _opt(conv, tensor):
    return None if tensor is None else conv.constant(tensor)


def _linear(conv, m, x):
    return F.linear(x, conv.constant(m.weight), _opt(conv, m.bias))


def _conv2d(conv, m, x):
    if m.padding_mode != "zeros":
        raise unsupported(f"Conv2d(padding_mode={m.padding_mode!r})")
    return F.conv2d(x, conv.constant(m.weight), _opt(conv, m.bias), m.stride, m.padding,
                    m.dilation, m.groups)


def _conv_transpose2d(conv, m, x, output_size=None):
    if output_size is not None:
        raise unsupported("ConvTranspose2d(output_size=...)")
    return F.conv_transpose2d(x, conv.constant(m.weight), _opt(conv, m.bias), m.stride,
                              m.padding, m.output_padding, m.groups, m.dilation)


def _batch_norm(conv, m, x):
    if m.running_mean is None:
        raise unsupported("BatchNorm without running statistics (track_running_stats=False)")
    return F.batch_norm(x, conv.constant(m.running_mean), conv.constant(m.running_var),
                        _opt(conv, m.weight), _opt(conv, m.bias), False, 0.0, m.eps)


def _layer_norm(conv, m, x):
    return F.layer_norm(x, m.normalized_shape, _opt(conv, m.weight), _opt(conv, m.bias), m.eps)


def _group_norm(conv, m, x):
    return F.group_norm(x, m.num_groups, _opt(conv, m.weight), _opt(conv, m.bias), m.eps)


def _embedding(conv, m, x):
    if m.max_norm is not None:
        raise unsupported("Embedding(max_norm=...)")
    return F.embedding(x, conv.constant(m.weight))


def _max_pool2d(conv, m, x):
    return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                        m.return_indices)


def _avg_pool2d(conv, m, x):
    return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                        m.count_include_pad, m.divisor_override)


def _split_in_proj(conv, m):
    """(W, b) of the q, k and v projections of a MultiheadAttention, as constants."""
    e = m.embed_dim
    if m._qkv_same_embed_dim:
        weights = [m.in_proj_weight[i * e:(i + 1) * e] for i in range(3)]
    else:
        weights = [m.q_proj_weight, m.k_proj_weight, m.v_proj_weight]
    biases = ([None] * 3 if m.in_proj_bias is None
              else [m.in_proj_bias[i * e:(i + 1) * e] for i in range(3)])
    prefix = conv.names.get(id(m.in_proj_weight), "in_proj")
    return [(conv.constant(w, f"{prefix}.{n}"), None if b is None else
             conv.constant(b, f"{prefix}.{n}_bias")) for w, b, n in zip(weights, biases, "qkv")]


def _masked(scores, mask):
    # A boolean mask marks the positions NOT attended to; a float mask is added.
    if mask.dtype.name == "bool":
        return TorchTensor(scores).masked_fill(mask, -math.inf)
    return scores + mask


def _multihead_attention(conv, m, query, key, value, key_padding_mask=None, need_weights=True,
                         attn_mask=None, average_attn_weights=True):
    if m.bias_k is not None or m.add_zero_attn:
        raise unsupported("MultiheadAttention(add_bias_kv=True or add_zero_attn=True)")
    unbatched = query.dim() == 2
    if unbatched:  # [L, E]: one sequence
        query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    elif not m.batch_first:  # [L, N, E] -> [N, L, E]
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    (wq, bq), (wk, bk), (wv, bv) = _split_in_proj(conv, m)
    n, q_len, e = query.shape
    k_len = key.shape[1]
    heads, head_dim = m.num_heads, m.head_dim

    def split_heads(t, length):  # [N, L, E] -> [N, H, L, D]
        return t.view(n, length, heads, head_dim).transpose(1, 2)

    q = split_heads(F.linear(query, wq, bq), q_len)
    k = split_heads(F.linear(key, wk, bk), k_len)
    v = split_heads(F.linear(value, wv, bv), k_len)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))
    if attn_mask is not None:
        mask = attn_mask.view(n, heads, q_len, k_len) if attn_mask.dim() == 3 else attn_mask
        scores = _masked(scores, mask)
    if key_padding_mask is not None:
        scores = _masked(scores, key_padding_mask.view(n, 1, 1, k_len))
    probs = scores.softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(n, q_len, e)
    out = F.linear(out, conv.constant(m.out_proj.weight), _opt(conv, m.out_proj.bias))
    weights = None
    if need_weights:
        weights = probs.mean(1) if average_attn_weights else probs
        weights = weights.squeeze(0) if unbatched else weights
    if unbatched:
        out = out.squeeze(0)
    elif not m.batch_first:
        out = out.transpose(0, 1)
    return out, weights


def _activation(conv, activation, x):
    if callable(activation) and not hasattr(activation, "forward"):
        fn, name = resolve(activation)
        if fn is None:
            raise unsupported(f"activation {name}")
        return fn(x)
    return conv.call_module(activation, x)


def _transformer_encoder_layer(conv, m, src, src_mask=None, src_key_padding_mask=None,
                               is_causal=None):
    def attend(x):
        return _multihead_attention(conv, m.self_attn, x, x, x, src_key_padding_mask, False,
                                    src_mask)[0]

    def feed_forward(x):
        return conv.call_module(m.linear2, _activation(conv, m.activation,
                                                       conv.call_module(m.linear1, x)))

    norm1 = lambda x: conv.call_module(m.norm1, x)  # noqa: E731
    norm2 = lambda x: conv.call_module(m.norm2, x)  # noqa: E731
    if m.norm_first:
        x = src + attend(norm1(src))
        return x + feed_forward(norm2(x))
    x = norm1(src + attend(src))
    return norm2(x + feed_forward(x))


def _transformer_encoder(conv, m, src, mask=None, src_key_padding_mask=None, is_causal=None):
    x = src
    for layer in m.layers:
        x = conv.call_module(layer, x, mask, src_key_padding_mask)
    return x if m.norm is None else conv.call_module(m.norm, x)


def _simple(fn):
    return lambda conv, m, x: fn(m, x)


_CONVERTERS = {
    "Linear": _linear,
    "NonDynamicallyQuantizableLinear": _linear,
    "Conv2d": _conv2d,
    "ConvTranspose2d": _conv_transpose2d,
    "BatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm,
    "LayerNorm": _layer_norm,
    "GroupNorm": _group_norm,
    "Embedding": _embedding,
    "MaxPool2d": _max_pool2d,
    "AvgPool2d": _avg_pool2d,
    "AdaptiveAvgPool2d": _simple(lambda m, x: F.adaptive_avg_pool2d(x, m.output_size)),
    "Flatten": _simple(lambda m, x: x.flatten(m.start_dim, m.end_dim)),
    "Identity": _simple(lambda m, x: x),
    "Dropout": _simple(lambda m, x: x),  # from_torch requires eval mode: dropout is identity
    "Dropout2d": _simple(lambda m, x: x),
    "ReLU": _simple(lambda m, x: F.relu(x)),
    "ReLU6": _simple(lambda m, x: F.relu6(x)),
    "LeakyReLU": _simple(lambda m, x: F.leaky_relu(x, m.negative_slope)),
    "ELU": _simple(lambda m, x: F.elu(x, m.alpha)),
    "GELU": _simple(lambda m, x: F.gelu(x, m.approximate)),
    "SiLU": _simple(lambda m, x: F.silu(x)),
    "Sigmoid": _simple(lambda m, x: F.sigmoid(x)),
    "Tanh": _simple(lambda m, x: F.tanh(x)),
    "Softplus": _simple(lambda m, x: F.softplus(x, m.beta, m.threshold)),
    "Softmax": _simple(lambda m, x: F.softmax(x, m.dim)),
    "LogSoftmax": _simple(lambda m, x: F.log_softmax(x, m.dim)),
    "MultiheadAttention": _multihead_attention,
    "TransformerEncoderLayer": _transformer_encoder_layer,
    "TransformerEncoder": _transformer_encoder,
}


def converter_for(module):
    """The converter of a torch.nn layer class (or of its nearest torch.nn base class)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn") and cls.__name__ in _CONVERTERS:
            return _CONVERTERS[cls.__name__]
    return None
