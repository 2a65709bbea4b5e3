"""The BLS side of the `tensorrt_llm` tensor contract: what we send, what comes back.

Plain numpy in and out, so it is unit-tested without Triton; `bls.triton_metrics` moves these
arrays through pb_utils. The contract is TensorRT-LLM's C++ `tensorrt_llm` model's: its
config is model_repository/tensorrt_llm/config.pbtxt.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bls.request_types import ClientRequest
from serving_common.word_lists import batch_word_lists, encode_word_list


@dataclass(frozen=True)
class EncodedPrompts:
    """What preprocessing made of a request: one entry per prompt row."""

    input_ids: tuple[tuple[int, ...], ...]
    end_id: int
    pad_id: int
    stop_words: tuple[tuple[int, ...], ...] = ()
    bad_words: tuple[tuple[int, ...], ...] = ()
    embedding_bias: np.ndarray | None = None  # [V] float32
    # Stop words that are one special token, by id: skip_special_tokens removes them from
    # the text, so they are recognised by id rather than by text.
    special_stop_words: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineRow:
    """One sequence's part of one engine response."""

    batch_index: int
    sequence_index: int
    token_ids: tuple[int, ...]
    log_probs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class EngineResponse:
    rows: tuple[EngineRow, ...] = ()
    error: str | None = None
    error_code: str | None = None  # a pb_utils.TritonError code name, e.g. "INVALID_ARG"
    final: bool = False


_request_numbers = itertools.count(1)


def new_engine_request_id() -> str:
    """A request id unique in this server: numeric, as the C++ backend's stop lookup needs."""
    # The process id keeps two BLS instances (processes) from handing out the same id.
    return str((os.getpid() << 32) | (next(_request_numbers) & 0xFFFFFFFF))


def _column(values: Sequence[object], dtype: type) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(len(values), 1)


def engine_inputs(request: ClientRequest, prompts: EncodedPrompts) -> dict[str, np.ndarray]:
    """The engine request for all prompt rows: always streaming, so stop strings can act."""
    rows = len(prompts.input_ids)
    longest = max(len(ids) for ids in prompts.input_ids)
    input_ids = np.full((rows, longest), prompts.pad_id, dtype=np.int32)
    for row, ids in enumerate(prompts.input_ids):
        input_ids[row, : len(ids)] = ids

    def repeat(value: object, dtype: type) -> np.ndarray:
        return _column([value] * rows, dtype)

    inputs: dict[str, np.ndarray] = {
        "input_ids": input_ids,
        "input_lengths": _column([len(ids) for ids in prompts.input_ids], np.int32),
        "request_output_len": repeat(request.max_tokens, np.int32),
        "streaming": repeat(True, np.bool_),
        "end_id": repeat(prompts.end_id, np.int32),
        "pad_id": repeat(prompts.pad_id, np.int32),
    }
    for name, words in (
        ("stop_words_list", prompts.stop_words),
        ("bad_words_list", prompts.bad_words),
    ):
        if words:
            inputs[name] = batch_word_lists([encode_word_list(words)] * rows)
    if prompts.embedding_bias is not None:
        inputs["embedding_bias"] = np.tile(prompts.embedding_bias.astype(np.float32), (rows, 1))

    sampling = request.sampling
    # Only what the client gave: left out, the engine applies its own defaults. Names as
    # the C++ backend declares them from Triton 25.05 on (older backends, before 25.05:
    # min_length, random_seed).
    optional: list[tuple[str, object, type]] = [
        ("runtime_top_k", sampling.top_k, np.int32),
        ("runtime_top_p", sampling.top_p, np.float32),
        ("temperature", sampling.temperature, np.float32),
        ("len_penalty", sampling.length_penalty, np.float32),
        ("repetition_penalty", sampling.repetition_penalty, np.float32),
        ("presence_penalty", sampling.presence_penalty, np.float32),
        ("frequency_penalty", sampling.frequency_penalty, np.float32),
        ("min_tokens", sampling.min_tokens, np.int32),
        ("seed", sampling.seed, np.uint64),
    ]
    if sampling.num_return_sequences != 1:
        optional.append(("num_return_sequences", sampling.num_return_sequences, np.int32))
    if request.return_log_probs:
        optional.append(("return_log_probs", True, np.bool_))
    for name, value, dtype in optional:
        if value is not None:
            inputs[name] = repeat(value, dtype)
    if request.guide is not None:
        # The C++ backend's names; json has no guide text. Every row holds the same string,
        # which the C++ backend needs: it splits a BYTES input of B rows into B equal
        # byte ranges (tensorrtllm_backend v0.19.0 inflight_batcher_llm/src/utils.cc).
        inputs["guided_decoding_guide_type"] = repeat(
            request.guide.guide_type.value.encode("utf-8"), np.object_
        )
        if request.guide.text is not None:
            inputs["guided_decoding_guide"] = repeat(request.guide.text.encode("utf-8"), np.object_)
    if request.lora is not None:
        lora = request.lora
        inputs["lora_task_id"] = repeat(lora.task_id, np.uint64)
        if lora.weights is not None:
            inputs["lora_weights"] = np.stack([lora.weights] * rows)
        if lora.config is not None:
            inputs["lora_config"] = np.stack([lora.config] * rows)
    return inputs


def engine_outputs(request: ClientRequest, prompts: EncodedPrompts) -> tuple[str, ...]:
    """The outputs this request needs: every tensor asked for is built, moved and read for
    every token, so the indices and log probs are asked for only when they can matter."""
    outputs = ["output_ids", "sequence_length"]
    if len(prompts.input_ids) > 1 or request.sampling.num_return_sequences > 1:
        outputs += ["batch_index", "sequence_index"]
    if request.return_log_probs:
        outputs.append("output_log_probs")
    return tuple(outputs)


def cancel_inputs() -> dict[str, np.ndarray]:
    """A stop request's own inputs, per the contract (the request id says which to stop)."""
    return {
        "input_ids": np.zeros((1, 1), dtype=np.int32),
        "input_lengths": np.zeros((1, 1), dtype=np.int32),
        "request_output_len": np.zeros((1, 1), dtype=np.int32),
        "stop": np.ones((1, 1), dtype=np.bool_),
    }


class MalformedEngineResponse(ValueError):
    """An engine response whose tensors break the contract (it cannot be read)."""


def engine_rows(outputs: Mapping[str, np.ndarray | None]) -> tuple[EngineRow, ...]:
    """Split one engine response's tensors into per-sequence rows (beam 0 only).

    Raises MalformedEngineResponse for tensors outside the contract: read as they come,
    a float or flat `output_ids` would turn into tokens nobody generated.
    """
    output_ids = outputs.get("output_ids")
    if output_ids is None or output_ids.size == 0:
        return ()
    if output_ids.ndim != 3 or output_ids.dtype.kind not in "iu":
        raise MalformedEngineResponse(
            f"output_ids must be integer token ids shaped [batch, beams, tokens], got "
            f"{output_ids.dtype} {list(output_ids.shape)}"
        )
    lengths = outputs.get("sequence_length")
    lengths = (
        np.full(output_ids.shape[:2], output_ids.shape[-1])
        if lengths is None
        else np.asarray(lengths).reshape(output_ids.shape[0], -1)
    )
    batch_index = outputs.get("batch_index")
    sequence_index = outputs.get("sequence_index")
    log_probs = outputs.get("output_log_probs")
    rows = []
    for row in range(output_ids.shape[0]):
        length = int(lengths[row, 0])
        if not 0 <= length <= output_ids.shape[-1]:
            raise MalformedEngineResponse(
                f"sequence_length {length} does not fit output_ids {list(output_ids.shape)}"
            )
        row_log_probs = None
        if log_probs is not None:
            flat = np.asarray(log_probs).reshape(output_ids.shape[0], -1, log_probs.shape[-1])
            # The last `length` values are this response's tokens: TensorRT-LLM's C++
            # backend streams the log probs of every token so far, the reference engine
            # only those of the new tokens; both end with the new ones.
            total = flat.shape[-1]
            row_log_probs = tuple(float(x) for x in flat[row, 0, total - length : total])
        rows.append(
            EngineRow(
                batch_index=int(np.asarray(batch_index).reshape(-1)[row])
                if batch_index is not None
                else row,
                sequence_index=(
                    int(np.asarray(sequence_index).reshape(-1)[row])
                    if sequence_index is not None
                    else 0
                ),
                token_ids=tuple(int(t) for t in output_ids[row, 0, :length]),
                log_probs=row_log_probs,
            )
        )
    return tuple(rows)
