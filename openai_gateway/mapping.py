"""OpenAI request -> the inputs of one `tensorrt_llm_bls` request (`BlsCall`).

The gateway checks only what is OpenAI's to check (types, OpenAI's own ranges, parameters
it cannot honour); the BLS stays the one authority on its limits (max_tokens against
max_output_len, n against max_num_return_sequences, prompt length, stop words), and its
errors reach the client as 400s naming the OpenAI parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openai_gateway.errors import invalid, unsupported
from openai_gateway.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ResponseFormat,
)


@dataclass(frozen=True)
class BlsCall:
    """One BLS request and what the answer needs to know about it."""

    inputs: dict[str, np.ndarray]  # [B, ...] arrays, for bls.client.grpc_inputs
    prompts: int  # B: completions may send several prompts in one request
    n: int  # samples per prompt; choice index = batch_index * n + sequence_index
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with usage
    logprobs: bool
    max_tokens_param: str  # the OpenAI name max_tokens came from, for error messages

    @property
    def choices(self) -> int:
        return self.prompts * self.n


def _absent(value: Any) -> bool:
    return value is None or value == {} or value == []


@dataclass(frozen=True)
class Refusal:
    reason: str
    # Values that ask for nothing (null, {}, [], a default) are accepted: clients that
    # send them explicitly get what they asked for.
    neutral: Callable[[Any], bool] = _absent


_NO_TOOLS = Refusal(
    "tool and function calling is not implemented by this gateway (the BLS returns text only)",
    lambda value: _absent(value) or value == "none",
)

#: OpenAI parameters the gateway refuses (HTTP 400 naming the parameter), and why.
REFUSED: dict[str, Refusal] = {
    "logit_bias": Refusal(
        "the BLS biases words, not token ids (send embedding_bias_words to "
        "tensorrt_llm_bls over gRPC instead)"
    ),
    "tools": _NO_TOOLS,
    "tool_choice": _NO_TOOLS,
    "functions": _NO_TOOLS,
    "function_call": _NO_TOOLS,
    "best_of": Refusal("server-side ranking of samples is not implemented; use n"),
    "suffix": Refusal(
        "insertion (text after the completion) is not implemented",
        lambda value: value is None or value == "",
    ),
    "audio": Refusal("audio output is not implemented"),
    "modalities": Refusal(
        "only text output is implemented", lambda value: _absent(value) or value == ["text"]
    ),
    "prediction": Refusal("predicted outputs are not implemented"),
    "reasoning_effort": Refusal("the model has no reasoning-effort setting"),
    "service_tier": Refusal(
        "there is one service tier", lambda value: value in (None, "auto", "default")
    ),
    "store": Refusal("completions are not stored", lambda value: value in (None, False)),
    "metadata": Refusal("completions are not stored, so there is nothing to tag"),
    "web_search_options": Refusal("web search is not implemented"),
}
_REFUSED_IN_MESSAGES = {
    "tool_calls": _NO_TOOLS,
    "tool_call_id": _NO_TOOLS,
    "function_call": _NO_TOOLS,
}
_TOP_LOGPROBS = (
    "the BLS returns the log probability of each chosen token, not of the alternatives; {detail}"
)


def completion_call(request: CompletionRequest) -> BlsCall:
    _refuse(request, ("logit_bias", "suffix"))
    if request.best_of not in (None, 1, request.n):  # best_of == n asks for nothing more
        raise unsupported("best_of", REFUSED["best_of"].reason)
    prompts = _text_prompts(request.prompt)
    if request.logprobs:
        raise unsupported(
            "logprobs",
            _TOP_LOGPROBS.format(detail="send logprobs=0 for the chosen tokens' log probs"),
        )
    logprobs = request.logprobs is not None
    if request.echo and logprobs:
        raise unsupported("echo", "echo with logprobs needs the prompt's log probs")
    rows = _Rows(len(prompts))
    inputs = {"text_input": rows.strings(prompts)}
    if request.echo:
        inputs["exclude_input_in_output"] = rows.scalar(False, np.bool_)
    return _call(request, rows, inputs, logprobs=logprobs, max_tokens=request.max_tokens)


def chat_call(request: ChatCompletionRequest) -> BlsCall:
    _refuse(
        request,
        (
            "logit_bias",
            "tools",
            "tool_choice",
            "functions",
            "function_call",
            "audio",
            "modalities",
            "prediction",
            "reasoning_effort",
            "service_tier",
            "store",
            "metadata",
            "web_search_options",
        ),
    )
    if request.top_logprobs:
        raise unsupported(
            "top_logprobs", _TOP_LOGPROBS.format(detail="send logprobs=true without top_logprobs")
        )
    messages = [_message(message, index) for index, message in enumerate(request.messages)]
    rows = _Rows(1)
    inputs = {"messages": rows.strings([json.dumps(messages, ensure_ascii=False)])}
    max_tokens, name = request.max_completion_tokens, "max_completion_tokens"
    if max_tokens is None:
        max_tokens, name = request.max_tokens, "max_tokens"
    return _call(
        request, rows, inputs, logprobs=request.logprobs, max_tokens=max_tokens, max_name=name
    )


# ---------------------------------------------------------------------------------------


class _Rows:
    """Arrays with one row per prompt: Triton wants every input of a request at batch B."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def scalar(self, value: object, dtype: type) -> np.ndarray:
        return np.full((self.batch, 1), value, dtype=dtype)

    def strings(self, values: list[str]) -> np.ndarray:
        return np.array([[value.encode("utf-8")] for value in values], dtype=np.object_)

    def word_list(self, words: list[str]) -> np.ndarray:
        row = [word.encode("utf-8") for word in words]
        return np.array([row] * self.batch, dtype=np.object_)


def _call(
    request: CompletionRequest | ChatCompletionRequest,
    rows: _Rows,
    inputs: dict[str, np.ndarray],
    *,
    logprobs: bool,
    max_tokens: int | None,
    max_name: str = "max_tokens",
) -> BlsCall:
    if request.stream_options is not None and not request.stream:
        raise invalid("stream_options", "is only allowed when stream is true")
    scalars: dict[str, tuple[object, type]] = {
        "stream": (request.stream, np.bool_),
        # Always: usage is built from them, and they cost the BLS nothing.
        "return_num_input_tokens": (True, np.bool_),
        "return_num_output_tokens": (True, np.bool_),
    }
    optional = {
        "max_tokens": (max_tokens, np.int32),
        "temperature": (request.temperature, np.float32),
        "top_p": (request.top_p, np.float32),
        "top_k": (request.top_k, np.int32),
        "presence_penalty": (request.presence_penalty, np.float32),
        "frequency_penalty": (request.frequency_penalty, np.float32),
        "repetition_penalty": (request.repetition_penalty, np.float32),
        "min_tokens": (request.min_tokens, np.int32),
        "seed": (request.seed, np.uint64),
        "num_return_sequences": (request.n if request.n != 1 else None, np.int32),
        "return_log_probs": (True if logprobs else None, np.bool_),
    }
    scalars.update({name: entry for name, entry in optional.items() if entry[0] is not None})
    for name, (value, dtype) in scalars.items():
        inputs[name] = rows.scalar(value, dtype)
    inputs.update(_guided_decoding(request.response_format, rows))
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    if stop:
        inputs["stop_words"] = rows.word_list(stop)
    return BlsCall(
        inputs=inputs,
        prompts=rows.batch,
        n=request.n,
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        logprobs=logprobs,
        max_tokens_param=max_name,
    )


def _refuse(request: object, names: tuple[str, ...]) -> None:
    for name in names:
        refusal = REFUSED[name]
        if not refusal.neutral(getattr(request, name)):
            raise unsupported(name, refusal.reason)


def _text_prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise invalid("prompt", "is an empty list; send a string or a list of strings")
    if all(isinstance(item, str) for item in prompt):
        return list(prompt)  # type: ignore[arg-type]
    raise unsupported("prompt", "token-id prompts; the BLS tokenizes text, send strings")


def _message(message: ChatMessage, index: int) -> dict[str, str]:
    where = f"messages[{index}]"
    for name, refusal in _REFUSED_IN_MESSAGES.items():
        if not refusal.neutral(getattr(message, name)):
            raise unsupported(f"{where}.{name}", refusal.reason)
    content = message.content
    if content is None:
        raise invalid(f"{where}.content", "is required: a string or a list of text parts")
    if not isinstance(content, str):
        for part_index, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise unsupported(
                    f"{where}.content[{part_index}]",
                    f"content parts of type {part.type!r}; only 'text' parts (with 'text')",
                )
        # Text parts are one message; a newline between them, as vLLM joins them.
        content = "\n".join(part.text for part in content if part.text is not None)
    result = {"role": message.role, "content": content}
    if message.name is not None:
        result["name"] = message.name
    return result


def _guided_decoding(
    response_format: ResponseFormat | None, rows: _Rows
) -> Mapping[str, np.ndarray]:
    """response_format -> the BLS's guided decoding inputs (the C++ backend's names), the
    same guide on every prompt's row."""
    if response_format is None or response_format.type == "text":
        return {}
    if response_format.type == "json_object":
        return {"guided_decoding_guide_type": rows.strings(["json"] * rows.batch)}
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    if schema is None:
        raise invalid(
            "response_format.json_schema.schema",
            'is required with type "json_schema" (the JSON schema the output must follow)',
        )
    return {
        "guided_decoding_guide_type": rows.strings(["json_schema"] * rows.batch),
        "guided_decoding_guide": rows.strings([json.dumps(schema)] * rows.batch),
    }
