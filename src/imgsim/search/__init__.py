"""Answering queries on an indexed collection, and changing what it holds.

Layer 9: may import every layer below it (`core` … `embed`), never `web` or `cli`.
"""
