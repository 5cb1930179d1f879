"""Embedding an image folder into the store and keeping it in step: extract, update, watch, scale.

Layer 8: may import `core`, `files`, `images`, `model`, `store`, `train` and `explore`.
"""
