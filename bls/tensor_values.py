"""Read client values out of the numpy arrays Triton hands a model, with clear errors.

Arrays carry the batch dimension first ([B, ...], B prompts in the request). BYTES tensors
arrive as object arrays of `bytes`; tests may also pass `str`. Every failure is a
`RequestError` naming the input, the row and what was expected.
"""

from __future__ import annotations

import math

import numpy as np

from serving_common.errors import RequestError

# Values an INT32 tensor can hold: a request parameter (a Python int) must fit too.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1


def check_rows(field: str, array: np.ndarray, batch_size: int) -> None:
    if array.ndim == 0:
        raise RequestError(
            field, f"expected a batch dimension (shape [{batch_size}, ...]), got a 0-d tensor"
        )
    if array.shape[0] != batch_size:
        raise RequestError(
            field,
            f"has {array.shape[0]} rows but the prompt has {batch_size}; "
            "every input needs one row per prompt",
        )


def row_scalars(field: str, array: np.ndarray, batch_size: int) -> list[object]:
    """One element per row: shape [B, 1] (or [B], what a `reshape: { shape: [] }` gives)."""
    check_rows(field, array, batch_size)
    if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
        raise RequestError(
            field,
            f"expected one value per prompt (shape [{batch_size}, 1]), "
            f"got shape {list(array.shape)}",
        )
    return list(array.reshape(batch_size))


def row_lists(field: str, array: np.ndarray, batch_size: int) -> list[list[object]]:
    """A list per row: shape [B, N]."""
    check_rows(field, array, batch_size)
    if array.ndim != 2:
        raise RequestError(
            field,
            f"expected a list per prompt (shape [{batch_size}, N]), got shape {list(array.shape)}",
        )
    return [list(row) for row in array]


def as_int(field: str, raw: object, where: str) -> int:
    """An integer element or request parameter. bool is refused (it is an int in Python)."""
    if isinstance(raw, (bool, np.bool_)):
        raise RequestError(field, f"{where} must be an integer, got a boolean ({raw})")
    if isinstance(raw, (int, np.integer)):
        return int(raw)
    raise RequestError(field, f"{where} must be an integer, got {_describe(raw)}")


def as_float(field: str, raw: object, where: str) -> float:
    if isinstance(raw, (bool, np.bool_)):
        raise RequestError(field, f"{where} must be a number, got a boolean ({raw})")
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw)
    raise RequestError(field, f"{where} must be a number, got {_describe(raw)}")


def as_bool(field: str, raw: object, where: str) -> bool:
    if isinstance(raw, (bool, np.bool_)):
        return bool(raw)
    raise RequestError(field, f"{where} must be true or false, got {_describe(raw)}")


def same_key(value: object) -> object:
    """Comparison key under which NaN equals NaN, so rows holding NaN count as equal."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _describe(raw: object) -> str:
    # numpy scalars shown by value: their repr differs between numpy 1 and 2.
    value = raw.item() if isinstance(raw, np.generic) else raw
    return f"{type(raw).__name__} {value!r}"
