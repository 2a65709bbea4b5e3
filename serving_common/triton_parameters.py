"""Request parameters that belong to Triton, not to the model: one definition for all.

A request's parameters carry, besides what a client sent, some that Triton itself adds
or uses: names starting with `triton_`, and `id` (the request id, which the HTTP
generate endpoint also hands on as a parameter). A model never checks those; anything
else is the client's and the model must read it or refuse it, never ignore it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from serving_common.errors import RequestError

TRITON_PARAMETER_PREFIX = "triton_"
TRITON_PARAMETERS: frozenset[str] = frozenset({"id"})


def is_triton_parameter(name: str) -> bool:
    return name.startswith(TRITON_PARAMETER_PREFIX) or name in TRITON_PARAMETERS


def refuse_parameters(parameters: Mapping[str, object] | None, inputs: Sequence[str]) -> None:
    """For a model that takes no request parameters: any but Triton's own is refused, so
    none is silently ignored (on the generate endpoint, a JSON field that is not an input
    arrives as a parameter; settings are config parameters, never request ones)."""
    for name in sorted(parameters or {}):
        if not is_triton_parameter(name):
            raise RequestError(
                name,
                f"is not an input of this model (it arrived as a request parameter); "
                f"inputs: {', '.join(inputs)}",
            )
