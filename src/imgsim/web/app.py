"""The Flask app factory: settings, shared Searcher, blueprints, JSON errors, security headers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, Response
from flask.cli import with_appcontext

from ..core.config import ENV_CONFIG, SearchConfig, load_config, replace
from ..images.data import set_decode_limits
from ..search.searcher import Searcher
from . import (
    browse,
    duplicates,
    errors,
    images,
    manage,
    map_view,
    openapi,
    pages,
    review,
    search,
    status,
)
from .forms import FORM_OVERHEAD, InMemoryRequest
from .limits import BodyDeadline
from .searcher import get_searcher, init_app

ENV_WORKDIR = "IMGSIM_WORKDIR"  # where the model file and index live (default: the current dir)
# The token of the update endpoints (POST/DELETE /images). The environment rather than a flag:
# a command line is visible to every user of the machine (ps).
ENV_TOKEN = "IMGSIM_TOKEN"
ENV_RUNTIME = "IMGSIM_RUNTIME"  # torch | onnx: what runs the network (over the config file)

# No inline script or style and nothing from another origin: the page works offline and an
# injected file name can never run as code. Images may be blob:/data: for the query preview.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def create_app(
    config: SearchConfig | None = None,
    *,
    searcher: Searcher | None = None,
    flask_config: Mapping[str, Any] | None = None,
    watch_here: bool = True,
) -> Flask:
    """Build the app; the model and index are loaded here, once per process.

    `config` defaults to the environment (IMGSIM_CONFIG, IMGSIM_WORKDIR, IMGSIM_TOKEN), which
    is how `gunicorn "imgsim.web:create_app()"` is configured. Tests may pass a ready `searcher`.
    With `config.watch`, this process offers to watch the folder unless `watch_here` is False
    (`imgsim serve`, whose master runs the watcher in a process of its own).
    """
    config = config or config_from_env()
    set_decode_limits(config.max_decode_mb * 1024 * 1024, config.max_concurrent_decodes)
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.update(
        IMGSIM=config,
        # The ceiling for any request; the search views lower it to what they accept.
        MAX_CONTENT_LENGTH=config.max_image_bytes * config.max_batch_files + FORM_OVERHEAD,
    )
    app.config.update(flask_config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the original's key order
    init_app(app, config, searcher)
    map_view.init_app(app)  # each view owns its helper
    duplicates.init_app(app)
    views = (pages, search, status, images, manage, openapi, browse, map_view, duplicates, review)
    for view in views:
        app.register_blueprint(view.bp)
    errors.register_error_handlers(app)
    app.after_request(_security_headers)
    app.cli.add_command(check_command)
    # Outermost, so the deadline starts before Flask (or anything else) reads the body.
    app.wsgi_app = BodyDeadline(app.wsgi_app, config.request_timeout)  # type: ignore[method-assign]
    if config.watch and watch_here:  # `imgsim serve` watches in a process of its own
        from .watching import start_watching

        start_watching(config)
    return app


def config_from_env(environ: Mapping[str, str] | None = None) -> SearchConfig:
    """Search settings from IMGSIM_CONFIG's [search] section, then IMGSIM_WORKDIR and
    IMGSIM_RUNTIME over it."""
    environ = os.environ if environ is None else environ
    config = load_config(environ.get(ENV_CONFIG) or None).search
    if environ.get(ENV_WORKDIR):
        config = replace(config, {"workdir": environ[ENV_WORKDIR]})
    if environ.get(ENV_RUNTIME):
        config = replace(config, {"runtime": environ[ENV_RUNTIME]})
    return token_from_env(config, environ)


def token_from_env(config: SearchConfig, environ: Mapping[str, str] | None = None) -> SearchConfig:
    """`config` with IMGSIM_TOKEN as its admin_token when that is set (it wins over the file)."""
    environ = os.environ if environ is None else environ
    token = environ.get(ENV_TOKEN)
    return replace(config, {"admin_token": token}) if token else config


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Print the search statistics; exit 1 when searches cannot run (for deploy scripts)."""
    stats = get_searcher().stats()
    click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
    if not (stats["model_loaded"] and stats["embeddings_loaded"]):
        raise SystemExit(1)


__all__ = [
    "CSP",
    "ENV_CONFIG",
    "ENV_RUNTIME",
    "ENV_TOKEN",
    "ENV_WORKDIR",
    "config_from_env",
    "create_app",
    "token_from_env",
]
