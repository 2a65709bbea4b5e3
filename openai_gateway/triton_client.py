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
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from bls.client import grpc_inputs

logger = logging.getLogger(__name__)

# Triton closes a stream with the error's gRPC status when the client sends this header.
_STATUS_ON_ERROR = {"triton_grpc_error": "true"}


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
    """A `ModelInferResponse` of tensorrt_llm_bls as rows (one pass over its outputs).

    Plain `struct` reads, no numpy: a streamed response is one row of a few scalars, and
    this runs once per token per client.
    """
    columns: dict[str, tuple] = {}
    raw = response.raw_output_contents
    log_probs = None
    for index, output in enumerate(response.outputs):
        kind = _STRUCT_CODES.get(output.datatype)
        if output.datatype == "BYTES":
            columns[output.name] = _strings(raw[index])
        elif output.name == "output_log_probs":  # [rows, 1, T] FP32, rows padded to the longest
            values = struct.unpack_from(f"<{len(raw[index]) // 4}f", raw[index])
            width = len(values) // output.shape[0] if output.shape[0] else 0
            log_probs = [values[row * width : (row + 1) * width] for row in range(output.shape[0])]
        elif kind is not None:
            columns[output.name] = struct.unpack_from(f"<{output.shape[0]}{kind}", raw[index])
    final = response.parameters["triton_final_response"].bool_param
    texts = columns.get("text_output")
    if texts is None:  # an empty final response: only the FINAL flag
        return BlsResponse((), final)
    zeros = (0,) * len(texts)
    # A response in the middle of a sequence leaves out what has not changed: the finish
    # reason (empty until the sequence's last response) and, for a request of one
    # sequence, its indices (0).
    reasons = columns.get("finish_reason", (b"",) * len(texts))
    output_tokens = columns.get("num_output_tokens", zeros)
    rows = tuple(
        BlsRow(
            batch_index=columns.get("batch_index", zeros)[row],
            sequence_index=columns.get("sequence_index", zeros)[row],
            text=text.decode("utf-8"),
            finish_reason=reasons[row].decode("utf-8"),
            num_input_tokens=columns.get("num_input_tokens", zeros)[row],
            num_output_tokens=output_tokens[row],
            # A row's own log probs are its first num_output_tokens values.
            log_probs=None if log_probs is None else log_probs[row][: output_tokens[row]],
        )
        for row, text in enumerate(texts)
    )
    return BlsResponse(rows, final)


_STRUCT_CODES = {"INT32": "i", "UINT32": "I", "INT64": "q"}


def _strings(raw: bytes) -> list[bytes]:
    """A BYTES tensor: each element is a 4-byte little-endian length, then the bytes."""
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        values.append(raw[offset : offset + length])
        offset += length
    return values


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
