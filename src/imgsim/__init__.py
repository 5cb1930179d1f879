"""imgsim: image similarity search on a pretrained network with a learned metric head."""

__version__ = "0.1.0"
