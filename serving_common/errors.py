"""The one error type for bad input, shared by every model of the pipeline.

A `RequestError` always names the offending field and says what the limit is, so the
message can go straight to the client (Triton INVALID_ARG, HTTP 400).
"""

from __future__ import annotations

import json
from typing import Any


class RequestError(ValueError):
    """Bad input from a client: names the field, says what was wrong and what is allowed."""

    def __init__(self, field: str, message: str, *, code: str = "INVALID_ARG") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # Name of the pb_utils.TritonError code the model should answer with.
        self.code = code

    def __reduce__(self):  # keep it picklable with its keyword argument
        return (_rebuild, (self.field, self.message, self.code))


def _rebuild(field: str, message: str, code: str) -> RequestError:
    return RequestError(field, message, code=code)


def load_json(field: str, text: str, *, subject: str, expected: str) -> Any:
    """`json.loads(text)` of a client's value, or a RequestError that says where it breaks.

    The message reads "<field>: <subject> is not valid JSON (<reason> at line L column C);
    <expected>"; an empty `subject` leaves it out.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        what = f"{subject} is" if subject else "is"
        raise RequestError(
            field,
            f"{what} not valid JSON ({error.msg} at line {error.lineno} column "
            f"{error.colno}); {expected}",
        ) from None
