"""ds.from_torch against real PyTorch, one model per case. Run by test_from_torch.py with an
interpreter that has PyTorch (Debian's python3-torch is for /usr/bin/python3):

    python3 from_torch_cases.py <case>     # exit status 0 when the outputs match

Every parameter and buffer is randomized first (batch-norm running statistics, norm scales
and shifts too), so a mapping that swaps or drops one shows up in the outputs.
Tolerance: |ds - torch| <= 1e-5 * max|torch| + 1e-5 * |torch| (float32 throughout; the
largest error seen is 5e-7 * max|torch|, ResNet-18).
"""
import math
import operator
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import deepseek as ds
from deepseek.torch import TorchCompatError

RTOL = 1e-5
ATOL_SCALE = 1e-5


def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
    return model.eval()


def check(model, *inputs, run_inputs=None, **options):
    """Converts with ``inputs`` as the examples; compares on ``run_inputs`` (default: the
    same inputs)."""
    got_fn = ds.from_torch(model, inputs, **options)
    inputs = run_inputs or inputs
    with torch.no_grad():
        want = model(*inputs)
    got = got_fn(*inputs)
    wants = want if isinstance(want, (tuple, list)) else [want]
    gots = got if isinstance(got, (tuple, list)) else [got]
    assert len(gots) == len(wants), (len(gots), len(wants))
    for g, w in zip(gots, wants):
        w = w.numpy()
        assert g.shape == w.shape, (g.shape, w.shape)
        scale = float(np.abs(w).max()) if w.size else 1.0
        err = float(np.abs(g - w).max()) if w.size else 0.0
        print(f"max |ds - torch| = {err:.3g} (max |torch| = {scale:.3g})")
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL_SCALE * scale)


# ---- models
def mlp():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.GELU(), nn.Dropout(0.2),
                          nn.Linear(256, 64), nn.SiLU(), nn.LayerNorm(64), nn.Linear(64, 10),
                          nn.LogSoftmax(dim=1))
    check(randomize(model), torch.randn(8, 1, 28, 28))


class FashionCNN(nn.Module):
    """The Fashion-MNIST model of the main job."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(3136, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def cnn():
    check(randomize(FashionCNN()), torch.randn(4, 1, 28, 28))


# ResNet-18 exactly as torchvision.models.resnet defines it (torchvision is not installed
# here): BasicBlock, the 1x1 downsample, zero-padded 7x7 stem, adaptive average pool.
def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18():
    try:
        import torchvision
        model = torchvision.models.resnet18()
    except ImportError:
        model = ResNet18()
    check(randomize(model), torch.randn(2, 3, 64, 64))


class TinyEncoder(nn.Module):
    """Token embedding, a 2-layer post-norm encoder with a causal mask, a pre-norm layer
    with GELU and a key-padding mask, then mean pooling and a classifier."""

    def __init__(self, vocab=50, d=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.post = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, 4, 64, dropout=0.1, batch_first=True), 2)
        self.pre = nn.TransformerEncoderLayer(d, 2, 48, activation="gelu", norm_first=True)
        self.head = nn.Linear(d, 5)

    def forward(self, tokens, causal, padding):
        x = self.post(self.embed(tokens), causal)
        x = self.pre(x.transpose(0, 1), src_key_padding_mask=padding).transpose(0, 1)
        return self.head(x.mean(dim=1)), x


def encoder_inputs(batch):
    tokens = torch.randint(0, 50, (batch, 7))
    causal = torch.triu(torch.full((7, 7), float("-inf")), diagonal=1)
    padding = torch.zeros(batch, 7, dtype=torch.bool)
    padding[1, 5:] = True
    return tokens, causal, padding


def transformer():
    check(randomize(TinyEncoder()), *encoder_inputs(3))


def dynamic_batch():
    """Converted with one batch size, run with another."""
    check(randomize(FashionCNN()), torch.randn(4, 1, 28, 28),
          run_inputs=[torch.randn(9, 1, 28, 28)], dynamic_batch=True)
    check(randomize(TinyEncoder()), *encoder_inputs(3), run_inputs=encoder_inputs(5),
          dynamic_batch=True)
    static = ds.from_torch(randomize(FashionCNN()), torch.randn(4, 1, 28, 28))
    try:
        static(torch.randn(9, 1, 28, 28))
    except ds.Error as e:
        print(e)
    else:
        raise AssertionError("a static-batch graph ran another batch size")


def multihead_attention():
    mha = nn.MultiheadAttention(16, 4, batch_first=False)
    q, kv = torch.randn(5, 2, 16), torch.randn(6, 2, 16)
    mask = torch.rand(5, 6) > 0.7
    mask[:, 0] = False  # every query attends to something

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, q, kv, mask):
            return self.attn(q, kv, kv, attn_mask=mask)  # (output, head-averaged weights)
    check(randomize(Cross()), q, kv, mask)


class Functional(nn.Module):
    """call_function / call_method coverage: operators, torch.* and Tensor methods."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4))
        self.register_buffer("shift", torch.randn(4))

    def forward(self, x):
        b = x.size(0)
        y = x.view(b, -1, 4).permute(0, 2, 1).contiguous()       # [b, 4, 6]
        y = torch.matmul(y, self.w) + self.shift                  # [b, 4, 4]
        y = operator.sub(y.transpose(1, 2), y.mean(dim=-1, keepdim=True))
        z = torch.cat([torch.sigmoid(y), torch.tanh(y) * 2.0], dim=1)
        z = F.softmax(z, dim=-1) - torch.exp(-z.abs()) / 3
        z = torch.where(z > 0.1, z, torch.zeros_like(z))
        z = torch.cat([z, torch.ones_like(z[:, :1]) * 0.25, z[:, x.shape[1] // 12:3]], dim=1)
        s = torch.stack([z.sum(dim=1), z.amax(dim=1)], dim=0)
        return s.reshape(2, b, 4).flatten(1), torch.max(y, dim=2).values


def functional():
    check(Functional().eval(), torch.randn(3, 24))


class MoreLayers(nn.Module):
    """Argument order and defaults of the less common layers and losses."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.norm = nn.GroupNorm(3, 6)
        self.bn = nn.BatchNorm1d(6)
        self.embed = nn.Embedding(10, 6)

    def forward(self, x, labels):
        y = F.pad(self.norm(self.up(x)), (1, 0, 2, 1))                # last dim first
        y = F.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False)
        y = F.elu(F.leaky_relu(y, 0.1), alpha=0.5)
        y = nn.functional.adaptive_avg_pool2d(y, (2, 3)).flatten(1)   # [N, 36]
        logits = self.bn(y.view(-1, 6, 6)).sum(-1) + self.embed(labels)
        losses = torch.stack([
            F.cross_entropy(logits, labels, label_smoothing=0.1),
            F.smooth_l1_loss(logits, torch.ones_like(logits) * 0.5, beta=0.5),
            F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits * 0.3)),
            F.mse_loss(F.normalize(logits), torch.zeros_like(logits), reduction="sum"),
        ])
        return F.log_softmax(logits, dim=-1), losses


def more_layers():
    check(randomize(MoreLayers()), torch.randn(3, 4, 5, 5), torch.tensor([1, 5, 0]))


def unsupported():
    class FFT(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x).real

    try:
        ds.from_torch(FFT().eval(), torch.randn(4))
    except TorchCompatError as e:
        message = str(e)
        print(message)
        assert "node 'fft_fft'" in message and "torch.fft.fft is not supported" in message, message
    else:
        raise AssertionError("torch.fft.fft converted without an error")

    class LSTMModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x):
            return self.rnn(x)[0]

    try:
        ds.from_torch(LSTMModel().eval(), torch.randn(3, 1, 4))
    except NotImplementedError as e:
        print(e)
        assert "node 'rnn'" in str(e) and "LSTM" in str(e), str(e)
    else:
        raise AssertionError("nn.LSTM converted without an error")

    try:
        ds.from_torch(FashionCNN(), torch.randn(1, 1, 28, 28))  # training mode
    except ds.InvalidArgument as e:
        assert "eval()" in str(e), str(e)
    else:
        raise AssertionError("a module in training mode converted without an error")


CASES = {f.__name__: f for f in [mlp, cnn, resnet18, transformer, multihead_attention,
                                 functional, more_layers, dynamic_batch, unsupported]}

if __name__ == "__main__":
    torch.manual_seed(0)
    CASES[sys.argv[1]]()
    print("ok")
