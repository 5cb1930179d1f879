"""A model file whose network (and torch) is loaded only when something needs to run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import ModelNotLoadedError
from .modelfile import file_config, read_model_meta


class ModelFile:
    """A model file known by its header; the network itself (torch) is loaded on first use.

    Searching with a kept ONNX export and a no-op index update need only the header, so
    they never import torch.
    """

    def __init__(self, path: str | Path, info: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.info = info if info is not None else read_model_meta(self.path)
        self.config = file_config(self.info)
        self._network: Any = None

    @property
    def model_id(self) -> str:
        return str(self.info.get("model_id") or "")

    def network(self) -> Any:
        """The EmbeddingNet of the file (loaded once, with torch)."""
        if self._network is None:
            from .network import load_model

            self._network, payload = load_model(self.path)
            if payload.get("model_id") != self.model_id:  # replaced since the header was read
                raise ModelNotLoadedError(
                    f"Model not loaded: {self.path} changed while it was being read; try again"
                )
        return self._network
