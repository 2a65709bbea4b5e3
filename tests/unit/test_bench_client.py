"""Request messages, token counting from both targets, and one stream's bookkeeping."""

import asyncio
import struct

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from benchmarks.stats import Meter, Window
from benchmarks.stream_client import StreamSession
from benchmarks.targets import (
    EMPTY_FINAL,
    FINAL,
    BlsTarget,
    EngineTarget,
    int32_sum,
    make_target,
)
from benchmarks.workload import WorkItem


def inputs_of(message: service_pb2.ModelInferRequest) -> dict[str, tuple[str, list[int], bytes]]:
    return {
        tensor.name: (tensor.datatype, list(tensor.shape), raw)
        for tensor, raw in zip(message.inputs, message.raw_input_contents, strict=True)
    }


def response(outputs: dict[str, np.ndarray], final: bool | None = False, error: str = ""):
    reply = service_pb2.ModelStreamInferResponse(error_message=error)
    infer = reply.infer_response
    for name, array in outputs.items():
        tensor = infer.outputs.add()
        tensor.name = name
        tensor.datatype = "INT32"
        tensor.shape.extend(array.shape)
        infer.raw_output_contents.append(array.astype("<i4").tobytes())
    if final is not None:
        infer.parameters[FINAL].bool_param = final
    return reply


def test_bls_message_is_text_in_with_streaming_and_token_counts():
    message = BlsTarget().message(WorkItem(prompt_len=5, output_len=64))
    assert message.model_name == "tensorrt_llm_bls"
    assert message.parameters[EMPTY_FINAL].bool_param is True
    inputs = inputs_of(message)
    datatype, shape, raw = inputs["text_input"]
    assert (datatype, shape) == ("BYTES", [1, 1])
    (length,) = struct.unpack("<I", raw[:4])
    assert raw[4:].decode() == "the quick brown fox jumps" and length == len(raw) - 4
    assert inputs["max_tokens"] == ("INT32", [1, 1], struct.pack("<i", 64))
    assert inputs["stream"] == ("BOOL", [1, 1], b"\x01")
    assert inputs["return_num_output_tokens"] == ("BOOL", [1, 1], b"\x01")


def test_bls_takes_a_fixed_prompt():
    raw = inputs_of(BlsTarget(prompt="Hello 世界").message(WorkItem(99, 4)))["text_input"][2]
    assert raw[4:].decode() == "Hello 世界"


def test_engine_message_is_ids_in_and_asks_for_what_the_bls_asks_for():
    message = EngineTarget().message(WorkItem(prompt_len=3, output_len=16))
    inputs = inputs_of(message)
    assert inputs["input_ids"][:2] == ("INT32", [1, 3])
    assert np.frombuffer(inputs["input_ids"][2], "<i4").tolist() == [100, 101, 102]
    assert inputs["input_lengths"][2] == struct.pack("<i", 3)
    assert inputs["request_output_len"][2] == struct.pack("<i", 16)
    assert inputs["streaming"][2] == b"\x01"
    assert [o.name for o in message.outputs] == ["output_ids", "sequence_length"]
    assert message.parameters[EMPTY_FINAL].bool_param is True


def test_messages_are_built_once_per_shape():
    target = EngineTarget()
    assert target.message(WorkItem(3, 16)) is target.message(WorkItem(3, 16))
    assert target.message(WorkItem(3, 16)) is not target.message(WorkItem(4, 16))


def test_the_engine_does_not_take_a_text_prompt():
    with pytest.raises(ValueError, match="token ids"):
        make_target("tensorrt_llm", prompt="hi")
    assert isinstance(make_target("my_bls"), BlsTarget)


def test_bls_tokens_are_num_output_tokens_of_each_response():
    target = BlsTarget()
    reply = response({"num_output_tokens": np.array([[3]]), "batch_index": np.array([[0]])})
    assert target.count_tokens(reply.infer_response) == 3
    assert target.count_tokens(response({"batch_index": np.array([[7]])}).infer_response) == 0


def test_engine_tokens_are_the_sequence_length_of_each_response():
    target = EngineTarget()
    reply = response(
        {"output_ids": np.array([[[5, 6]]]), "sequence_length": np.array([[2]])}, final=False
    )
    assert target.count_tokens(reply.infer_response) == 2


def test_int32_sum_reads_one_or_many_values():
    assert int32_sum(struct.pack("<i", -4)) == -4
    assert int32_sum(np.array([1, 2, 3], "<i4").tobytes()) == 6


class FakeCall:
    """A ModelStreamInfer call that plays back replies, each at a set time."""

    def __init__(self, script, clock):
        self.script = list(script)  # (time, reply | grpc.aio.EOF | exception)
        self.clock = clock
        self.written = []
        self.cancelled = False

    async def write(self, message):
        self.written.append(message.id)

    async def read(self):
        when, reply = self.script.pop(0)
        self.clock.now = when
        if isinstance(reply, Exception):
            raise reply
        return reply


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def session_for(script, window_start=0.0):
    clock = Clock()
    window = Window()
    window.open(window_start, 100.0)
    meter = Meter(window)
    call = FakeCall(script, clock)
    return StreamSession(call, EngineTarget(), meter, clock), call, meter


def token(n=1, final=False):
    ids = np.arange(n).reshape(1, 1, n)
    return response({"output_ids": ids, "sequence_length": np.array([[n]])}, final=final)


def test_a_stream_is_read_to_its_empty_final_response():
    session, call, meter = session_for(
        [(1.0, token()), (1.2, token(2)), (1.9, token()), (2.0, response({}, final=True))]
    )
    record = asyncio.run(session.run(WorkItem(4, 4), "r1"))
    assert call.written == ["r1"]
    assert record.ok and not session.broken
    assert (record.tokens, record.responses) == (4, 4)
    assert (record.start_s, record.first_token_s, record.last_token_s, record.end_s) == (
        0.0,
        1.0,
        1.9,
        2.0,
    )
    assert record.max_gap_s == pytest.approx(0.7)
    assert record.itl_s == pytest.approx(0.3)
    assert (meter.responses, meter.tokens) == (4, 4)


def test_a_last_data_response_flagged_final_ends_the_request():
    session, _, _ = session_for([(1.0, token()), (1.1, token(final=True))])
    record = asyncio.run(session.run(WorkItem(4, 2), "r"))
    assert (record.tokens, record.end_s, record.error) == (2, 1.1, None)


def test_an_error_from_the_model_ends_the_request_with_its_message():
    session, _, _ = session_for(
        [(1.0, token()), (1.5, response({}, final=True, error="max_tokens: must be <= 8"))]
    )
    record = asyncio.run(session.run(WorkItem(4, 2), "r"))
    assert record.error == "max_tokens: must be <= 8"
    assert record.tokens == 1 and not session.broken


def test_an_error_from_the_server_without_a_final_flag_ends_the_request():
    session, _, _ = session_for([(0.1, response({}, final=None, error="unknown model"))])
    record = asyncio.run(session.run(WorkItem(4, 2), "r"))
    assert record.error == "unknown model" and record.end_s == 0.1


def test_a_closed_stream_is_an_error_and_breaks_the_session():
    session, _, _ = session_for([(1.0, token()), (1.2, grpc.aio.EOF)])
    record = asyncio.run(session.run(WorkItem(4, 2), "r"))
    assert record.error == "the server closed the stream" and session.broken


def test_a_grpc_failure_is_an_error_and_breaks_the_session():
    failure = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "connection reset"
    )
    session, _, _ = session_for([(1.0, token()), (1.3, failure)])
    record = asyncio.run(session.run(WorkItem(4, 2), "r"))
    assert record.error == "gRPC UNAVAILABLE: connection reset"
    assert session.broken and record.tokens == 1
