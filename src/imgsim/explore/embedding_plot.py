"""The figure of an index's embeddings: a t-SNE map coloured by category, after extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_embeddings(
    features: np.ndarray,
    categories: list[str],
    path: str | Path,
    seed: int = 0,
    max_points: int = 5000,
) -> None:
    """2-D t-SNE of the embeddings coloured by category (triplet_embedding_space.png).

    The projection is the map page's (imgsim.explore.projection): t-SNE is quadratic, and a sample
    in which each category keeps its share shows the structure as well.
    """
    from .projection import project, stratified_sample

    plt = _pyplot()
    keep = stratified_sample(categories, max_points, seed)
    xy = project(features[keep], "tsne", seed)
    labels = [categories[i] for i in keep]
    fig, ax = plt.subplots(figsize=(8, 7))
    for name in sorted(set(labels)):
        mask = np.array([lab == name for lab in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=8, label=name, alpha=0.7)
    ax.set_title("Embedding space (t-SNE)")
    ax.legend(markerscale=2, fontsize="small", loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
