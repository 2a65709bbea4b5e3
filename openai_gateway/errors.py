"""Errors in OpenAI's format, and the HTTP status each Triton outcome maps to.

Every error the gateway answers is `{"error": {"message", "type", "param", "code"}}`, the
shape the `openai` SDK parses into `openai.BadRequestError` and its siblings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# gRPC status names (as `grpc.StatusCode.X.name`) -> HTTP status. Triton turns its own
# error codes into these: INVALID_ARG -> INVALID_ARGUMENT, UNSUPPORTED -> UNIMPLEMENTED,
# NOT_FOUND, UNAVAILABLE, INTERNAL.
_HTTP_STATUS_OF_GRPC = {
    "INVALID_ARGUMENT": 400,
    "UNIMPLEMENTED": 400,  # the BLS understood the input and cannot honour it
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 429,
}

# The BLS names the offending input first ("max_tokens: must be ..."); the OpenAI
# parameter it came from, for the error's `param`.
_PARAM_OF_BLS_INPUT = {
    "text_input": "prompt",
    "messages": "messages",
    "max_tokens": "max_tokens",
    "stop_words": "stop",
    "num_return_sequences": "n",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repetition_penalty": "repetition_penalty",
    "min_tokens": "min_tokens",
    "guided_decoding_guide_type": "response_format",
    "guided_decoding_guide": "response_format",
}
_LEADING_NAME = re.compile(r"^([a-z_]+)(?:\[\d+\])?: ")


@dataclass
class OpenAIError(Exception):
    """An error answered to the client as it is; `param` names the request field."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def type(self) -> str:
        if self.status >= 500:
            return "server_error"
        return "not_found_error" if self.status == 404 else "invalid_request_error"

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(param: str, message: str, code: str | None = None) -> OpenAIError:
    """A 400 naming `param`; the message says what is wrong and what is accepted."""
    return OpenAIError(400, f"{param}: {message}", param=param, code=code)


def unsupported(param: str, reason: str) -> OpenAIError:
    return invalid(param, f"not supported: {reason}", code="unsupported_parameter")


def unknown_model(name: str, served: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{name}' does not exist; this gateway serves '{served}' (GET /v1/models)",
        param="model",
        code="model_not_found",
    )


def from_triton(grpc_status: str, message: str, *, max_tokens_param: str = "max_tokens"):
    """The error a client gets for a request Triton refused or failed.

    `grpc_status` is the gRPC status name of the stream's end (e.g. "INVALID_ARGUMENT").
    """
    status = _HTTP_STATUS_OF_GRPC.get(grpc_status, 500)
    param = None
    match = _LEADING_NAME.match(message)
    if status == 400 and match:
        param = _PARAM_OF_BLS_INPUT.get(match.group(1))
        if param == "max_tokens":
            param = max_tokens_param
        if param is not None:  # the client's name for it: "n: ...", not "num_return_sequences: ..."
            message = f"{param}: {message[match.end() :]}"
    code = {503: "triton_unavailable", 404: "model_not_found"}.get(status)
    if status == 500:
        message = f"Triton failed the request ({grpc_status}): {message}"
    elif status == 503:
        message = f"Triton is unavailable: {message}"
    return OpenAIError(status, message, param=param, code=code)
