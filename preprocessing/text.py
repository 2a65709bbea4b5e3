"""Client text to `str`: strict UTF-8 with an error that says where it breaks."""

from __future__ import annotations

from preprocessing.errors import RequestError


def as_text(value: str | bytes, field: str) -> str:
    """Return `value` as text; bytes must be valid UTF-8 (no silent replacement)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = data[error.start : error.end]
            raise RequestError(
                field,
                f"is not valid UTF-8: {error.reason} at byte offset {error.start} "
                f"(byte {bad.hex(' ')}); send UTF-8 encoded text",
            ) from None
    raise RequestError(field, f"must be a string, got {type(value).__name__}")
