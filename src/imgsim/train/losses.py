"""The loss and the miner, each built on its own from pytorch-metric-learning parts."""

from __future__ import annotations

from typing import Any

from ..core.config import LOSSES, MINERS, TrainConfig
from ..core.errors import ConfigError

# The miner each loss is usually paired with: what `--mining auto` means. Proxy losses
# compare each image with one learned point per category, so there are no pairs to mine.
DEFAULT_MINER = {"triplet": "semihard", "multisimilarity": "multisimilarity"}
PROXY_LOSSES = ("proxyanchor", "normsoftmax", "arcface")
# The proxy losses that are a cross-entropy over all categories: label smoothing applies.
SOFTMAX_LOSSES = ("normsoftmax", "arcface")
# Names shown to people: /stats, the history plot, logs.


def miner_name(config: TrainConfig) -> str:
    """The miner a run uses, with `auto` resolved from the loss."""
    if config.mining not in MINERS:
        raise ConfigError(f"unknown mining {config.mining!r}; use one of {', '.join(MINERS)}")
    return DEFAULT_MINER.get(config.loss, "all") if config.mining == "auto" else config.mining


def uses_margin(config: TrainConfig) -> bool:
    """Whether `margin` changes anything: the triplet loss and the semihard miner read it."""
    return config.loss == "triplet" or miner_name(config) == "semihard"


def is_proxy_loss(loss: str) -> bool:
    """Whether the loss learns one proxy per category (its own parameters, no miner)."""
    return loss in PROXY_LOSSES


def uses_label_smoothing(loss: str) -> bool:
    """Whether `label_smoothing` changes anything: only the softmax-over-proxies losses read it."""
    return loss in SOFTMAX_LOSSES


def build_loss(config: TrainConfig, n_classes: int = 0, embedding_dim: int = 0) -> Any:
    """The pytorch-metric-learning loss named by `config.loss`.

    Proxy losses hold parameters (one proxy per category): the trainer optimises them with
    the network, at `proxy_lr_scale` times its learning rate.
    """
    from pytorch_metric_learning import losses

    if config.loss == "triplet":
        return losses.TripletMarginLoss(margin=config.margin)
    if config.loss == "multisimilarity":
        # Weighs every pair by how informative it is; PML's recommended settings.
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
    if is_proxy_loss(config.loss) and n_classes < 1:
        raise ConfigError(f"the {config.loss} loss needs the number of categories")
    # The settings of the papers (and PML's defaults): Proxy Anchor's margin 0.1 and alpha 32.
    if config.loss == "proxyanchor":
        return losses.ProxyAnchorLoss(n_classes, embedding_dim, margin=0.1, alpha=32)
    if config.loss == "normsoftmax":
        loss = losses.NormalizedSoftmaxLoss(n_classes, embedding_dim, temperature=0.05)
        return _smoothed(loss, config.label_smoothing)
    if config.loss == "arcface":
        loss = losses.ArcFaceLoss(n_classes, embedding_dim, margin=28.6, scale=64)
        return _smoothed(loss, config.label_smoothing)
    raise ConfigError(f"unknown loss {config.loss!r}; use one of {', '.join(LOSSES)}")


def _smoothed(loss: Any, smoothing: float) -> Any:
    """A softmax-over-proxies loss whose cross-entropy spreads `smoothing` over all categories."""
    import torch

    if smoothing:  # PML builds these losses on this one attribute
        loss.cross_entropy = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing)
    return loss


def build_miner(config: TrainConfig) -> Any | None:
    """The miner named by `config.mining` (None: the loss sees every pair or triplet).

    Any miner works with any loss: PML turns mined pairs into triplets and back as needed.
    """
    from pytorch_metric_learning import miners

    name = miner_name(config)
    if name == "semihard":
        return miners.TripletMarginMiner(margin=config.margin, type_of_triplets="semihard")
    if name == "hard":
        return miners.BatchHardMiner()
    if name == "multisimilarity":
        return miners.MultiSimilarityMiner(epsilon=0.1)
    return None
