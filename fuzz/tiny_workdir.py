"""A throw-away workdir for fuzzing the live server: generated images, an untrained tiny model.

    .venv/bin/python fuzz/tiny_workdir.py DIR    # then: imgsim index --data DIR/data --workdir DIR

The model is untrained on purpose: the API's behaviour, not its search quality, is under test,
and saving one takes a second where training takes a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

from imgsim.core.config import MODEL_FILE, ModelConfig
from imgsim.images.sample import SHAPES, generate_shapes
from imgsim.model.network import EmbeddingNet, save_model

TINY = ModelConfig(image_size=32, widths=(8, 16), blocks=(1, 1), head_hidden=16, embedding_dim=8)


def build(directory: Path, per_class: int = 6) -> None:
    """DIR/data/<shape>_NNNNN.png and DIR/triplet_base_final.pt (index it with imgsim index)."""
    generate_shapes(directory / "data", per_class=per_class, size=32, seed=0)
    save_model(directory / MODEL_FILE, EmbeddingNet(TINY).eval(), sorted(SHAPES))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
