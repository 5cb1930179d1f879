"""The network: its architecture, model file, device, ONNX export, calibration and the embedder.

Layer 4: may import `core`, `files` and `images`.
"""
