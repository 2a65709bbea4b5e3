"""The models a run can drive: their request message, and how a response counts tokens.

Each message is built once per request shape (`WorkItem`) as a raw KServe
`ModelInferRequest`; the client changes only its id before each send. Parsing is
minimal: one output's raw bytes, read as int32, per response.

- `tensorrt_llm_bls` (text in): text_input, max_tokens, stream=true and
  return_num_output_tokens=true; tokens are the sum of `num_output_tokens` over the
  stream's responses (each response carries the tokens it adds).
- `tensorrt_llm` (the engine alone, token ids in): input_ids, input_lengths,
  request_output_len, streaming=true, asking for output_ids and sequence_length (what
  the BLS asks the engine for); tokens are the sum of `sequence_length` (each streamed
  response carries the ids of its own step).
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from typing import Protocol

import numpy as np
from tritonclient.grpc import service_pb2

from benchmarks.workload import WorkItem

BLS_MODEL = "tensorrt_llm_bls"
ENGINE_MODEL = "tensorrt_llm"

# Ends every stream with a response flagged `triton_final_response` (an empty one when
# the model's last response carried no data): the only end-of-request signal that
# works the same for every decoupled model.
EMPTY_FINAL = "triton_enable_empty_final_response"
FINAL = "triton_final_response"

# The BLS prompt's words: common English words, about one token each in the usual
# vocabularies, so N words is roughly an N-token prompt.
PROMPT_TEXT = (
    "the quick brown fox jumps over the lazy dog while a small bird sings in the tall green "
    "tree and the old man reads his book by the river"
)
# The engine's prompt ids: small ids every vocabulary has.
FIRST_PROMPT_ID = 100
PROMPT_ID_SPAN = 500


class Target(Protocol):
    model: str

    def message(self, item: WorkItem) -> service_pb2.ModelInferRequest:
        """The request for `item`; the same object for the same item (reused)."""

    def count_tokens(self, response: service_pb2.ModelInferResponse) -> int:
        """Tokens this response adds to its stream (0 for one without outputs)."""


def int32_sum(raw: bytes) -> int:
    """Sum of the little-endian int32 values in a raw output (usually just one)."""
    if len(raw) == 4:
        return int.from_bytes(raw, "little", signed=True)
    return int(np.frombuffer(raw, dtype="<i4").sum())


def raw_output(response: service_pb2.ModelInferResponse, name: str) -> bytes | None:
    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            return response.raw_output_contents[index]
    return None


def bytes_tensor(value: str) -> bytes:
    """One BYTES element as Triton's raw encoding: 4-byte little-endian length, then data."""
    data = value.encode("utf-8")
    return struct.pack("<I", len(data)) + data


def new_request(model: str) -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model)
    message.parameters[EMPTY_FINAL].bool_param = True
    return message


def add_input(
    message: service_pb2.ModelInferRequest,
    name: str,
    datatype: str,
    shape: list[int],
    raw: bytes,
) -> None:
    tensor = message.inputs.add()
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(shape)
    message.raw_input_contents.append(raw)


def int32_raw(values: list[int]) -> bytes:
    return np.asarray(values, dtype="<i4").tobytes()


def bool_raw(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def prompt_text(words: int) -> str:
    vocabulary = PROMPT_TEXT.split(" ")
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


class _Cached(ABC):
    """Keeps one message per WorkItem (fixed lengths: exactly one message)."""

    def __init__(self) -> None:
        self._messages: dict[WorkItem, service_pb2.ModelInferRequest] = {}

    def message(self, item: WorkItem) -> service_pb2.ModelInferRequest:
        message = self._messages.get(item)
        if message is None:
            message = self._messages[item] = self.build(item)
        return message

    @abstractmethod
    def build(self, item: WorkItem) -> service_pb2.ModelInferRequest: ...


class BlsTarget(_Cached):
    """`tensorrt_llm_bls`: text in; tokens counted from num_output_tokens."""

    def __init__(self, model: str = BLS_MODEL, prompt: str | None = None) -> None:
        super().__init__()
        self.model = model
        self._prompt = prompt  # a fixed text instead of `prompt_len` words

    def build(self, item: WorkItem) -> service_pb2.ModelInferRequest:
        message = new_request(self.model)
        text = self._prompt if self._prompt is not None else prompt_text(item.prompt_len)
        add_input(message, "text_input", "BYTES", [1, 1], bytes_tensor(text))
        add_input(message, "max_tokens", "INT32", [1, 1], int32_raw([item.output_len]))
        add_input(message, "stream", "BOOL", [1, 1], bool_raw(True))
        add_input(message, "return_num_output_tokens", "BOOL", [1, 1], bool_raw(True))
        return message

    def count_tokens(self, response: service_pb2.ModelInferResponse) -> int:
        raw = raw_output(response, "num_output_tokens")
        return 0 if raw is None else int32_sum(raw)


class EngineTarget(_Cached):
    """`tensorrt_llm` alone: token ids in; tokens counted from sequence_length."""

    def __init__(self, model: str = ENGINE_MODEL) -> None:
        super().__init__()
        self.model = model

    def build(self, item: WorkItem) -> service_pb2.ModelInferRequest:
        message = new_request(self.model)
        ids = [FIRST_PROMPT_ID + i % PROMPT_ID_SPAN for i in range(item.prompt_len)]
        add_input(message, "input_ids", "INT32", [1, len(ids)], int32_raw(ids))
        add_input(message, "input_lengths", "INT32", [1, 1], int32_raw([len(ids)]))
        add_input(message, "request_output_len", "INT32", [1, 1], int32_raw([item.output_len]))
        add_input(message, "streaming", "BOOL", [1, 1], bool_raw(True))
        for name in ("output_ids", "sequence_length"):
            message.outputs.add().name = name
        return message

    def count_tokens(self, response: service_pb2.ModelInferResponse) -> int:
        raw = raw_output(response, "sequence_length")
        return 0 if raw is None else int32_sum(raw)


def make_target(model: str, prompt: str | None = None) -> Target:
    """The target for a model name: the engine's contract for `tensorrt_llm`, else the BLS's."""
    if model == ENGINE_MODEL:
        if prompt is not None:
            raise ValueError("--prompt is text: the engine model takes token ids")
        return EngineTarget(model)
    return BlsTarget(model, prompt=prompt)
