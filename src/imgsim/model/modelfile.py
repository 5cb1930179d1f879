"""What a model file says about its model (id, shape, categories, threshold), read without torch."""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..core.config import MODEL_FILE, PRETRAINED, ModelConfig, from_dict
from ..core.errors import ModelNotLoadedError

log = logging.getLogger("imgsim")

# The loss names of TrainConfig.loss as people read them (train summaries, /stats).
LOSS_TITLES = {
    "triplet": "triplet",
    "multisimilarity": "multi-similarity",
    "proxyanchor": "proxy-anchor",
    "normsoftmax": "normalized-softmax",
    "arcface": "ArcFace",
}

MODEL_FORMAT = "imgsim-model"


class _Tensor:
    """Stands in for a tensor of the file: its data are never read here."""

    def __init__(self, *args: Any) -> None:
        pass


def _torch_stub(*args: Any) -> _Tensor:
    return _Tensor()


class _MetaUnpickler(pickle.Unpickler):
    """Unpickles torch.save's data.pkl with tensors as placeholders and nothing else executable.

    torch.save pickles plain containers, `torch._utils._rebuild_tensor_v2` calls on storages
    (persistent ids) and OrderedDicts; every torch name becomes a do-nothing stub, any other
    global is refused, so a foreign file runs no code here either.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _torch_stub
        raise pickle.UnpicklingError(f"{module}.{name} is not plain model-file data")

    def persistent_load(self, pid: Any) -> _Tensor:
        return _Tensor()


def _read_without_torch(path: Path) -> dict[str, Any]:
    """The pickled payload of a torch.save zip, tensors replaced by placeholders."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            raise pickle.UnpicklingError("no single data.pkl in the archive")
        with archive.open(names[0]) as stream:
            payload = _MetaUnpickler(stream).load()
    if not isinstance(payload, dict):
        raise pickle.UnpicklingError("not a dict")
    return payload


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """Everything in a model file but its weights: model_id, model_config, categories, ….

    Reads the pickled header of the file's zip (milliseconds, no torch); a file it cannot
    read that way (an older torch format) is read with torch, so the answer is the same.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotLoadedError(
            f"Model not loaded: {path} not found — run training first (imgsim train)"
        )
    try:
        payload = _read_without_torch(path)
    except Exception as exc:  # zipfile, pickle and our own refusals: let torch judge the file
        log.debug("reading %s with torch (%s)", path, exc)
        payload = read_with_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelNotLoadedError(f"Model not loaded: {path} is not an imgsim model file")
    return {k: v for k, v in payload.items() if k != "state_dict"}


def read_with_torch(path: Path) -> Any:
    """torch.load with `weights_only=True`: tensors and plain data, never pickled code."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        # PyTorch's own text (about weights_only and trusting the file) misleads here.
        log.debug("torch.load(%s): %s", path, exc)
        raise ModelNotLoadedError(
            f"Model not loaded: {path} is not an imgsim model file (or is damaged) — name the "
            f"{MODEL_FILE} that imgsim train wrote"
        ) from None


def file_config(payload: dict[str, Any]) -> ModelConfig:
    """The network's shape in a model file (or checkpoint); files from before the pretrained
    backbone existed hold the scratch network."""
    return from_dict(ModelConfig, {"backbone": "scratch", **payload["model_config"]})


def loss_title(loss: str | None) -> str:
    """A loss's name for people: `multisimilarity` → `multi-similarity`; others pass through."""
    return LOSS_TITLES.get(loss or "", loss or "unknown")


def model_type(info: dict[str, Any] | None) -> str:
    """What /stats calls the network: after the loss it was trained with, or the backbone."""
    config = (info or {}).get("model_config") or {}
    loss = ((info or {}).get("train_config") or {}).get("loss")
    if not loss or (info or {}).get("pretrained"):
        if config.get("backbone") == PRETRAINED:
            return "EfficientNet-Lite0 (ImageNet, untrained here)"
        return "Embedding Network"
    # Each word capitalised, the rest kept: "Triplet", "Proxy-Anchor", "ArcFace" (not "Arcface").
    title = "-".join(w[:1].upper() + w[1:] for w in loss_title(loss).split("-"))
    if config.get("backbone") == PRETRAINED:
        return f"{title} Network on EfficientNet-Lite0"
    return f"{title} Network"  # "Triplet Network", as the original said
