"""The rules a client request must follow: tensors and parameters to a `ClientRequest`.

`read_client_request` turns what Triton hands the model (input tensors and request
parameters) into a `ClientRequest`, or raises `RequestError` before anything is started.
It is the first half of `bls.validation.RequestValidator.validate`, which then tokenizes
the request and checks every limit that needs its tokens.
Nothing a client sends is silently dropped: an input or parameter we do not know is an
error (INVALID_ARG), and one we understand but cannot honour is an error too (UNSUPPORTED).

Decisions a client can observe (each is tested in tests/unit/test_bls_request*.py):

- Prompts. Exactly one of `text_input` (the text) or `messages` (a JSON array of chat
  messages, one string per row) is required. A request may carry several prompts as rows
  ([B, 1]); every other input then applies to all of them. An input may still come with
  one row per prompt (the official clients stack whole requests that way), but its rows
  must then hold the same value: rows that differ are refused (UNSUPPORTED), never
  silently reduced to the first.
- Request parameters. Any scalar input (everything except the prompt, the word lists and
  LoRA tensors) may instead come as a request parameter of the same name: a gRPC
  parameter, or a JSON field of the HTTP generate endpoints that Triton turns into one.
  Given both ways with different values it is an error; with the same value it is fine.
  Parameters named `triton_*`, and `id` (the request id, which the generate endpoint also
  hands on as a parameter), belong to Triton and are ignored. Any other unknown parameter
  is an error that lists the accepted names.
- Aliases. `min_length` is the older name of `min_tokens`, `random_seed` of `seed`. Both
  given with different values is an error naming both.
- Word lists (stop_words, bad_words, embedding_bias_words). Empty strings are padding,
  not words: the TensorRT-LLM documentation's own example sends `"stop_words": ""`, and
  clients pad rows of a batch with "". They are dropped (with their weight for
  embedding_bias_words). At most `max_words` words remain per list (checked as they are
  tokenized, by the same encoder as the preprocessing model's).
- Beam search is not supported (beam_width > 1 is UNSUPPORTED): stop strings, incremental
  detokenization and streaming all assume one sequence per output. `length_penalty` only
  acts on beam search, so a value other than 1.0 would be ignored: it is refused
  (UNSUPPORTED) instead. Use num_return_sequences for several samples.
- Sampling values the client leaves out stay None: the engine applies its own defaults,
  exactly as if the client had talked to it directly.
- Guided decoding. `guided_decoding_guide_type` (json, json_schema, regex, ebnf_grammar)
  and `guided_decoding_guide` are checked here, the guide compiled as the engine will
  compile it (serving_common.guided_decoding), so a bad schema, regex or grammar is the
  client's error (INVALID_ARG) before the engine sees it. It combines with everything
  else: each sample of num_return_sequences follows the guide; a stop string still cuts
  the text, which then need not be complete.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

import numpy as np

from bls.limits import BlsLimits
from bls.request_reader import (
    RequestReader,
    client_parameters,
    reject_unknown_inputs,
)
from bls.request_types import (
    ChatPrompt,
    ClientRequest,
    LoraOptions,
    Prompt,
    SamplingOptions,
    TextPrompt,
)
from bls.tensor_values import row_scalars
from preprocessing.chat import parse_messages
from preprocessing.encoding import embedding_bias_pairs
from serving_common.errors import RequestError
from serving_common.guided_decoding import (
    GUIDE_INPUT,
    GUIDE_TYPE_INPUT,
    Guide,
    check_guide,
    parse_guide,
)
from serving_common.text import decode_utf8

# OpenAI's documented range for presence_penalty and frequency_penalty.
PENALTY_BOUND = 2.0

_T = TypeVar("_T")


def read_client_request(
    inputs: Mapping[str, np.ndarray],
    parameters: Mapping[str, object],
    limits: BlsLimits,
) -> ClientRequest:
    """Validate a request and build its typed form; raise RequestError on bad input.

    `inputs` maps input name to the array Triton hands the model ([B, ...]; absent inputs
    are left out or None). `parameters` is the request's parameters (request.parameters(),
    already JSON-decoded).
    """
    arrays = {name: np.asarray(value) for name, value in inputs.items() if value is not None}
    reject_unknown_inputs(arrays)
    params = client_parameters(parameters)
    prompts = _parse_prompts(arrays, limits)
    read = RequestReader(arrays, params, len(prompts))

    max_tokens = read.integer("max_tokens")
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    _check_between("max_tokens", max_tokens, 1, limits.max_output_len, "max_output_len")

    for name in ("return_context_logits", "return_generation_logits", "return_perf_metrics"):
        if read.flag(name):
            raise RequestError(
                name,
                "true is not supported: this BLS returns neither logits nor the engine's "
                "performance metrics; leave it out or send false",
                code="UNSUPPORTED",
            )

    bias_words, bias_weights = _embedding_bias(read)
    skip_special_tokens = read.flag("skip_special_tokens")
    return ClientRequest(
        prompts=prompts,
        max_tokens=max_tokens,
        stream=_or(read.flag("stream"), False),
        stop_words=_word_list(read, "stop_words"),
        bad_words=_word_list(read, "bad_words"),
        end_id=_token_id(read, "end_id"),
        pad_id=_token_id(read, "pad_id"),
        sampling=_sampling(read, max_tokens, limits),
        return_log_probs=_or(read.flag("return_log_probs"), False),
        exclude_input_in_output=_or(read.flag("exclude_input_in_output"), True),
        include_stop_str_in_output=_or(read.flag("include_stop_str_in_output"), False),
        skip_special_tokens=_or(skip_special_tokens, limits.default_skip_special_tokens),
        embedding_bias_words=bias_words,
        embedding_bias_weights=bias_weights,
        return_num_input_tokens=_or(read.flag("return_num_input_tokens"), False),
        return_num_output_tokens=_or(read.flag("return_num_output_tokens"), False),
        lora=_lora(read),
        guide=_guide(read),
    )


def _parse_prompts(arrays: Mapping[str, np.ndarray], limits: BlsLimits) -> tuple[Prompt, ...]:
    has_text, has_messages = "text_input" in arrays, "messages" in arrays
    if has_text and has_messages:
        raise RequestError(
            "text_input",
            "send either text_input (the prompt text) or messages (a chat conversation), not both",
        )
    if not has_text and not has_messages:
        raise RequestError(
            "text_input",
            "a prompt is required: send text_input (the prompt text) or messages "
            "(a JSON array of chat messages)",
        )
    name = "text_input" if has_text else "messages"
    array = arrays[name]
    rows = array.shape[0] if array.ndim else 0
    if rows < 1:
        raise RequestError(name, f"expected at least one prompt, got shape {list(array.shape)}")
    if rows > limits.max_batch_rows:
        raise RequestError(
            name,
            f"has {rows} prompts; at most {limits.max_batch_rows} (max_batch_size) are allowed "
            "in one request",
        )
    texts = [
        decode_utf8(name, raw, f"prompt {index}")
        for index, raw in enumerate(row_scalars(name, array, rows))
    ]
    if has_text:
        return tuple(TextPrompt(text) for text in texts)
    return tuple(
        ChatPrompt(tuple(parse_messages(text, "messages", f"prompt {index}")))
        for index, text in enumerate(texts)
    )


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _check_between(name: str, value: float, low: float, high: float, limit: str = "") -> None:
    if not low <= value <= high:
        where = f" ({limit})" if limit else ""
        raise RequestError(name, f"must be between {low} and {high}{where}, got {value}")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise RequestError(name, f"must be a finite number, got {value}")


def _token_id(read: RequestReader, name: str) -> int | None:
    value = read.integer(name)
    if value is not None and value < 0:
        raise RequestError(name, f"must be a token id (>= 0), got {value}")
    return value


def _sampling(read: RequestReader, max_tokens: int, limits: BlsLimits) -> SamplingOptions:
    top_k = read.integer("top_k")
    if top_k is not None and top_k < 0:
        raise RequestError("top_k", f"must be >= 0 (0 disables top-k), got {top_k}")

    top_p = read.number("top_p")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise RequestError("top_p", f"must be greater than 0 and at most 1, got {top_p}")

    temperature = read.number("temperature")
    if temperature is not None:
        _check_finite("temperature", temperature)
        if temperature < 0.0:
            raise RequestError("temperature", f"must be >= 0, got {temperature}")

    repetition_penalty = read.number("repetition_penalty")
    if repetition_penalty is not None:
        _check_finite("repetition_penalty", repetition_penalty)
        if repetition_penalty <= 0.0:
            raise RequestError(
                "repetition_penalty",
                f"must be greater than 0 (1.0 means no penalty), got {repetition_penalty}",
            )

    penalties = {}
    for name in ("presence_penalty", "frequency_penalty"):
        value = read.number(name)
        if value is not None:
            _check_finite(name, value)
            _check_between(name, value, -PENALTY_BOUND, PENALTY_BOUND)
        penalties[name] = value

    beam_width = read.integer("beam_width")
    if beam_width is not None:
        if beam_width < 1:
            raise RequestError("beam_width", f"must be at least 1, got {beam_width}")
        if beam_width > 1:
            raise RequestError(
                "beam_width",
                f"beam search is not supported by this BLS (got {beam_width}, only 1 is "
                "accepted): stop strings and streamed text need one sequence per output; "
                "use num_return_sequences for several samples",
                code="UNSUPPORTED",
            )

    length_penalty = read.number("length_penalty")
    if length_penalty is not None:
        _check_finite("length_penalty", length_penalty)
        if length_penalty != 1.0:
            raise RequestError(
                "length_penalty",
                f"only acts on beam search, which this BLS does not support; got "
                f"{length_penalty}, only 1.0 is accepted",
                code="UNSUPPORTED",
            )

    num_return_sequences = read.integer("num_return_sequences")
    if num_return_sequences is not None:
        _check_between(
            "num_return_sequences",
            num_return_sequences,
            1,
            limits.max_num_return_sequences,
            "max_num_return_sequences",
        )

    min_tokens = read.integer("min_tokens")
    if min_tokens is not None and not 0 <= min_tokens <= max_tokens:
        raise RequestError(
            "min_tokens", f"must be between 0 and max_tokens ({max_tokens}), got {min_tokens}"
        )

    return SamplingOptions(
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        length_penalty=length_penalty,
        repetition_penalty=repetition_penalty,
        presence_penalty=penalties["presence_penalty"],
        frequency_penalty=penalties["frequency_penalty"],
        min_tokens=min_tokens,
        seed=read.integer("seed"),
        beam_width=_or(beam_width, 1),
        num_return_sequences=_or(num_return_sequences, 1),
    )


def _shared_rows(name: str, rows: list[tuple]) -> tuple:
    if any(row != rows[0] for row in rows[1:]):
        raise RequestError(
            name,
            "the prompts of one request must share one list, got different lists per "
            "prompt; send prompts that need different lists as separate requests",
            code="UNSUPPORTED",
        )
    return rows[0]


def _word_list(read: RequestReader, name: str) -> tuple[str, ...]:
    rows = read.string_rows(name)
    if rows is None:
        return ()
    # Empty strings are padding (see the module docstring), not words. max_words and the
    # other word limits are the encoder's: it applies them as it tokenizes the words.
    return _shared_rows(name, [tuple(word for word in row if word) for row in rows])


def _embedding_bias(read: RequestReader) -> tuple[tuple[str, ...], tuple[float, ...]]:
    words = read.string_rows("embedding_bias_words")
    weights = read.float_rows("embedding_bias_weights")
    if words is None and weights is None:
        return (), ()
    if words is None:
        raise RequestError(
            "embedding_bias_weights", "needs embedding_bias_words (one weight per word)"
        )
    if weights is None:
        raise RequestError(
            "embedding_bias_words", "needs embedding_bias_weights (one weight per word)"
        )
    # One finite weight per word, padding dropped (embedding_bias_pairs, shared with the
    # preprocessing model); max_words is applied when the words are tokenized.
    pairs = _shared_rows(
        "embedding_bias_words",
        [tuple(embedding_bias_pairs(*row)) for row in zip(words, weights, strict=True)],
    )
    return tuple(w for w, _ in pairs), tuple(b for _, b in pairs)


def _lora(read: RequestReader) -> LoraOptions | None:
    task_id = read.integer("lora_task_id")
    weights = read.matrix("lora_weights", integer=False)
    config = read.matrix("lora_config", integer=True)
    if task_id is None:
        for name, value in (("lora_weights", weights), ("lora_config", config)):
            if value is not None:
                raise RequestError(
                    name, "needs lora_task_id (the id under which the engine caches the adapter)"
                )
        return None
    if (weights is None) != (config is None):
        missing = "lora_config" if config is None else "lora_weights"
        present = "lora_weights" if config is None else "lora_config"
        raise RequestError(
            missing,
            f"is required with {present}: a new adapter needs both lora_weights and "
            "lora_config (a cached one needs neither, only lora_task_id)",
        )
    if weights is not None and config is not None:
        if config.shape[1] != 3:
            raise RequestError(
                "lora_config",
                "expected rows of [module_id, layer_idx, adapter_size] (shape [N, 3]), "
                f"got shape {list(config.shape)}",
            )
        if weights.shape[0] != config.shape[0]:
            raise RequestError(
                "lora_config",
                f"has {config.shape[0]} rows but lora_weights has {weights.shape[0]}; "
                "they need one row per module and layer",
            )
    return LoraOptions(task_id=task_id, weights=weights, config=config)


def _guide(read: RequestReader) -> Guide | None:
    guide = parse_guide(read.text(GUIDE_TYPE_INPUT), read.text(GUIDE_INPUT))
    if guide is not None:
        check_guide(guide)
    return guide
