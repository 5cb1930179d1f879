"""`imgsim train --init-weights FILE`: start the network from a local weights file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError

log = logging.getLogger("imgsim")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a PyTorch state_dict file (.pt/.pth), an imgsim model file or an
    imgsim checkpoint; read with weights_only, so a file can never run code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--init-weights: {path} not found")
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise ConfigError(f"--init-weights: cannot read {path} as PyTorch weights: {exc}") from None
    if isinstance(payload, dict):
        for key in ("state_dict", "model_state", "model"):  # model file, checkpoint, common
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    tensors = (
        {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}
        if isinstance(payload, dict)
        else {}
    )
    if not tensors:
        raise ConfigError(f"--init-weights: {path} holds no named tensors (a state_dict)")
    return {k.removeprefix("module."): v for k, v in tensors.items()}  # DDP-saved files


def load_init_weights(model: torch.nn.Module, path: str | Path) -> int:
    """Copy every tensor whose name and shape match the network's; returns how many.

    The rest keep their fresh initialisation (a different embedding size changes the head's
    last layer, for example). A file that matches nothing is refused: it is for another network.
    """
    own = model.state_dict()
    given = read_state_dict(path)
    matched = {k: v for k, v in given.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(
            f"--init-weights: no tensor of {path} fits this network (names and shapes differ); "
            "it needs weights saved from imgsim's network with the same --widths and --blocks"
        )
    model.load_state_dict(matched, strict=False)
    skipped = len([k for k in own if k not in matched])
    note = f", {skipped} kept fresh (absent or shaped differently)" if skipped else ""
    log.info("Started from %s: %d of the network's %d tensors loaded%s", path, len(matched),
             len(own), note)  # fmt: skip
    return len(matched)
