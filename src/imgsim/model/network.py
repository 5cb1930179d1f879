"""The embedding network (ResNet-like CNN + projection head) and its self-describing model file."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import PRETRAINED, ModelConfig, to_dict
from ..core.errors import ModelNotLoadedError
from ..core.fileio import atomic_path
from .backbone import FEATURE_DIM, EfficientNetLite0
from .backbone import pretrained as pretrained_backbone
from .modelfile import MODEL_FORMAT, file_config, read_model_meta, read_with_torch
from .modelfile import model_type as model_type  # where callers have always found it

MODEL_FORMAT_VERSION = 1

# Inputs are uint8 RGB; the network normalises them itself so the file is all a caller needs.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet's basic block)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def stem_stride(image_size: int) -> int:
    """Downsampling in the stem: more for big inputs, so the stages see ~16-56 px maps."""
    if image_size >= 160:
        return 4
    if image_size >= 48:
        return 2
    return 1


class EmbeddingNet(nn.Module):
    """uint8 or float image batch (N×3×H×W) → L2-normalised embedding (N×D).

    With the pretrained backbone, the head also takes the backbone's cached features
    (N×F, or N×V×F views of which the first is the image and the second its mirror), which is
    how training runs without computing the frozen backbone again every epoch.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.image_size < 32:  # 0 (auto) is resolved from the collection before this
            raise ValueError(f"image_size must be at least 32, not {config.image_size}")
        if config.backbone == "auto":  # undecided (a network built outside training): scratch
            config = dataclasses.replace(config, backbone="scratch")
        self.config = config
        if config.backbone == PRETRAINED:
            self.backbone = EfficientNetLite0(config.image_size)
            cin = FEATURE_DIM
        elif config.backbone == "scratch":  # top-level names, as model files have always had
            cin = self._build_scratch(config)
        else:
            raise ValueError(f"unknown backbone {config.backbone!r}")
        self.head = _head(config, cin)

    def _build_scratch(self, config: ModelConfig) -> int:
        """Our small ResNet-like CNN, trained from scratch; returns its feature width."""
        if len(config.widths) != len(config.blocks) or not config.widths:
            raise ValueError("widths and blocks must have the same, non-zero length")
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1) * 255.0)
        s = stem_stride(config.image_size)
        w0 = config.widths[0]
        stem: list[nn.Module] = [nn.Conv2d(3, w0, 3, min(s, 2), 1, bias=False)]
        stem += [nn.BatchNorm2d(w0), nn.ReLU(inplace=True)]
        if s == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages, cin = [], w0
        for i, (width, n) in enumerate(zip(config.widths, config.blocks, strict=True)):
            for j in range(n):
                stages.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.stages = nn.Sequential(*stages)
        return cin

    @property
    def pretrained(self) -> bool:
        return self.config.backbone == PRETRAINED

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the backbone's features, cached (training picks one view a row)
            return self.embed_features(x)
        if x.dim() == 3:  # cached views of the backbone's features
            return self._views(x)
        if self.training or self.config.test_flip != "on":
            return self._embed(x)
        # The image and its mirror in one batch; reshape rather than slice by a computed
        # length, so the ONNX export keeps a dynamic batch size.
        both = self._embed(torch.cat([x, x.flip(-1)]))
        return F.normalize(both.reshape(2, -1, both.shape[1]).sum(0), dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features of an image batch (what the head reads)."""
        if self.pretrained:
            return self.backbone(x.float())
        x = (x.float() - self.mean) / self.std
        x = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head on backbone features (N×F) → unit embeddings."""
        return F.normalize(self.head(features.float()), dim=1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(x))

    def _views(self, views: torch.Tensor) -> torch.Tensor:
        if self.config.test_flip != "on":
            return self.embed_features(views[:, 0])
        both = self.embed_features(views[:, :2].reshape(-1, views.shape[-1]))
        return F.normalize(both.reshape(-1, 2, both.shape[1]).sum(1), dim=1)


def _head(config: ModelConfig, cin: int) -> nn.Module:
    """The projection head: features → embedding (none at all: the features themselves)."""
    if config.head_hidden == 0:
        if config.embedding_dim != cin:
            raise ValueError(f"without a head the embedding is the {cin}-d features")
        return nn.Identity()
    return nn.Sequential(
        nn.Linear(cin, config.head_hidden),
        nn.BatchNorm1d(config.head_hidden),
        nn.ReLU(inplace=True),
        nn.Linear(config.head_hidden, config.embedding_dim),
    )


def model_id(state_dict: dict[str, torch.Tensor]) -> str:
    """A short fingerprint of the weights: embeddings made by different models never mix."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(
    path: str | Path,
    model: EmbeddingNet,
    categories: list[str],
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a self-describing model file atomically; returns the model id."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    mid = model_id(state)
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "model_id": mid,
        "model_config": to_dict(model.config),
        "state_dict": state,
        "categories": list(categories),
        "train_config": train_config or {},
        "metrics": metrics or {},
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return mid


def read_model_file(path: str | Path) -> dict[str, Any]:
    """Read a model file with `weights_only=True`: tensors and plain data, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotLoadedError(
            f"Model not loaded: {path} not found — run training first (imgsim train)"
        )
    payload = read_with_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelNotLoadedError(f"Model not loaded: {path} is not an imgsim model file")
    return payload


def load_model(path: str | Path) -> tuple[EmbeddingNet, dict[str, Any]]:
    """Rebuild the network from a model file alone; returns (model in eval mode, file contents)."""
    payload = read_model_file(path)
    model = EmbeddingNet(file_config(payload))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


def build_network(config: ModelConfig) -> EmbeddingNet:
    """A network to train: the pretrained backbone comes with its ImageNet weights, frozen."""
    model = EmbeddingNet(config)
    if model.pretrained:
        model.backbone = pretrained_backbone(config.image_size).requires_grad_(False)
    return model


def pretrained_model(image_size: int, backbone: nn.Module | None = None) -> EmbeddingNet:
    """The ImageNet-pretrained backbone alone, trained on no folder: its features, unit-length.

    `backbone`: that network already loaded (a frozen one training used), else read from disk.
    """
    config = ModelConfig(
        backbone=PRETRAINED, image_size=image_size, embedding_dim=FEATURE_DIM, head_hidden=0,
        test_flip="off",
    )  # fmt: skip
    model = EmbeddingNet(config)
    model.backbone = backbone if backbone is not None else pretrained_backbone(image_size)
    return model.eval()


def ensure_pretrained(path: str | Path, image_size: int) -> str:
    """Make `path` the untrained pretrained model unless it already is; returns its model id.

    Never replaces a model trained on a folder: that is the user's work, and --pretrained
    beside it is a mistake to name, not to act on.
    """
    path = Path(path)
    if path.exists():
        payload = read_model_meta(path)
        if payload.get("pretrained") == PRETRAINED and not payload.get("train_config"):
            return str(payload["model_id"])
        raise ModelNotLoadedError(
            f"{path} holds a model trained on your images; --pretrained would replace it. "
            "Leave out --pretrained to embed with it, or give another --workdir or --model."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"pretrained": PRETRAINED}
    return save_model(path, pretrained_model(image_size), [], extra=extra)


def update_model_file(path: str | Path, fields: dict[str, Any]) -> None:
    """Replace some top-level fields of a model file (not its weights), atomically."""
    payload = read_model_file(path)
    forbidden = {"format", "format_version", "model_id", "model_config", "state_dict"} & set(fields)
    if forbidden:
        raise ValueError(f"cannot update {', '.join(sorted(forbidden))} of a model file")
    payload.update(fields)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
