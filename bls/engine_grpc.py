"""The engine model, called through Triton's own gRPC endpoint: one stream per engine request.

Why not Python-backend BLS calls (`InferenceRequest.exec(decoupled=True)`): with
requests in flight concurrently in one stub process they deadlock (python_backend 2.51,
and unchanged upstream since). A thread whose exec() returns holds the GIL while it waits
for the stub's response-iterator map lock; the thread delivering engine responses holds
that lock while it waits for one iterator's lock; and the reader of that iterator, woken
by the previous response, holds the iterator's lock while it waits for the GIL. Seen here
within seconds at 64 concurrent streams (the landed BLS, a thread per request, too). The
official BLS never meets it because it serves one request at a time.

So the BLS talks to `tensorrt_llm` the way any client does, over gRPC: one
ModelStreamInfer stream per engine request (Triton writes one stream's responses one
after another, so a stream shared by many requests holds them all up), all of them read
by asyncio tasks on the generation loop's one thread: every engine response of every
request is handled in one place, with no thread per request.
`triton_enable_empty_final_response` makes every request end with a response flagged
final. Stop requests (stop=true, same id) share one long-lived stream of their own.

The endpoint: `engine_grpc_url`, or "auto": the gRPC port of the tritonserver that runs
this model, read from its command line (the stub's parent process), else localhost:8001.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bls.engine_io import EngineResponse, EngineRow, cancel_inputs, engine_rows

logger = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_GRPC_PORT = 8001
# Long prompts and outputs: no message size limit of our own.
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class EngineEndpointError(ValueError):
    """engine_grpc_url cannot be used (a configuration mistake, found at model load)."""


def resolve_engine_url(setting: str, server_cmdline: Sequence[str] | None = None) -> str:
    """`engine_grpc_url` as host:port. "auto": from the server's command line."""
    setting = setting.strip()
    if setting and setting != AUTO:
        host, _, port = setting.rpartition(":")
        if not host or not port.isdigit():
            raise EngineEndpointError(
                f"engine_grpc_url must be host:port (or {AUTO!r}), got {setting!r}"
            )
        return setting
    args = parent_server_cmdline() if server_cmdline is None else list(server_cmdline)
    options = _options(args)
    if options.get("allow-grpc", "true").lower() in ("false", "0", "no"):
        raise EngineEndpointError(
            "the BLS calls tensorrt_llm over the server's gRPC endpoint, which this "
            "tritonserver has turned off (--allow-grpc=false); turn it on, or set "
            "engine_grpc_url to a server that has it"
        )
    if options.get("grpc-use-ssl", "false").lower() in ("true", "1", "yes"):
        raise EngineEndpointError(
            "the server's gRPC endpoint uses SSL (--grpc-use-ssl), which the BLS's engine "
            "client does not speak; set engine_grpc_url to a plain-text gRPC endpoint"
        )
    port = options.get("grpc-port", str(DEFAULT_GRPC_PORT))
    address = options.get("grpc-address", "0.0.0.0")
    host = "127.0.0.1" if address in ("0.0.0.0", "", "::", "[::]") else address
    return f"{host}:{port}"


def parent_server_cmdline() -> list[str]:
    """The command line of the process that started this stub (tritonserver), if any."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _options(args: Sequence[str]) -> dict[str, str]:
    """--name=value and --name value options, by name (without the dashes)."""
    options: dict[str, str] = {}
    for index, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, equals, value = arg[2:].partition("=")
        if not equals and index + 1 < len(args) and not args[index + 1].startswith("--"):
            value = args[index + 1]
        options[name] = value
    return options


@dataclass
class EngineCall:
    """One engine request in flight."""

    request_id: str
    on_response: Callable[[EngineResponse], None]
    on_end: Callable[[BaseException | None], None]
    task: asyncio.Task | None = None


class GrpcEngineClient:
    """Engine requests over gRPC. `start` and `stop` may be called from any thread; the
    callbacks run on the event loop's thread (the generation loop)."""

    def __init__(self, url: str, model_name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.model_name = model_name
        self._loop = loop
        self._calls: dict[str, EngineCall] = {}
        self._stops: asyncio.Queue | None = None  # the stop stream's outgoing requests
        self._channel = None
        self._closed = False

    # -- any thread ----------------------------------------------------------------------
    def start(
        self,
        request_id: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        on_response: Callable[[EngineResponse], None],
        on_end: Callable[[BaseException | None], None],
    ) -> None:
        message = self._message(request_id, inputs, outputs)
        call = EngineCall(request_id, on_response, on_end)
        self._loop.call_soon_threadsafe(self._begin, call, message)

    def stop(self, request_id: str) -> None:
        message = self._message(request_id, cancel_inputs(), ("output_ids",))
        self._loop.call_soon_threadsafe(self._send_stop, message)

    def cancel(self, request_id: str) -> None:
        """On the loop thread: give the request up. Its stream is cancelled (Triton then
        cancels the request in the engine, as for any client that leaves); on_end follows."""
        call = self._calls.get(request_id)
        if call is not None and call.task is not None:
            call.task.cancel()

    def close(self) -> None:
        """End every stream (from any thread but the loop's); calls in flight end failed."""
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        future.result(timeout=10)

    # -- the loop thread -----------------------------------------------------------------
    def _begin(self, call: EngineCall, message) -> None:
        if self._closed:
            call.on_end(ConnectionError("the model is shutting down"))
            return
        if call.request_id in self._calls:
            call.on_end(RuntimeError(f"engine request id {call.request_id} is already in use"))
            return
        self._calls[call.request_id] = call
        call.task = self._loop.create_task(self._run(call, message))
        self._stop_stream()  # open before it is needed: a stop must not wait for a connect

    async def _run(self, call: EngineCall, message) -> None:
        """One request's stream: send it, read every response until the stream ends."""
        error: BaseException | None = None
        stream = None
        try:
            stream = self._stub().ModelStreamInfer(_once(message))
            async for reply in stream:
                self._deliver(call, reply)
        except asyncio.CancelledError:
            error = ConnectionError("the model is shutting down")
        except Exception as failure:
            error = ConnectionError(
                f"the stream to {self.model_name!r} at {self.url} (engine_grpc_url) "
                f"failed: {_describe(failure)}"
            )
            if stream is not None:
                stream.cancel()  # Triton then cancels the request if it still runs
        finally:
            self._calls.pop(call.request_id, None)
            call.on_end(error)

    def _deliver(self, call: EngineCall, reply) -> None:
        if reply.error_message:
            # Triton refuses a request with an error and no final flag; the engine's own
            # errors come flagged final. Either way the request is over.
            call.on_response(
                EngineResponse(error=reply.error_message, error_code="INTERNAL", final=True)
            )
            return
        response = reply.infer_response
        final = response.parameters["triton_final_response"].bool_param
        try:
            rows = _single_row(response)
            if rows is None:
                rows = engine_rows(_tensors(response)) if response.outputs else ()
            engine_response = EngineResponse(rows=rows, final=final)
        except Exception as error:
            engine_response = EngineResponse(
                error=f"model {self.model_name!r} sent a response that cannot be read: {error}",
                error_code="INTERNAL",
                final=final,
            )
        call.on_response(engine_response)

    def _send_stop(self, message) -> None:
        if not self._closed:
            self._stop_stream().put_nowait(message)

    def _stop_stream(self) -> asyncio.Queue:
        if self._stops is None:
            self._stops = asyncio.Queue()
            self._loop.create_task(self._run_stop_stream(self._stops))
        return self._stops

    async def _run_stop_stream(self, stops: asyncio.Queue) -> None:
        try:
            async for reply in self._stub().ModelStreamInfer(_drain(stops)):
                if reply.error_message:
                    logger.warning("the engine refused a stop request: %s", reply.error_message)
        except Exception as error:
            logger.warning("the stop stream to %s ended: %s", self.url, _describe(error))
        finally:
            if self._stops is stops:
                self._stops = None

    def _stub(self):
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.url, options=_CHANNEL_OPTIONS)
        return service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def _close(self) -> None:
        self._closed = True
        for call in list(self._calls.values()):
            if call.task is not None:
                call.task.cancel()
        if self._stops is not None:
            await self._stops.put(None)
        await asyncio.sleep(0)  # let the cancelled calls end
        if self._channel is not None:
            await self._channel.close()

    def _message(self, request_id: str, inputs: Mapping[str, np.ndarray], outputs):
        from tritonclient.grpc import service_pb2
        from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

        message = service_pb2.ModelInferRequest(model_name=self.model_name, id=request_id)
        message.parameters["triton_enable_empty_final_response"].bool_param = True
        for name, value in inputs.items():
            array = np.asarray(value)
            tensor = message.inputs.add()
            tensor.name = name
            tensor.shape.extend(array.shape)
            if array.dtype.kind in "OSU":  # BYTES: each element length-prefixed
                tensor.datatype = "BYTES"
                message.raw_input_contents.append(serialize_byte_tensor(array).item())
            else:
                tensor.datatype = np_to_triton_dtype(array.dtype)
                message.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
        for name in outputs:
            message.outputs.add().name = name
        return message


_DTYPES = {
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT64": np.uint64,
    "FP32": np.float32,
    "FP16": np.float16,
    "BOOL": np.bool_,
}


_INT32 = struct.Struct("<i")


def _single_row(response) -> tuple[EngineRow, ...] | None:
    """The common response (one sequence: output_ids and sequence_length only), read
    without numpy: a third of the generic path's cost, paid for every token. None when
    the response is anything else."""
    outputs = response.outputs
    if len(outputs) != 2:
        return None
    ids, lengths = outputs
    if (
        ids.name != "output_ids"
        or lengths.name != "sequence_length"
        or ids.datatype != "INT32"
        or lengths.datatype != "INT32"
        or len(lengths.shape) != 2
        or lengths.shape[0] != 1
    ):
        return None
    raw_ids, raw_length = response.raw_output_contents
    length = _INT32.unpack(raw_length)[0]
    if not 0 <= length <= len(raw_ids) // 4:
        raise ValueError(f"sequence_length {length} does not fit output_ids {list(ids.shape)}")
    return (EngineRow(0, 0, struct.unpack_from(f"<{length}i", raw_ids)),)


def _tensors(response) -> dict[str, np.ndarray]:
    tensors = {}
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        dtype = _DTYPES.get(output.datatype)
        if dtype is None:
            raise ValueError(f"output {output.name} has unsupported datatype {output.datatype}")
        tensors[output.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(output.shape))
    return tensors


async def _once(message):
    """A request stream of one message: the client's side closes once it is sent, and
    Triton ends the stream after the request's final response."""
    yield message


async def _drain(queue: asyncio.Queue):
    while True:
        message = await queue.get()
        if message is None:
            return
        yield message


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "the server closed it"
    details = getattr(error, "details", None)
    if callable(details):
        try:
            return f"{error.code().name}: {details()}"  # type: ignore[attr-defined]
        except Exception:
            pass
    return repr(error)
