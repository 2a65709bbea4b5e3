"""The shared pb_utils glue: a stateless model's response and the log handler."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from serving_common.errors import RequestError
from serving_common.triton_glue import install_log_handler, remove_log_handler, stateless_response


class FakeTritonError:
    INTERNAL, INVALID_ARG, UNSUPPORTED = 1, 3, 5

    def __init__(self, message: str, code: int) -> None:
        self.message, self.code = message, code


class FakeLogger:
    lines: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.lines.append(("error", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(("info", message))


def fake_pb_utils():
    return SimpleNamespace(
        TritonError=FakeTritonError,
        Logger=FakeLogger,
        Tensor=lambda name, value: (name, value),
        InferenceResponse=lambda output_tensors=(), error=None: SimpleNamespace(
            tensors=list(output_tensors), error=error
        ),
        get_input_tensor_by_name=lambda request, name: (
            SimpleNamespace(as_numpy=lambda: request.inputs[name])
            if name in request.inputs
            else None
        ),
    )


def request(inputs, parameters=None):
    return SimpleNamespace(inputs=inputs, parameters=lambda: json.dumps(parameters or {}))


def test_outputs_of_the_handler_become_the_response():
    seen = {}

    def handle(inputs, parameters):
        seen.update(inputs=inputs, parameters=parameters)
        return {"OUT": inputs["A"] * 2}

    a = np.array([[1, 2]])
    response = stateless_response(
        fake_pb_utils(), request({"A": a, "IGNORED": a}, {"p": 1}), ("A", "B"), handle, "m"
    )
    assert response.error is None
    assert [name for name, _ in response.tensors] == ["OUT"]
    np.testing.assert_array_equal(response.tensors[0][1], a * 2)
    assert list(seen["inputs"]) == ["A"] and seen["parameters"] == {"p": 1}


def test_a_client_error_keeps_its_code_and_a_bug_is_internal_and_logged():
    FakeLogger.lines.clear()

    def refuse(inputs, parameters):
        raise RequestError("A", "is wrong", code="UNSUPPORTED")

    response = stateless_response(fake_pb_utils(), request({}), ("A",), refuse, "m")
    assert (response.error.message, response.error.code) == ("A: is wrong", 5)
    assert FakeLogger.lines == []

    def crash(inputs, parameters):
        raise KeyError("x")

    response = stateless_response(fake_pb_utils(), request({}), ("A",), crash, "m")
    assert response.error.message == "internal error in m: KeyError: 'x'"
    assert response.error.code == FakeTritonError.INTERNAL
    assert FakeLogger.lines[0][0] == "error" and "m failed" in FakeLogger.lines[0][1]


def test_log_records_reach_triton_by_level_and_stop_after_removal():
    FakeLogger.lines.clear()
    handler = install_log_handler(fake_pb_utils(), "glue_test_a", "glue_test_b")
    logging.getLogger("glue_test_a.x").info("hello")
    logging.getLogger("glue_test_b").warning("careful")
    remove_log_handler(handler, "glue_test_a", "glue_test_b")
    logging.getLogger("glue_test_a").error("not seen")
    assert FakeLogger.lines == [("info", "glue_test_a.x: hello"), ("warn", "glue_test_b: careful")]
