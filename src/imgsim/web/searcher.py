"""The app's shared Searcher and CollectionEditor: opened once per process by `init_app`, got by
`get_searcher` (queries) and `get_editor` (changes to the collection)."""

from __future__ import annotations

from flask import Flask, current_app

from ..core.config import SearchConfig
from ..search.editor import CollectionEditor
from ..search.searcher import Searcher

_KEY = "imgsim.searcher"
_EDITOR_KEY = "imgsim.editor"


def init_app(app: Flask, config: SearchConfig, searcher: Searcher | None = None) -> Searcher:
    """Load the model and index from `config.workdir` (or adopt `searcher`) and attach it to `app`.

    Loading happens here, at start, so no request pays for it; a missing model or index is
    recorded by the Searcher and reported by /stats and /search instead of stopping the server.
    """
    editor = None
    if searcher is None:
        searcher = Searcher.from_workdir(
            config.workdir,
            max_pixels=config.max_image_pixels,
            store=config.store or None,
            config=config,
        )
        editor = CollectionEditor(searcher)
        editor.recover_uploads()
    app.extensions[_KEY] = searcher
    app.extensions[_EDITOR_KEY] = editor or CollectionEditor(searcher)
    return searcher


def get_searcher() -> Searcher:
    """The Searcher of the current app."""
    return searcher_of(current_app)


def searcher_of(app: Flask) -> Searcher:
    """The Searcher attached to `app` (outside a request too)."""
    return app.extensions[_KEY]


def get_editor() -> CollectionEditor:
    """The CollectionEditor of the current app: every add and removal goes through it."""
    return editor_of(current_app)


def editor_of(app: Flask) -> CollectionEditor:
    """The CollectionEditor attached to `app` (outside a request too)."""
    return app.extensions[_EDITOR_KEY]
