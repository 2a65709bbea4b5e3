"""Client responses as tensors: one row per sequence delta."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from bls.request_types import ClientRequest
from bls.sequence import SequenceDelta


class ResponseSink(Protocol):
    """The client's side of one request (a decoupled response sender in production)."""

    def send(self, outputs: Mapping[str, np.ndarray] | None, final: bool) -> None: ...

    def send_error(self, message: str, code: str) -> None:
        """One error response, together with FINAL."""
        ...

    def is_cancelled(self) -> bool: ...

    @property
    def requested_outputs(self) -> frozenset[str] | None:
        """The outputs the client asked for; None when it asked for none (all)."""
        ...


def _column(values: list[object], dtype: type) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(len(values), 1)


def _text(values: list[str]) -> np.ndarray:
    return _column([value.encode("utf-8") for value in values], np.object_)


def response_tensors(
    deltas: Sequence[SequenceDelta],
    request: ClientRequest,
    prompt_lengths: tuple[int, ...],
    wanted: frozenset[str] | None = None,
) -> dict[str, np.ndarray]:
    """One row per sequence; `batch_index` and `sequence_index` say which one it is.

    What a response carries: `text_output` always; `finish_reason` and `stop_reason` on
    the response that ends a sequence; `batch_index` and `sequence_index` when the
    request has several sequences, and on the response that ends one; the token counts
    and log probs when asked for. Every tensor is built, copied and serialized for every
    response (a string tensor in Python), so a streamed response in the middle of a
    sequence carries only what can have changed.

    `wanted`: the outputs the client asked for (None: all). Triton drops the others
    anyway; not building them saves work on every response.
    """

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    ends = any(delta.finish_reason for delta in deltas)
    several = request.batch_size > 1 or request.sampling.num_return_sequences > 1
    outputs = {}
    if want("text_output"):
        outputs["text_output"] = _text([d.text for d in deltas])
    if ends and want("finish_reason"):
        outputs["finish_reason"] = _text([d.finish_reason for d in deltas])
    if ends and want("stop_reason"):
        outputs["stop_reason"] = _text([d.stop_reason for d in deltas])
    if (ends or several) and want("batch_index"):
        outputs["batch_index"] = _column([d.batch_index for d in deltas], np.int32)
    if (ends or several) and want("sequence_index"):
        outputs["sequence_index"] = _column([d.sequence_index for d in deltas], np.int32)
    if request.return_num_input_tokens and want("num_input_tokens"):
        outputs["num_input_tokens"] = _column(
            [prompt_lengths[d.batch_index] for d in deltas], np.int32
        )
    if request.return_num_output_tokens and want("num_output_tokens"):
        outputs["num_output_tokens"] = _column([d.num_output_tokens for d in deltas], np.int32)
    if request.return_log_probs and (want("cum_log_probs") or want("output_log_probs")):
        outputs["cum_log_probs"] = _column([d.cum_log_prob for d in deltas], np.float32)
        longest = max((len(d.log_probs) for d in deltas), default=0)
        log_probs = np.zeros((len(deltas), 1, longest), dtype=np.float32)
        for row, delta in enumerate(deltas):
            log_probs[row, 0, : len(delta.log_probs)] = delta.log_probs
        outputs["output_log_probs"] = log_probs
    return outputs
