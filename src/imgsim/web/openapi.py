"""GET /openapi.json: the API's OpenAPI 3 description, kept in openapi.yaml beside this module."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The description, parsed once per process (YAML: comments and readable diffs)."""
    text = (resources.files("imgsim.web") / "openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@bp.get("/openapi.json")
def openapi() -> Any:
    """The description as JSON, for clients and API tools (schemathesis, Swagger UI, ...)."""
    return jsonify(openapi_spec())
