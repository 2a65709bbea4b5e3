"""The shared pb_utils response sink, against a stand-in for triton_python_backend_utils."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from serving_common.triton_glue import TritonResponseSink


class FakeTritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED = range(6)
    ALREADY_EXISTS, CANCELLED = 6, 7

    def __init__(self, message: str, code: int = 1) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class FakeTensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self._name, self._value = name, value

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._value


class FakeResponse:
    def __init__(self, output_tensors=(), error=None) -> None:
        self._tensors, self._error = list(output_tensors), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error

    def output_tensors(self):
        return self._tensors


def fake_pb_utils(responses=None, raises: Exception | None = None):
    sent_requests = []

    class FakeRequest:
        def __init__(self, **kwargs) -> None:
            sent_requests.append(kwargs)

        def exec(self, decoupled: bool):
            assert decoupled
            if raises is not None:
                raise raises
            return iter(responses or [])

    module = SimpleNamespace(
        InferenceRequest=FakeRequest,
        Tensor=FakeTensor,
        TritonError=FakeTritonError,
        InferenceResponse=FakeResponse,
        TRITONSERVER_RESPONSE_COMPLETE_FINAL=1,
    )
    return module, sent_requests


def test_a_client_that_went_away_reads_as_cancelled():
    class GoneSender:
        def send(self, *args, **kwargs):
            raise RuntimeError("Unable to send response: the stream is closed")

        def is_cancelled(self) -> bool:
            return False

    request = SimpleNamespace(get_response_sender=GoneSender, requested_output_names=list)
    pb, _ = fake_pb_utils()
    sink = TritonResponseSink(pb, request)
    assert not sink.is_cancelled()
    sink.send({"text_output": np.array([[b"x"]], dtype=object)}, final=False)
    assert sink.is_cancelled()


def test_cancellation_is_never_asked_once_final_is_sent():
    # Triton 2.51 frees the response factory with FINAL; asking afterwards crashes it.
    class Sender:
        asked = 0

        def send(self, *args, **kwargs):
            pass

        def is_cancelled(self) -> bool:
            Sender.asked += 1
            return False

    pb, _ = fake_pb_utils()
    for finish in ("send", "send_error"):
        Sender.asked = 0
        sink = TritonResponseSink(
            pb, SimpleNamespace(get_response_sender=Sender, requested_output_names=list)
        )
        assert not sink.is_cancelled() and Sender.asked == 1
        if finish == "send":
            sink.send(None, final=True)
        else:
            sink.send_error("bad input", "INVALID_ARG")
        assert not sink.is_cancelled() and Sender.asked == 1
