"""`imgsim serve`: the app on Flask's threaded server (production: gunicorn, see docs/web.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import load_config, replace
from .app import create_app, token_from_env
from .limits import request_handler
from .searcher import get_searcher

log = logging.getLogger("imgsim")


def serve(
    workdir: str = ".",
    host: str = "127.0.0.1",
    port: int = 5000,
    config_path: str | None = None,
    debug: bool = False,
    runtime: str | None = None,
) -> None:
    """Load the model and index from `workdir` and answer on http://host:port until stopped.

    A config file's [search] section applies first; `workdir` overrides its workdir unless it
    is the default ".", so `imgsim serve --config x.toml` keeps the file's choice. IMGSIM_TOKEN
    sets the update endpoints' token, over the file's.
    """
    config = load_config(config_path).search
    if workdir != "." or config_path is None:
        config = replace(config, {"workdir": workdir})
    if runtime is not None:  # --runtime, over the file
        config = replace(config, {"runtime": runtime})
    app = create_app(token_from_env(config))
    with app.app_context():
        total = get_searcher().stats()["total_images"]
    workdir_shown = Path(config.workdir).resolve()
    log.info("Serving %d images from %s on http://%s:%d", total, workdir_shown, host, port)
    # No reloader: it would start a second process that loads the model again.
    app.run(
        host=host,
        port=port,
        debug=debug,
        use_reloader=False,
        threaded=True,
        request_handler=request_handler(config.request_timeout),
    )
