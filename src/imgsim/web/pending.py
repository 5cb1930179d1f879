"""The API's answer while a kept document (the map, the duplicate groups) is first computed."""

from __future__ import annotations

from flask import Response, jsonify

from ..explore.kept_document import DocumentState
from .errors import ApiError

RETRY_SECONDS = 2  # how soon a client should ask again while the first one is computed


def pending_answer(state: DocumentState) -> tuple[Response, int] | None:
    """202 and Retry-After while there is none yet, the failure as a 500, None once there is."""
    if state.document is not None:
        return None
    if state.error:
        raise ApiError(state.error, 500)
    response = jsonify(status="computing", retry_after=RETRY_SECONDS)
    response.headers["Retry-After"] = str(RETRY_SECONDS)
    return response, 202
