"""`GrpcEngineClient` over real gRPC streams, against an in-process server that plays a
script: a response that cannot be read, a stream that breaks off, a call given up.

The server speaks Triton's ModelStreamInfer with tritonclient's own protobuf classes;
everything on the client side is the code the BLS runs.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bls.engine_grpc import GrpcEngineClient
from bls.engine_io import EngineResponse
from bls.loop import GenerationLoop, new_event_loop
from serving_common.config import ConfigError

Script = Callable[[grpc.aio.ServicerContext], AsyncIterator[service_pb2.ModelStreamInferResponse]]


def reply(output_ids: np.ndarray, final: bool = False) -> service_pb2.ModelStreamInferResponse:
    response = service_pb2.ModelInferResponse(model_name="tensorrt_llm", id="1")
    response.parameters["triton_final_response"].bool_param = final
    for name, array in (
        ("output_ids", output_ids),
        ("sequence_length", np.array([[output_ids.size]], np.int32)),
    ):
        datatype = {np.dtype(np.int32): "INT32", np.dtype(np.float32): "FP32"}[array.dtype]
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return service_pb2.ModelStreamInferResponse(infer_response=response)


def token(value: int, final: bool = False) -> service_pb2.ModelStreamInferResponse:
    return reply(np.array([[[value]]], np.int32), final)


class ScriptedServer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Answers every generation request with `script`; records what happened."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.cancelled = threading.Event()  # a call ended by the client's cancel

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            if "stop" in {tensor.name for tensor in request.inputs}:
                continue
            try:
                async for response in self.script(context):
                    yield response
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return


class Harness:
    """A scripted server and a GrpcEngineClient on one generation loop."""

    def __init__(self, script: Script, event_loop_kind: str) -> None:
        self.loop = GenerationLoop(lambda active: None, event_loop_kind=event_loop_kind)
        self.loop.start()
        self.servicer = ScriptedServer(script)
        self.server, port = self._run(self._serve())
        self.client = GrpcEngineClient(f"127.0.0.1:{port}", "tensorrt_llm", self.loop.event_loop)
        self.responses: list[EngineResponse] = []
        self.ended = threading.Event()
        self.end_error: BaseException | None = None

    async def _serve(self):
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop.event_loop).result(10)

    def start(self) -> None:
        self.client.start(
            "1",
            {"input_ids": np.array([[1, 2]], np.int32)},
            ("output_ids", "sequence_length"),
            self.responses.append,
            self._on_end,
        )

    def _on_end(self, error: BaseException | None) -> None:
        self.end_error = error
        self.ended.set()

    def close(self) -> None:
        self.client.close()
        self._run(self.server.stop(0))
        self.loop.close()


@pytest.fixture(params=["uvloop", "asyncio"])  # event_loop: every stream test on both
def harness(request):
    made: list[Harness] = []

    def make(script: Script) -> Harness:
        made.append(Harness(script, request.param))
        return made[-1]

    yield make
    for each in made:
        each.close()


def tokens(responses: list[EngineResponse]) -> list[int]:
    return [t for response in responses for row in response.rows for t in row.token_ids]


def test_a_response_that_cannot_be_read_is_an_error_and_the_stream_is_read_to_its_end(harness):
    async def script(context):
        yield token(5)
        yield reply(np.array([5.0], np.float32))  # FP32, one-dimensional
        yield token(6)
        yield token(7, final=True)

    run = harness(script)
    run.start()
    assert run.ended.wait(10) and run.end_error is None
    errors = [response for response in run.responses if response.error]
    assert len(errors) == 1 and errors[0].error_code == "INTERNAL"
    assert errors[0].error == (
        "model 'tensorrt_llm' sent a response that cannot be read: output_ids must be "
        "integer token ids shaped [batch, beams, tokens], got float32 [1]"
    )
    assert tokens(run.responses) == [5, 6, 7]  # nothing after it was left unread
    assert run.responses[-1].final


def test_a_stream_that_breaks_off_ends_the_call_with_the_status(harness):
    async def script(context):
        yield token(5)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the engine process died")

    run = harness(script)
    run.start()
    assert run.ended.wait(10)
    assert tokens(run.responses) == [5]
    assert isinstance(run.end_error, ConnectionError)
    assert "UNAVAILABLE: the engine process died" in str(run.end_error)


def test_cancel_gives_up_a_silent_call_and_the_server_sees_it_cancelled(harness):
    async def script(context):
        yield token(5)
        await asyncio.sleep(30)  # silent
        yield token(6, final=True)

    run = harness(script)
    run.start()
    deadline = time.monotonic() + 10
    while not run.responses:  # until the call is under way
        assert time.monotonic() < deadline and not run.ended.wait(0.01)
    run.loop.call_soon(run.client.cancel, "1")
    assert run.ended.wait(5) and run.end_error is not None
    assert run.servicer.cancelled.wait(5)
    assert tokens(run.responses) == [5]


@pytest.mark.parametrize(
    ("kind", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_event_loop_is_the_one_configured(kind, module):
    loop = new_event_loop(kind)
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    loop = new_event_loop("auto")
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
    with pytest.raises(ConfigError, match="event_loop is uvloop, which does not import here"):
        new_event_loop("uvloop")
