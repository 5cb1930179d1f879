"""The web server and search page: `create_app` (Flask factory, also for gunicorn) and `serve`."""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
