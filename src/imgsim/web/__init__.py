"""The web server and search page: `create_app` (Flask factory, also for gunicorn) and `serve`.

Layer 10: may import every layer below it; views call `search`, the explore views their helper.
"""

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
