"""Reading an API request: the uploaded images (in memory, never on disk) and its text fields."""

from __future__ import annotations

import io
import math
import re
from typing import IO

from flask import Request, current_app, request
from werkzeug.datastructures import FileStorage

from ..core.config import TOP_K_RANGE
from .errors import ApiError, too_large_message

TOP_K_MIN, TOP_K_MAX = TOP_K_RANGE  # the API's, as the CLI's (the page offers less)
CATEGORIES_MAX = 64  # category fields one request may send
CATEGORY_CHARS = 512  # the longest category a store keeps (Milvus's field)
FILE_FIELDS = ("image", "file")  # "image" is the original's field name
BATCH_FIELDS = ("images", "image", "file")
# Plain ASCII numbers only: int() and float() would also take "1_000", "１０" and "infinity".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
# Room for the multipart boundaries, headers and the small form fields around the image bytes.
FORM_OVERHEAD = 64 * 1024


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in memory.

    Werkzeug spools files over 500 KB to temporary files; uploads here are bounded by
    max_content_length, so memory is safe and query images never touch the disk.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def limit_request(images: int) -> None:
    """Cap this request's body before it is read: `images` images plus form overhead."""
    per_image = current_app.config["IMGSIM"].max_image_bytes
    request.max_content_length = images * per_image + FORM_OVERHEAD


def read_image() -> tuple[str, bytes]:
    """The one uploaded image of a search request: (client file name, bytes)."""
    for field in FILE_FIELDS:
        if field in request.files:
            return _read(request.files[field])
    raise ApiError(_no_file_message("no image file in the request", "image"))


def read_images() -> list[tuple[str, bytes]]:
    """All uploaded images of a batch request, in the order they were sent."""
    files = [f for field in BATCH_FIELDS for f in request.files.getlist(field)]
    if not files:
        raise ApiError(_no_file_message("no image files in the request", "images"))
    limit = current_app.config["IMGSIM"].max_batch_files
    if len(files) > limit:
        raise ApiError(f"too many images: {len(files)} (limit {limit} per request)")
    return [_read(f) for f in files]


def _no_file_message(problem: str, field: str) -> str:
    it = "them" if field.endswith("s") else "it"
    # Say what did arrive: a wrong field name or a JSON/raw body is the usual mistake.
    if request.mimetype != "multipart/form-data":
        got = request.mimetype or "no body"
        return f"{problem}: send {it} as multipart/form-data with the field '{field}' (got {got})"
    # A part whose name werkzeug cannot parse comes back under None (schemathesis found it).
    sent = sorted({str(name) for name in [*request.files, *request.form] if name})[:5]
    if sent:
        names = ", ".join(repr(name[:40]) for name in sent)
        return f"{problem}: send {it} as the multipart field '{field}' (got fields {names})"
    return f"{problem} (send {it} as the multipart field '{field}')"


def _read(upload: FileStorage) -> tuple[str, bytes]:
    name = upload.filename or ""
    if not name:
        raise ApiError("no image selected")
    limit = current_app.config["IMGSIM"].max_image_bytes
    data = upload.read(limit + 1)
    if not data:
        raise ApiError(f"empty file: {name}")
    if len(data) > limit:
        raise ApiError(too_large_message(limit), 413)
    return name, data


def read_top_k() -> int:
    """`top_k` (or the original's `num_results`): an integer from 1 to 100, default from config."""
    raw = read_field("top_k", number=True) or read_field("num_results", number=True)
    if raw is None:
        return current_app.config["IMGSIM"].top_k
    if not _INTEGER.fullmatch(raw):
        raise ApiError(f"top_k must be a whole number, not {raw[:20]!r}")
    # int() refuses over 4,300 digits (ValueError): anything that long is out of range anyway.
    top_k = int(raw) if len(raw) <= 10 else TOP_K_MAX + 1
    if not TOP_K_MIN <= top_k <= TOP_K_MAX:
        raise ApiError(f"top_k must be between {TOP_K_MIN} and {TOP_K_MAX}, not {raw[:20]}")
    return top_k


def read_threshold() -> float | None:
    """`threshold` in percent (0-100); None when absent, so the model's tuned default applies."""
    raw = read_field("threshold", number=True)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise ApiError(f"threshold must be a number, not {raw[:20]!r}")
    threshold = float(raw)
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 100.0:
        raise ApiError(f"threshold must be between 0 and 100 (percent), not {raw[:20]}")
    return threshold


def read_field(name: str, *, number: bool = False) -> str | None:
    """A text field (form or query string) given at most once; None when absent or empty.

    With `number`, an empty value in the query string is refused: only an HTML form sends empty
    inputs, and `?page=` is more likely a client's bug than a wish for the default.
    """
    values = [*request.form.getlist(name), *request.args.getlist(name)]
    if len(values) > 1:  # which one did the client mean? Refuse rather than guess.
        raise ApiError(f"{name} was given {len(values)} times; send it once")
    if number and request.args.get(name) == "":
        raise ApiError(f"{name} is empty in the query string: give a number or leave {name} out")
    # An empty field means "not given": HTML forms send empty inputs as "". Nothing else is
    # stripped: str.strip() also ate "\x1e" and made it the default (found by schemathesis).
    return (values[0] or None) if values else None


def read_categories() -> list[str] | None:
    """The `category` fields (form or query string, repeatable), in order; None without one.

    Empty values are "not given", as for the other fields; whether the collection holds each
    category is the Searcher's to say.
    """
    values = [*request.form.getlist("category"), *request.args.getlist("category")]
    values = [v for v in values if v]
    if len(values) > CATEGORIES_MAX:
        raise ApiError(f"too many categories: {len(values)} (limit {CATEGORIES_MAX})")
    for value in values:
        if len(value) > CATEGORY_CHARS or not value.isprintable():
            raise ApiError(f"not a category: {value[:40]!r}")
    return values or None


def read_int(name: str, default: int, low: int, high: int) -> int:
    """A whole-number field (at most once) from `low` to `high`; `default` when absent."""
    raw = read_field(name, number=True)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ApiError(f"{name} must be a whole number, not {raw[:20]!r}")
    value = int(raw) if len(raw) <= 12 else high + 1  # longer is out of range anyway
    if not low <= value <= high:
        raise ApiError(f"{name} must be between {low} and {high}, not {raw[:20]}")
    return value
