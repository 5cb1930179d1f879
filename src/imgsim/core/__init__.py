"""The base every command stands on: settings, errors, image names, crash-safe writes, stopping.

Layer 1 of 11 (tests/test_import_graph.py): imports nothing else of imgsim.
"""
