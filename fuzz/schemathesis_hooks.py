"""Schemathesis hooks for fuzz/schemathesis_run.sh: drop cases multipart cannot express.

A negative case may turn `threshold` (a number) into an empty list, or into None. In a
multipart form neither becomes a part at all: the request is the same as one without the
field, which is valid, so the API rightly accepts it and schemathesis reports "invalid data
accepted". Likewise an empty string: the API documents "" as "not given" (HTML forms send
empty inputs that way), which a JSON Schema `integer` cannot say without making every form
value ambiguous. Such cases say nothing about the API; they are dropped. (A list of two values
is two parts, and the API refuses it: "threshold was given 2 times".)

The query string follows the same rule (`?page=&category=` is `?` to the API, as the API's
description says), so a case whose query has an empty value is dropped too.
"""

from __future__ import annotations

from typing import Any

import schemathesis

OPTIONAL_FIELDS = ("top_k", "threshold", "num_results")


def has_empty(value: Any) -> bool:
    """Whether a query value is, or repeats, an empty one (sent as `name=`, "not given")."""
    if isinstance(value, list | tuple):
        return any(map(has_empty, value))
    return value is None or value == ""


def vanishes(value: Any) -> bool:
    """Whether a form value is sent as no part at all, or as the documented "not given"."""
    return (
        value is None
        or value == ""
        or (isinstance(value, list | tuple) and all(map(vanishes, value)))
    )


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Keep a case unless one of its optional fields would vanish from the request."""
    body, query = case.body, case.query or {}
    if any(has_empty(value) for value in query.values()):
        return False
    if not isinstance(body, dict):
        return True
    # An empty `category` part is "not given" among the others (a form's empty picker).
    return not (
        any(k in body and vanishes(body[k]) for k in OPTIONAL_FIELDS)
        or has_empty(body.get("category", ()))
    )
