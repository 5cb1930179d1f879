"""Views of a collection's embeddings: the 2-D map, its projection, and duplicate images.

Layer 7: may import `core`, `files`, `images`, `model`, `store` and `train`.
"""
