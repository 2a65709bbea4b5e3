"""`tensorrt_llm_bls` over Triton gRPC streaming, with the asyncio client.

One gRPC stream per request: the request goes out, the stream's write side closes, and
Triton ends the stream once the request's last response is sent. `BlsStream.cancel()`
before that cancels the gRPC call, which Triton turns into a cancelled request (the BLS
then stops the engine). The stream asks for `triton_grpc_error`, so an error ends the
stream with a gRPC status (INVALID_ARGUMENT, UNAVAILABLE, ...) instead of a bare message:
that status decides the HTTP status the client gets.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from bls.client import grpc_inputs

logger = logging.getLogger(__name__)

# Triton closes a stream with the error's gRPC status when the client sends this header.
_STATUS_ON_ERROR = {"triton_grpc_error": "true"}
_NUMERIC = {"INT32": np.int32, "UINT32": np.uint32, "INT64": np.int64, "FP32": np.float32}


class BackendError(Exception):
    """Triton refused or failed the request; `status` is the gRPC status name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class BlsRow:
    """One sequence's part of one BLS response."""

    batch_index: int
    sequence_index: int
    text: str
    finish_reason: str  # "" until the sequence's last response
    num_input_tokens: int
    num_output_tokens: int  # tokens this response adds (not a running total)
    log_probs: tuple[float, ...] | None


@dataclass(frozen=True)
class BlsResponse:
    rows: tuple[BlsRow, ...]
    final: bool


def decode_response(response) -> BlsResponse:
    """A `ModelInferResponse` of tensorrt_llm_bls as rows (one pass over its outputs)."""
    arrays: dict[str, np.ndarray] = {}
    raw = response.raw_output_contents
    for index, output in enumerate(response.outputs):
        if output.datatype == "BYTES":
            arrays[output.name] = deserialize_bytes_tensor(raw[index])
        elif output.name == "output_log_probs":
            arrays[output.name] = np.frombuffer(raw[index], np.float32).reshape(output.shape[0], -1)
        elif output.datatype in _NUMERIC:
            arrays[output.name] = np.frombuffer(raw[index], _NUMERIC[output.datatype])
    final = response.parameters["triton_final_response"].bool_param
    texts = arrays.get("text_output")
    if texts is None:  # an empty final response: only the FINAL flag
        return BlsResponse((), final)
    rows = []
    for row, text in enumerate(texts):
        outputs_tokens = _int(arrays, "num_output_tokens", row)
        log_probs = None
        if "output_log_probs" in arrays:
            # Rows are padded to the longest; this row's own are its first tokens.
            log_probs = tuple(arrays["output_log_probs"][row, :outputs_tokens].tolist())
        rows.append(
            BlsRow(
                batch_index=_int(arrays, "batch_index", row),
                sequence_index=_int(arrays, "sequence_index", row),
                text=text.decode("utf-8"),
                finish_reason=arrays["finish_reason"][row].decode("utf-8"),
                num_input_tokens=_int(arrays, "num_input_tokens", row),
                num_output_tokens=outputs_tokens,
                log_probs=log_probs,
            )
        )
    return BlsResponse(tuple(rows), final)


def _int(arrays: Mapping[str, np.ndarray], name: str, row: int) -> int:
    values = arrays.get(name)
    return 0 if values is None else int(values[row])


class BlsStream:
    """The responses of one request; `cancel()` before the end cancels the request."""

    def __init__(self, call) -> None:
        self._call = call
        self._done = False

    def __aiter__(self) -> AsyncIterator[BlsResponse]:
        return self

    async def __anext__(self) -> BlsResponse:
        if self._done:
            raise StopAsyncIteration
        try:
            result, error = await self._call.__anext__()
        except StopAsyncIteration:
            self._done = True
            raise
        except grpc.aio.AioRpcError as rpc_error:
            self._done = True
            raise BackendError(rpc_error.code().name, rpc_error.details() or "") from None
        if error is not None:  # a server without triton_grpc_error support
            self._done = True
            raise BackendError("UNKNOWN", _message(error))
        response = decode_response(result.get_response())
        self._done = response.final
        return response

    def cancel(self) -> None:
        """Cancel the request unless it has ended; safe to call any number of times."""
        if not self._done:
            self._done = True
            self._call.cancel()


def _message(error: InferenceServerException) -> str:
    return error.message() if hasattr(error, "message") else str(error)


class TritonBls:
    """gRPC clients for one or more Triton replicas; requests go round-robin."""

    def __init__(self, urls: Sequence[str], model: str) -> None:
        if not urls:
            raise ValueError("at least one Triton gRPC URL is needed")
        self.urls = tuple(urls)
        self.model = model
        # Created inside the running event loop (grpc.aio channels belong to one loop).
        self._clients = [grpcaio.InferenceServerClient(url) for url in self.urls]
        self._next = itertools.cycle(self._clients)

    def open(self, inputs: Mapping[str, np.ndarray], request_id: str) -> BlsStream:
        request = {
            "model_name": self.model,
            "inputs": grpc_inputs(inputs),
            "request_id": request_id,
        }

        async def one_request():
            yield request

        client = next(self._next)
        return BlsStream(client.stream_infer(one_request(), headers=_STATUS_ON_ERROR))

    async def ready(self) -> dict[str, str]:
        """URL -> "ready", or why not, for each replica."""
        states = {}
        for url, client in zip(self.urls, self._clients, strict=True):
            try:
                if not await client.is_server_ready(client_timeout=2):
                    states[url] = "server not ready"
                elif not await client.is_model_ready(self.model, client_timeout=2):
                    states[url] = f"model {self.model} not ready"
                else:
                    states[url] = "ready"
            except InferenceServerException as error:
                states[url] = f"unreachable: {_message(error)}"
        return states

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
