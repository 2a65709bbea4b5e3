"""The `tensorrt_llm` tensor contract: request tensors in, typed requests out, and
response tensors back, as `model_repository/tensorrt_llm/config.pbtxt` declares them.

Plain numpy in and out, no Triton: `model.py` reads each input with
`pb_utils.get_input_tensor_by_name(...).as_numpy()` and hands the dict to
`parse_request`. Every input carries the leading batch dimension B. Scalar inputs are
accepted as [B] (config `reshape: { shape: [ ] }`) or [B, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from reference_engine.types import (
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    DEFAULT_TOP_P_DECAY,
    DEFAULT_TOP_P_MIN,
    DEFAULT_TOP_P_RESET_ID,
    MAX_TOP_K,
    GenerationRequest,
    SamplingParams,
    SequenceSpec,
    StopRequest,
)
from reference_engine.words import normalize_words
from serving_common.errors import RequestError
from serving_common.guided_decoding import (
    GUIDE_INPUT,
    GUIDE_TYPE_INPUT,
    Guide,
    check_guide,
    parse_guide,
)
from serving_common.text import decode_utf8
from serving_common.word_lists import decode_word_list

# Inputs this engine honours (name -> numpy dtype kind it must have: i=int, u=uint,
# f=float, b=bool, O=strings). Names and dtypes follow TensorRT-LLM's
# tensorrt_llm/config.pbtxt.
SUPPORTED_INPUTS: dict[str, str] = {
    "input_ids": "i",
    "input_lengths": "i",
    "request_output_len": "i",
    "end_id": "i",
    "pad_id": "i",
    "stop_words_list": "i",
    "bad_words_list": "i",
    "embedding_bias": "f",
    "beam_width": "i",
    "num_return_sequences": "i",
    "temperature": "f",
    "runtime_top_k": "i",
    "runtime_top_p": "f",
    "runtime_top_p_min": "f",
    "runtime_top_p_decay": "f",
    "runtime_top_p_reset_ids": "i",
    "len_penalty": "f",
    "early_stopping": "b",
    "beam_search_diversity_rate": "f",
    "repetition_penalty": "f",
    "presence_penalty": "f",
    "frequency_penalty": "f",
    "min_tokens": "i",
    "seed": "u",
    "return_log_probs": "b",
    "exclude_input_in_output": "b",
    "streaming": "b",
    "stop": "b",
    GUIDE_TYPE_INPUT: "O",
    GUIDE_INPUT: "O",
    # Accepted only when false: the engine cannot return logits or perf metrics.
    "return_context_logits": "b",
    "return_generation_logits": "b",
    "return_perf_metrics": "b",
}

# Declared by the official config, refused here with UNSUPPORTED when given (a
# request that needs them would otherwise silently get a different generation).
UNSUPPORTED_INPUTS: dict[str, str] = {
    "draft_input_ids": "speculative decoding (draft tokens)",
    "draft_logits": "speculative decoding (draft logits)",
    "draft_acceptance_threshold": "speculative decoding (draft acceptance)",
    "prompt_embedding_table": "prompt tuning",
    "prompt_vocab_size": "prompt tuning",
    "lora_task_id": "LoRA",
    "lora_weights": "LoRA",
    "lora_config": "LoRA",
}

# Only meaningful for beam search; like TensorRT-LLM with beam_width 1, they have no
# effect here (accepted and checked for type so a typo'd tensor still fails).
BEAM_ONLY_INPUTS = ("len_penalty", "early_stopping", "beam_search_diversity_rate")

OUTPUT_NAMES = (
    "output_ids",
    "sequence_length",
    "cum_log_probs",
    "output_log_probs",
    "context_logits",
    "generation_logits",
    "batch_index",
    "sequence_index",
)

MAX_BEAM_WIDTH = 1


@dataclass(frozen=True)
class EngineLimits:
    """What the engine can take, for validation."""

    max_seq_len: int
    vocab_size: int | None = None
    # How refusals name the engine ("... is not supported by <engine_name>").
    engine_name: str = "the reference engine"


@dataclass(frozen=True)
class ContractDefaults:
    """Model-level defaults that requests may override."""

    exclude_input_in_output: bool = True


def parse_request(
    inputs: Mapping[str, np.ndarray],
    request_id: str,
    limits: EngineLimits,
    defaults: ContractDefaults = ContractDefaults(),
) -> GenerationRequest | StopRequest:
    """Turn one Triton request's tensors into a typed request, or raise RequestError
    (code INVALID_ARG, or UNSUPPORTED for what this engine cannot honour)."""
    _check_names_and_dtypes(inputs)
    if "stop" in inputs and bool(np.any(inputs["stop"])):
        if not request_id:
            raise RequestError(
                "stop",
                "stop=true needs the request id of the request to stop; this request has none",
            )
        return StopRequest(request_id=request_id)
    for name, feature in UNSUPPORTED_INPUTS.items():
        if name in inputs and np.asarray(inputs[name]).size > 0:
            raise RequestError(
                name, f"{feature} is not supported by {limits.engine_name}", code="UNSUPPORTED"
            )

    input_ids = _required(inputs, "input_ids")
    if input_ids.ndim != 2:
        raise RequestError(
            "input_ids", f"expected shape [batch, tokens], got {list(input_ids.shape)}"
        )
    batch, width = input_ids.shape
    if batch < 1:
        raise RequestError("input_ids", "batch size must be at least 1, got 0")
    reader = _ScalarReader(inputs, batch)

    for name in ("return_context_logits", "return_generation_logits", "return_perf_metrics"):
        if any(reader.bools(name, False)):
            raise RequestError(
                name, f"{limits.engine_name} cannot return this; send false", code="UNSUPPORTED"
            )
    for name in BEAM_ONLY_INPUTS:
        reader.values(name)  # shape check only

    lengths = reader.ints("input_lengths", width)
    output_lens = reader.ints("request_output_len", None, required=True)
    beam_widths = reader.ints("beam_width", 1)
    num_returns = reader.ints("num_return_sequences", 1)
    end_ids = reader.ints("end_id", None)
    pad_ids = reader.ints("pad_id", None)
    streaming_rows = reader.bools("streaming", False)
    log_prob_rows = reader.bools("return_log_probs", False)
    exclude_rows = reader.bools("exclude_input_in_output", defaults.exclude_input_in_output)
    sampling_rows = _sampling_rows(reader)
    stop_rows = _word_rows(inputs, "stop_words_list", batch, limits)
    bad_rows = _word_rows(inputs, "bad_words_list", batch, limits)
    bias_rows = _bias_rows(inputs, batch, limits)
    guide_rows = _guide_rows(reader)

    if len(set(streaming_rows)) > 1:
        raise RequestError("streaming", "all prompts of one request must agree on streaming")

    sequences: list[SequenceSpec] = []
    for b in range(batch):
        length = lengths[b]
        if length is None or not 1 <= length <= width:
            raise RequestError(
                "input_lengths",
                f"row {b}: length {length} must be between 1 and the input_ids width {width}",
            )
        prompt = tuple(int(t) for t in input_ids[b, :length])
        _check_token_range("input_ids", prompt, limits.vocab_size, b)
        max_new = output_lens[b]
        if max_new is None or max_new < 1:
            raise RequestError("request_output_len", f"row {b}: must be at least 1, got {max_new}")
        if length + max_new > limits.max_seq_len:
            raise RequestError(
                "request_output_len",
                f"row {b}: input length {length} + request_output_len {max_new} = "
                f"{length + max_new} exceeds max_seq_len {limits.max_seq_len}",
            )
        beam = beam_widths[b] or 1  # 0 means "no beam search", as in TensorRT-LLM
        if beam < 0:
            raise RequestError("beam_width", f"row {b}: must be at least 1, got {beam}")
        if beam > MAX_BEAM_WIDTH:
            raise RequestError(
                "beam_width",
                f"row {b}: {beam} exceeds max_beam_width {MAX_BEAM_WIDTH} ({limits.engine_name} "
                "does greedy decoding and sampling only)",
                code="UNSUPPORTED",
            )
        n_return = num_returns[b] or 1
        if n_return < 1:
            raise RequestError(
                "num_return_sequences", f"row {b}: must be at least 1, got {n_return}"
            )
        end_id = end_ids[b]
        if end_id is not None and end_id < 0:
            end_id = None  # a negative end id means "no end id"
        if end_id is not None and limits.vocab_size is not None and end_id >= limits.vocab_size:
            raise RequestError(
                "end_id", f"row {b}: {end_id} is outside the vocabulary [0, {limits.vocab_size})"
            )
        for s in range(n_return):
            sequences.append(
                SequenceSpec(
                    batch_index=b,
                    sequence_index=s,
                    prompt=prompt,
                    max_new_tokens=max_new,
                    end_id=end_id,
                    pad_id=pad_ids[b],
                    stop_words=stop_rows[b],
                    bad_words=bad_rows[b],
                    embedding_bias=bias_rows[b],
                    sampling=sampling_rows[b],
                    return_log_probs=log_prob_rows[b],
                    exclude_input_in_output=exclude_rows[b],
                    guide=guide_rows[b],
                )
            )
    return GenerationRequest(
        request_id=request_id, streaming=streaming_rows[0], sequences=tuple(sequences)
    )


def response_tensors(
    spec: SequenceSpec,
    token_ids: Sequence[int],
    log_probs: Sequence[float] | None = None,
    cum_log_prob: float | None = None,
) -> dict[str, np.ndarray]:
    """One response for one sequence: [1, beams=1, T] rows plus its indices.

    `log_probs` are those of the generated tokens in `token_ids` (never of the prompt);
    they are sent only when the request asked for return_log_probs.
    """
    tensors = {
        "output_ids": np.asarray(token_ids, dtype=np.int32).reshape(1, 1, -1),
        "sequence_length": np.array([[len(token_ids)]], dtype=np.int32),
        "batch_index": np.array([[spec.batch_index]], dtype=np.int32),
        "sequence_index": np.array([[spec.sequence_index]], dtype=np.int32),
    }
    if spec.return_log_probs:
        values = list(log_probs or [])
        tensors["output_log_probs"] = np.asarray(values, dtype=np.float32).reshape(1, 1, -1)
        total = cum_log_prob if cum_log_prob is not None else float(sum(values))
        tensors["cum_log_probs"] = np.array([[total]], dtype=np.float32)
    return tensors


# --- helpers -----------------------------------------------------------------------


def _check_names_and_dtypes(inputs: Mapping[str, np.ndarray]) -> None:
    for name, value in inputs.items():
        if name in UNSUPPORTED_INPUTS:
            continue
        kind = SUPPORTED_INPUTS.get(name)
        if kind is None:
            raise RequestError(name, "is not an input of the tensorrt_llm model")
        actual = np.asarray(value).dtype.kind
        ok = (
            actual == kind
            or (kind == "u" and actual == "i")
            or (kind == "i" and actual == "u")
            or (kind == "O" and actual in "SU")  # bytes or str arrays, as tests build them
        )
        if not ok:
            raise RequestError(name, f"has dtype {np.asarray(value).dtype}, expected kind {kind}")


def _required(inputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in inputs:
        raise RequestError(name, "is required")
    return np.asarray(inputs[name])


class _ScalarReader:
    """Reads per-prompt scalar inputs ([B] or [B, 1]) into Python lists of length B."""

    def __init__(self, inputs: Mapping[str, np.ndarray], batch: int) -> None:
        self._inputs = inputs
        self._batch = batch

    def values(self, name: str) -> list | None:
        if name not in self._inputs:
            return None
        arr = np.asarray(self._inputs[name])
        if arr.size != self._batch or arr.ndim == 0 or arr.shape[0] != self._batch:
            raise RequestError(
                name,
                f"expected one value per prompt (shape [{self._batch}, 1]), "
                f"got shape {list(arr.shape)}",
            )
        return arr.reshape(self._batch).tolist()

    def ints(self, name: str, default: int | None, *, required: bool = False) -> list:
        values = self.values(name)
        if values is None:
            if required:
                raise RequestError(name, "is required")
            return [default] * self._batch
        return [int(v) for v in values]

    def floats(self, name: str, default: float) -> list[float]:
        values = self.values(name)
        if values is None:
            return [default] * self._batch
        return [float(v) for v in values]

    def texts(self, name: str) -> list[str | None]:
        values = self.values(name)
        if values is None:
            return [None] * self._batch
        return [decode_utf8(name, value, f"row {row}") for row, value in enumerate(values)]

    def bools(self, name: str, default: bool) -> list[bool]:
        values = self.values(name)
        if values is None:
            return [default] * self._batch
        return [bool(v) for v in values]


def _sampling_rows(reader: _ScalarReader) -> list[SamplingParams]:
    temperature = reader.floats("temperature", DEFAULT_TEMPERATURE)
    top_k = reader.ints("runtime_top_k", DEFAULT_TOP_K)
    top_p = reader.floats("runtime_top_p", DEFAULT_TOP_P)
    top_p_min = reader.floats("runtime_top_p_min", DEFAULT_TOP_P_MIN)
    top_p_decay = reader.floats("runtime_top_p_decay", DEFAULT_TOP_P_DECAY)
    top_p_reset = reader.ints("runtime_top_p_reset_ids", DEFAULT_TOP_P_RESET_ID)
    repetition = reader.floats("repetition_penalty", 1.0)
    presence = reader.floats("presence_penalty", 0.0)
    frequency = reader.floats("frequency_penalty", 0.0)
    min_length = reader.ints("min_tokens", 0)
    seeds = reader.ints("seed", None)
    rows = []
    for b in range(len(temperature)):
        _check_range("temperature", b, temperature[b], low=0.0)
        _check_range("runtime_top_k", b, top_k[b], low=0, high=MAX_TOP_K)
        _check_range("runtime_top_p", b, top_p[b], low=0.0, high=1.0)
        _check_range("runtime_top_p_min", b, top_p_min[b], low=0.0, high=1.0, open_low=True)
        _check_range("runtime_top_p_decay", b, top_p_decay[b], low=0.0, high=1.0, open_low=True)
        _check_range("runtime_top_p_reset_ids", b, top_p_reset[b], low=-1)
        _check_range("repetition_penalty", b, repetition[b], low=0.0, open_low=True)
        _check_range("presence_penalty", b, presence[b])
        _check_range("frequency_penalty", b, frequency[b])
        _check_range("min_tokens", b, min_length[b], low=0)
        seed = seeds[b]
        if seed is not None and not 0 <= seed < 2**64:
            raise RequestError("seed", f"row {b}: {seed} is outside [0, 2^64)")
        rows.append(
            SamplingParams(
                temperature=temperature[b],
                top_k=top_k[b],
                top_p=top_p[b],
                top_p_decay=top_p_decay[b],
                top_p_min=top_p_min[b],
                top_p_reset_id=top_p_reset[b],
                repetition_penalty=repetition[b],
                presence_penalty=presence[b],
                frequency_penalty=frequency[b],
                min_length=min_length[b],
                seed=seed,
            )
        )
    return rows


def _guide_rows(reader: _ScalarReader) -> list[Guide | None]:
    rows = []
    types = reader.texts(GUIDE_TYPE_INPUT)
    texts = reader.texts(GUIDE_INPUT)
    for b, (guide_type, text) in enumerate(zip(types, texts, strict=True)):
        guide = parse_guide(guide_type, text, row="" if len(types) == 1 else f"row {b}: ")
        if guide is not None:
            check_guide(guide)  # a bad guide is the request's error, before it is queued
        rows.append(guide)
    return rows


def _check_range(
    name: str,
    row: int,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(name, f"row {row}: must be a finite number, got {value}")
    too_low = low is not None and (value <= low if open_low else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "+inf" if high is None else f"{high}"
        bracket = "(" if open_low else "["
        raise RequestError(name, f"row {row}: {value} is outside {bracket}{lo}, {hi}]")


def _word_rows(
    inputs: Mapping[str, np.ndarray], name: str, batch: int, limits: EngineLimits
) -> list[tuple[tuple[int, ...], ...]]:
    if name not in inputs:
        return [()] * batch
    arr = np.asarray(inputs[name])
    if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[1] != 2:
        raise RequestError(
            name, f"expected shape [{batch}, 2, N] (word-list format), got {list(arr.shape)}"
        )
    rows = []
    for b in range(batch):
        try:
            words = normalize_words(decode_word_list(arr[b]))
        except ValueError as exc:
            raise RequestError(name, f"row {b}: malformed word list: {exc}") from None
        for word in words:
            _check_token_range(name, word, limits.vocab_size, b)
        rows.append(words)
    return rows


def _bias_rows(
    inputs: Mapping[str, np.ndarray], batch: int, limits: EngineLimits
) -> list[np.ndarray | None]:
    if "embedding_bias" not in inputs:
        return [None] * batch
    arr = np.asarray(inputs["embedding_bias"], dtype=np.float32)
    if arr.ndim == 1 and batch == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] != batch:
        raise RequestError(
            "embedding_bias", f"expected shape [{batch}, vocab], got {list(arr.shape)}"
        )
    if arr.shape[1] == 0:  # an empty bias is "no bias" (what preprocessing sends for none)
        return [None] * batch
    if limits.vocab_size is not None and arr.shape[1] != limits.vocab_size:
        raise RequestError(
            "embedding_bias",
            f"has {arr.shape[1]} values per prompt, the model's vocabulary has {limits.vocab_size}",
        )
    if not np.all(np.isfinite(arr)):
        raise RequestError("embedding_bias", "must hold finite numbers only")
    rows: list[np.ndarray | None] = []
    for b in range(batch):
        row = arr[b]
        rows.append(None if not np.any(row) else row.copy())
    return rows


def _check_token_range(name: str, tokens: Sequence[int], vocab: int | None, row: int) -> None:
    for t in tokens:
        if t < 0 or (vocab is not None and t >= vocab):
            limit = f"[0, {vocab})" if vocab is not None else "[0, inf)"
            raise RequestError(name, f"row {row}: token {t} is outside the vocabulary {limit}")
