"""BLS responses -> OpenAI answers: whole bodies, and server-sent-event chunks.

Plain dicts and `json.dumps`, no response models: a streamed token costs one small
dict and one dumps. The chunk's fixed part (id, object, created, model) is serialized
once per request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from openai_gateway.errors import OpenAIError
from openai_gateway.mapping import BlsCall
from openai_gateway.triton_client import BlsResponse, BlsRow

DONE = b"data: [DONE]\n\n"


def finish_reason(bls_reason: str) -> str | None:
    """ "" while generating; "length" at max_tokens; "stop" otherwise (end token or a stop
    string; "cancelled" never reaches a client, who is the one that left)."""
    if not bls_reason:
        return None
    return "length" if bls_reason == "length" else "stop"


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    log_probs: list[float] = field(default_factory=list)
    started: bool = False  # a chunk has gone out (chat: the role goes with the first)


class Answer:
    """The state of one request's answer: choices, usage, and how to write them."""

    def __init__(self, call: BlsCall, *, chat: bool, request_id: str, created: int, model: str):
        self.call = call
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.choices = [_Choice() for _ in range(call.choices)]
        self._prompt_tokens: dict[int, int] = {}
        self._completion_tokens = 0
        self._whole_head = {
            "id": self.id,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._chunk_head = {
            **self._whole_head,
            "object": "chat.completion.chunk" if chat else "text_completion",
        }
        head_json = json.dumps(self._chunk_head, ensure_ascii=False)
        self._chunk_open = f'data: {head_json[:-1]}, "choices": ['.encode()
        usage_field = ', "usage": null' if call.include_usage else ""
        self._chunk_close = f"]{usage_field}}}\n\n".encode()

    # -- accumulating --------------------------------------------------------------------
    def _take(self, row: BlsRow) -> tuple[int, _Choice]:
        index = row.batch_index * self.call.n + row.sequence_index
        choice = self.choices[index]
        self._prompt_tokens[row.batch_index] = row.num_input_tokens
        self._completion_tokens += row.num_output_tokens
        if row.text:
            choice.text.append(row.text)
        if row.log_probs:
            choice.log_probs.extend(row.log_probs)
        choice.finish_reason = finish_reason(row.finish_reason) or choice.finish_reason
        return index, choice

    def usage(self) -> dict[str, int]:
        prompt = sum(self._prompt_tokens.values())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self._completion_tokens,
            "total_tokens": prompt + self._completion_tokens,
        }

    # -- one body (stream=false) ---------------------------------------------------------
    def whole(self, responses: Iterable[BlsResponse]) -> dict[str, object]:
        for response in responses:
            for row in response.rows:
                self._take(row)
        choices = []
        for index, choice in enumerate(self.choices):
            text = "".join(choice.text)
            body: dict[str, object] = {"index": index}
            if self.chat:
                body["message"] = {"role": "assistant", "content": text}
            else:
                body["text"] = text
            body["logprobs"] = self._log_probs(choice.log_probs) if self.call.logprobs else None
            body["finish_reason"] = choice.finish_reason or "stop"
            choices.append(body)
        return {**self._whole_head, "choices": choices, "usage": self.usage()}

    # -- server-sent events (stream=true) ------------------------------------------------
    def chunks(self, response: BlsResponse) -> Iterable[bytes]:
        for row in response.rows:
            index, choice = self._take(row)
            reason = finish_reason(row.finish_reason)
            if not row.text and reason is None and not row.log_probs:
                continue
            body: dict[str, object] = {"index": index}
            if self.chat:
                delta: dict[str, str] = {} if choice.started else {"role": "assistant"}
                if row.text or not choice.started:
                    delta["content"] = row.text
                body["delta"] = delta
            else:
                body["text"] = row.text
            choice.started = True
            body["logprobs"] = (
                self._log_probs(list(row.log_probs or ())) if self.call.logprobs else None
            )
            body["finish_reason"] = reason
            yield (
                self._chunk_open + json.dumps(body, ensure_ascii=False).encode() + self._chunk_close
            )

    def usage_chunk(self) -> bytes:
        """The last chunk when stream_options.include_usage: no choices, the usage."""
        return sse({**self._chunk_head, "choices": [], "usage": self.usage()})

    def _log_probs(self, values: list[float]) -> dict[str, object]:
        # The BLS returns each chosen token's log probability, not the token itself nor
        # the alternatives: the token fields stay empty (documented in docs/openai.md).
        if self.chat:
            return {
                "content": [
                    {"token": "", "logprob": value, "bytes": None, "top_logprobs": []}
                    for value in values
                ],
                "refusal": None,
            }
        return {"tokens": None, "token_logprobs": values, "top_logprobs": None, "text_offset": None}


def sse(body: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def sse_error(error: OpenAIError) -> bytes:
    """An error after the stream began: one event the openai SDK raises as APIError."""
    return sse(error.body())
