"""A pretrained TorchScript extractor wrapped to take what imgsim's networks take (uint8 RGB)."""

from __future__ import annotations

import torch


class ReferenceModel(torch.nn.Module):
    """Wraps a TorchScript extractor: uint8 in, ImageNet normalisation, L2-normalised out."""

    def __init__(self, scripted: torch.nn.Module) -> None:
        super().__init__()
        self.scripted = scripted
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scripted((x.float() / 255.0 - self.mean) / self.std)
        return torch.nn.functional.normalize(out.flatten(1), dim=1)
