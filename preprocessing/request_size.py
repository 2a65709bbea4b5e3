"""The size of a request as it arrived, checked before anything in it is decoded.

Everything a model does with a request costs time in proportion to its size (decoding
strings, parsing JSON, tokenizing, reading word lists value by value), on the thread
that validates every request. `max_request_bytes` bounds that cost up front, so one huge
request is refused in microseconds instead of holding the others up for seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from serving_common.errors import RequestError


def input_bytes(array: np.ndarray) -> int:
    """The bytes an input holds: its strings' lengths for a BYTES tensor, else its size."""
    if array.dtype != np.object_:
        return int(array.nbytes)
    return sum(len(item) for item in array.flat if isinstance(item, (bytes, str)))


def check_request_size(
    inputs: Mapping[str, np.ndarray], limit: int, exempt: Collection[str] = ()
) -> None:
    """Refuse a request whose inputs (those not `exempt`) hold more than `limit` bytes.

    The error names the largest input, the field to shrink first.
    """
    sizes = {
        name: input_bytes(np.asarray(array))
        for name, array in inputs.items()
        if array is not None and name not in exempt
    }
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.__getitem__)
        raise RequestError(
            largest,
            f"the request is {total} bytes ({largest}: {sizes[largest]}), over the limit of "
            f"{limit} bytes (max_request_bytes)",
        )
