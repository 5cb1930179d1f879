"""Every error the web app answers, as JSON `{"error": "..."}` with a 4xx/5xx status."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    RequestTimeout,
)

from ..core.errors import DiskFullError, ReadOnlyError, UnsafePathError
from ..search.editor import ImageNameError
from ..search.searcher import (
    ConcurrentChangeError,
    ImageNotIndexedError,
    ModelMismatchError,
    NotReadyError,
    StoreUnavailableError,
    UnknownCategoryError,
    UnreadableImageError,
)

log = logging.getLogger("imgsim")


class ApiError(Exception):
    """A request the API refuses; `status` is the HTTP status (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_response(message: str, status: int) -> tuple[Response, int]:
    """The one error shape of the API."""
    return jsonify(error=message), status


def _api_error(exc: ApiError) -> tuple[Response, int]:
    return error_response(exc.message, exc.status)


def _unreadable(exc: UnreadableImageError) -> tuple[Response, int]:
    # Corrupt, truncated, not an image, or too many pixels: all the client's fault, so 400.
    return error_response(str(exc), 400)


def _bad_name(exc: ImageNameError) -> tuple[Response, int]:
    # A name from an upload that could escape the data folder or hide from its scan.
    return error_response(str(exc), 400)


def _not_indexed(exc: ImageNotIndexedError) -> tuple[Response, int]:
    return error_response(str(exc), 404)


def _unknown_category(exc: UnknownCategoryError) -> tuple[Response, int]:
    return error_response(str(exc), 400)


def _unsafe_path(exc: UnsafePathError) -> tuple[Response, int]:
    # A name that resolves outside the data folder (a symlink that leads out): never followed.
    return error_response(str(exc), 400)


def _model_mismatch(exc: ModelMismatchError) -> tuple[Response, int]:
    # 409: the request is fine, but this server's model did not build the index on disk.
    return error_response(str(exc), 409)


def _concurrent_change(exc: ConcurrentChangeError) -> tuple[Response, int]:
    # Only conditional writes can meet this; the client may retry on the new state.
    return error_response(str(exc), 409)


def _store_unavailable(exc: StoreUnavailableError) -> tuple[Response, int]:
    # The vector store's server (Milvus) cannot be reached: nothing was changed; try later.
    return error_response(str(exc), 503)


def _not_ready(exc: NotReadyError) -> tuple[Response, int]:
    # 503: the server works but has nothing to search with yet; the message says what to run.
    return error_response(str(exc), 503)


def _disk_full(exc: DiskFullError) -> tuple[Response, int]:
    # 507 Insufficient Storage: the change did not fit, nothing of it was kept; retry later.
    return error_response(str(exc), 507)


def _read_only(exc: ReadOnlyError) -> tuple[Response, int]:
    # 503: searching works, changes cannot until the folder is writable again.
    return error_response(str(exc), 503)


def too_large_message(limit: int) -> str:
    """The 413 message: the per-image byte limit in MB."""
    return f"image too large: the limit is {limit / 1024 / 1024:g} MB per image"


def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
    # Raised by werkzeug for a body over request.max_content_length, and also for a form of
    # too many parts or too large text fields: only the first is about the image's size.
    limit = current_app.config["IMGSIM"].max_image_bytes
    length, allowed = request.content_length, request.max_content_length
    if length is not None and allowed is not None and length > allowed:
        return error_response(too_large_message(limit), 413)
    return error_response(
        f"request too large: at most {request.max_form_parts} form parts and "
        f"{(request.max_form_memory_size or 0) / 1024:.0f} KB of text fields "
        f"(and {limit / 1024 / 1024:g} MB per image)",
        413,
    )


def _timeout(exc: RequestTimeout) -> tuple[Response, int]:
    response, status = error_response(exc.description or "request timeout", 408)
    # The rest of the body may still be on its way: this connection cannot carry another
    # request. (Werkzeug's server honours this; gunicorn closes it when its drain times out.)
    response.headers["Connection"] = "close"
    return response, status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    response, status = error_response(exc.description or exc.name, exc.code or 500)
    for key, value in exc.get_headers():
        # Keep headers such as 405's Allow; the body is ours, so not its Content-Type.
        if key.lower() != "content-type":
            response.headers[key] = value
    return response, status


def _internal_error(exc: InternalServerError) -> tuple[Response, int]:
    original = exc.original_exception or exc
    log.error("Unhandled error: %r", original, exc_info=original)
    return error_response("internal server error", 500)


def register_error_handlers(app: Flask) -> None:
    """Install the JSON handlers; the page has no form posts, so JSON errors suit every route."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(UnreadableImageError, _unreadable)
    app.register_error_handler(NotReadyError, _not_ready)
    app.register_error_handler(ImageNameError, _bad_name)
    app.register_error_handler(UnsafePathError, _unsafe_path)
    app.register_error_handler(ImageNotIndexedError, _not_indexed)
    app.register_error_handler(UnknownCategoryError, _unknown_category)
    app.register_error_handler(ModelMismatchError, _model_mismatch)
    app.register_error_handler(ConcurrentChangeError, _concurrent_change)
    app.register_error_handler(StoreUnavailableError, _store_unavailable)
    app.register_error_handler(DiskFullError, _disk_full)
    app.register_error_handler(ReadOnlyError, _read_only)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(RequestTimeout, _timeout)
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(HTTPException, _http_error)
