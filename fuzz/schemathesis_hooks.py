"""Schemathesis hooks for fuzz/schemathesis_run.sh: drop cases multipart cannot express.

A negative case may turn `threshold` (a number) into an empty list, or into None. In a
multipart form neither becomes a part at all: the request is the same as one without the
field, which is valid, so the API rightly accepts it and schemathesis reports "invalid data
accepted". Likewise an empty string: the API documents "" as "not given" (HTML forms send
empty inputs that way), which a JSON Schema `integer` cannot say without making every form
value ambiguous. Such cases say nothing about the API; they are dropped. (A list of two values
is two parts, and the API refuses it: "threshold was given 2 times".)
"""

from __future__ import annotations

from typing import Any

import schemathesis

OPTIONAL_FIELDS = ("top_k", "threshold", "num_results")


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
    body = case.body
    return not (
        isinstance(body, dict) and any(k in body and vanishes(body[k]) for k in OPTIONAL_FIELDS)
    )
