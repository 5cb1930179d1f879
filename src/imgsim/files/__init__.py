"""The image folder and its files: walking it, file facts, the change lock, trash, uploads, renames.

Layer 2: may import `core`.
"""
