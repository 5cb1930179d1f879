"""imgsim: image similarity search with a triplet network, FAISS and a small web app."""

__version__ = "0.1.0"
