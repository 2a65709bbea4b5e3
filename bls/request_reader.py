"""Reading a request's settings out of what Triton hands the model, with clear errors.

Every setting is read once, from its input tensor or from a request parameter of the
same name (see `bls.request_rules` for the rules a client sees). This module only reads
and reconciles values: what is allowed is `bls.request_rules`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

from bls.request_fields import ALIASES, INPUT_SPECS, INPUTS_BY_NAME, REQUEST_PARAMETER_NAMES, Kind
from bls.tensor_values import (
    INT32_MAX,
    INT32_MIN,
    UINT64_MAX,
    as_bool,
    as_float,
    as_int,
    row_lists,
    row_scalars,
    same_key,
)
from serving_common.errors import RequestError
from serving_common.text import decode_utf8
from serving_common.triton_parameters import TRITON_PARAMETER_PREFIX, is_triton_parameter

_T = TypeVar("_T")


def reject_unknown_inputs(arrays: Mapping[str, np.ndarray]) -> None:
    for name in arrays:
        if name not in INPUTS_BY_NAME:
            accepted = ", ".join(spec.name for spec in INPUT_SPECS)
            raise RequestError(name, f"unknown input; accepted inputs: {accepted}")


def client_parameters(parameters: Mapping[str, object]) -> dict[str, object]:
    ours: dict[str, object] = {}
    for name, value in parameters.items():
        if is_triton_parameter(name):
            continue  # Triton's own: not ours to check
        if name not in REQUEST_PARAMETER_NAMES:
            accepted = ", ".join(sorted(REQUEST_PARAMETER_NAMES))
            hint = ""
            if name in INPUTS_BY_NAME:
                hint = " (it must be sent as an input tensor)"
            raise RequestError(
                name,
                f"unknown request parameter{hint}; accepted parameters: {accepted} "
                f"(parameters named {TRITON_PARAMETER_PREFIX}* belong to Triton and are "
                "ignored)",
            )
        ours[name] = value
    return ours


class RequestReader:
    """Reads each setting once, from an input tensor or a request parameter."""

    def __init__(
        self, arrays: Mapping[str, np.ndarray], params: Mapping[str, object], batch_size: int
    ) -> None:
        self._arrays = arrays
        self._params = params
        self._batch_size = batch_size

    def integer(self, name: str) -> int | None:
        value = self._scalar(name)
        assert value is None or isinstance(value, int)
        return value

    def number(self, name: str) -> float | None:
        value = self._scalar(name)
        assert value is None or isinstance(value, float)
        return value

    def flag(self, name: str) -> bool | None:
        value = self._scalar(name)
        assert value is None or isinstance(value, bool)
        return value

    def _scalar(self, name: str) -> object:
        """The value of a setting and of its older alias, reconciled."""
        value = self._one_source(name)
        for alias, canonical in ALIASES.items():
            if canonical != name:
                continue
            other = self._one_source(alias)
            if other is None:
                continue
            if value is not None and same_key(value) != same_key(other):
                raise RequestError(
                    name,
                    f"{name} and {alias} are the same setting ({alias} is its older name), "
                    f"got {name}={value!r} and {alias}={other!r}; send one of them",
                )
            value = other
        return value

    def _one_source(self, name: str) -> object:
        kind = INPUTS_BY_NAME[name].kind
        from_input = None
        if name in self._arrays:
            rows = row_scalars(name, self._arrays[name], self._batch_size)
            values = [
                _convert(name, kind, raw, self._where(index)) for index, raw in enumerate(rows)
            ]
            from_input = shared_value(name, values)
        from_param = None
        if name in self._params:
            from_param = _convert(name, kind, self._params[name], "the request parameter")
        both = from_input is not None and from_param is not None
        if both and same_key(from_input) != same_key(from_param):
            raise RequestError(
                name,
                f"given as an input ({from_input!r}) and as a request parameter "
                f"({from_param!r}) with different values; send it once",
            )
        return from_input if from_input is not None else from_param

    def text(self, name: str) -> str | None:
        """A string input with one value per prompt (the same for all prompts)."""
        if name not in self._arrays:
            return None
        rows = row_scalars(name, self._arrays[name], self._batch_size)
        values = [decode_utf8(name, raw, self._where(row)) for row, raw in enumerate(rows)]
        return shared_value(name, values)

    def string_rows(self, name: str) -> list[list[str]] | None:
        """A list of strings per prompt ([B, N])."""
        return self._rows(name, decode_utf8, "word")

    def float_rows(self, name: str) -> list[list[float]] | None:
        """A list of numbers per prompt ([B, N])."""
        return self._rows(name, as_float, "value")

    def _rows(
        self, name: str, convert: Callable[[str, object, str], _T], item: str
    ) -> list[list[_T]] | None:
        if name not in self._arrays:
            return None
        rows = row_lists(name, self._arrays[name], self._batch_size)
        return [
            [
                convert(name, raw, f"{item} {index}{self._of_row(row)}")
                for index, raw in enumerate(values)
            ]
            for row, values in enumerate(rows)
        ]

    def matrix(self, name: str, integer: bool) -> np.ndarray | None:
        """One prompt's 2-D array of a [B, N, M] input; all rows must be the same."""
        if name not in self._arrays:
            return None
        array = self._arrays[name]
        if array.ndim != 3 or array.shape[0] != self._batch_size:
            raise RequestError(
                name,
                f"expected shape [{self._batch_size}, N, M] (one 2-D array per prompt), "
                f"got shape {list(array.shape)}",
            )
        wanted = "iu" if integer else "f"
        if array.dtype.kind not in wanted:
            kind = "integer" if integer else "floating-point"
            raise RequestError(name, f"expected {kind} values, got dtype {array.dtype}")
        if any(not np.array_equal(array[0], row) for row in array[1:]):
            raise RequestError(
                name,
                "the prompts of one request must share one value; send prompts that need "
                "different LoRA adapters as separate requests",
                code="UNSUPPORTED",
            )
        value = np.array(array[0], copy=True)
        value.setflags(write=False)
        return value

    def _where(self, row: int) -> str:
        return "the value" if self._batch_size == 1 else f"the value of prompt {row}"

    def _of_row(self, row: int) -> str:
        return "" if self._batch_size == 1 else f" of prompt {row}"


def shared_value(name: str, values: list[_T]) -> _T:
    """The one value all prompts of a request give an input (see the module docstring)."""
    distinct = list({same_key(value): value for value in values}.values())
    if len(distinct) > 1:
        raise RequestError(
            name,
            f"the prompts of one request must share one value, got {distinct}; "
            "send prompts that need different settings as separate requests",
            code="UNSUPPORTED",
        )
    return values[0]


def _convert(name: str, kind: Kind, raw: object, where: str) -> object:
    if kind is Kind.BOOL:
        return as_bool(name, raw, where)
    if kind is Kind.FLOAT:
        # Rounded to FP32, the dtype of the input tensor and of the engine's own input, so
        # the same number sent as an input and as a parameter compares equal.
        with np.errstate(over="ignore"):
            return float(np.float32(as_float(name, raw, where)))
    if kind is Kind.INT:
        value = as_int(name, raw, where)
        if not INT32_MIN <= value <= INT32_MAX:
            raise RequestError(name, f"{where} must fit in a 32-bit signed integer, got {value}")
        return value
    if kind is Kind.UINT:
        value = as_int(name, raw, where)
        if not 0 <= value <= UINT64_MAX:
            raise RequestError(name, f"{where} must be between 0 and 2**64-1, got {value}")
        return value
    raise AssertionError(f"{name} is not a scalar input")
