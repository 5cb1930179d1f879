"""Training a model on an image folder: the collection, batches, losses, the loop, checkpoints.

Layer 6: may import `core`, `files`, `images`, `model` and `store`.
"""
