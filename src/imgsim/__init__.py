"""imgsim: image similarity search on a pretrained network with a learned metric head, FAISS and a web app."""

__version__ = "0.1.0"
