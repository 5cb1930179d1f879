"""Images themselves: finding them in a folder, naming their categories, decoding them safely.

Layer 3: may import `core` and `files`.
"""
