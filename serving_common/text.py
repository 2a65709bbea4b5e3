"""Client text to `str`: strict UTF-8, with an error that says which value breaks and where.

The one decoder for strings a client sends, in every model: BYTES tensors arrive as
`bytes` (tests may pass `str`), and invalid UTF-8 is refused rather than replaced, so
the model never works on text other than what the client meant.
"""

from __future__ import annotations

from serving_common.errors import RequestError


def decode_utf8(field: str, raw: object, where: str = "") -> str:
    """One string element as text.

    `where` says which element of `field` it is ("prompt 1", "row 0, beam 1"), for the
    message; empty when the field holds one value.
    """
    if isinstance(raw, str):
        return raw
    subject = f"{where} " if where else ""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError(
                field,
                f"{subject}is not valid UTF-8 ({error.reason} at byte offset {error.start})",
            ) from None
    raise RequestError(field, f"{subject}must be a string, got {type(raw).__name__}")
