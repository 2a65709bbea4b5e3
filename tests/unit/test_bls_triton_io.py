"""The pb_utils adapters of the BLS, against a stand-in for triton_python_backend_utils."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bls.triton_io import TritonEngineClient, TritonResponseSink


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


def test_engine_tokens_become_rows():
    response = FakeResponse(
        [
            FakeTensor("output_ids", np.array([[[7, 8]]], dtype=np.int32)),
            FakeTensor("sequence_length", np.array([[2]], dtype=np.int32)),
            FakeTensor("batch_index", np.array([[0]], dtype=np.int32)),
            FakeTensor("sequence_index", np.array([[1]], dtype=np.int32)),
        ]
    )
    pb, sent = fake_pb_utils([response, FakeResponse()])
    got = list(
        TritonEngineClient(pb, "tensorrt_llm").generate("42", {"input_ids": np.zeros((1, 1))})
    )
    assert [row.token_ids for r in got for row in r.rows] == [(7, 8)]
    assert got[0].rows[0].sequence_index == 1
    assert sent[0]["request_id"] == "42" and sent[0]["model_name"] == "tensorrt_llm"


def test_an_engine_error_keeps_its_message_and_code():
    pb, _ = fake_pb_utils([FakeResponse(error=FakeTritonError("prompt too long", 3))])
    (got,) = list(TritonEngineClient(pb, "tensorrt_llm").generate("1", {}))
    assert (got.error, got.error_code, got.final) == ("prompt too long", "INVALID_ARG", True)


def test_an_engine_that_cannot_be_called_is_reported_not_raised():
    pb, _ = fake_pb_utils(raises=RuntimeError("Model 'tensorrt_llm' is not ready."))
    (got,) = list(TritonEngineClient(pb, "tensorrt_llm").generate("1", {}))
    assert got.error_code == "UNAVAILABLE"
    assert (
        got.error == "the call to model 'tensorrt_llm' failed: Model 'tensorrt_llm' is not ready."
    )


def test_a_client_that_went_away_reads_as_cancelled():
    class GoneSender:
        def send(self, *args, **kwargs):
            raise RuntimeError("Unable to send response: the stream is closed")

    request = SimpleNamespace(get_response_sender=GoneSender, is_cancelled=lambda: False)
    pb, _ = fake_pb_utils()
    sink = TritonResponseSink(pb, request)
    assert not sink.is_cancelled()
    sink.send({"text_output": np.array([[b"x"]], dtype=object)}, final=False)
    assert sink.is_cancelled()
