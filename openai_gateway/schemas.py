"""The OpenAI request bodies the gateway accepts, as pydantic models, and their parsing.

Strict types (a string is not a number, 1 is not `true`) and no unknown fields: a request
the gateway cannot read exactly is refused with a 400 naming the field, never guessed at.
Fields that OpenAI defines but the BLS cannot honour are declared loosely here and refused
with their reason by `openai_gateway.mapping` (see REFUSED there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openai_gateway.errors import OpenAIError, invalid

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
# The BLS's integer inputs are INT32.
Count = Annotated[int, Field(ge=1, le=2**31 - 1)]
NonNegative = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StreamOptions(_Strict):
    include_usage: bool | None = None


class JsonSchema(BaseModel):
    # Extra keys (e.g. "description") are OpenAI's, harmless, and kept.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class ContentPart(BaseModel):
    # Extra keys are allowed so an image part reaches the check that names its type.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    type: str
    text: str | None = None


class ChatMessage(_Strict):
    role: Annotated[str, Field(min_length=1)]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # Refused by the mapping, with their reason: the BLS has no tool calling.
    tool_calls: Any = None
    tool_call_id: Any = None
    function_call: Any = None
    refusal: Any = None


class _Sampling(_Strict):
    """What both endpoints share."""

    model: str
    max_tokens: Count | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    n: Count = 1
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**64)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # an end-user id for the caller's own records; never used
    # Extensions that vLLM and TensorRT-LLM's OpenAI servers accept too; passed to the BLS.
    top_k: NonNegative | None = None
    min_tokens: NonNegative | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    # OpenAI's for chat; on completions an extension, as in vLLM and TensorRT-LLM.
    response_format: ResponseFormat | None = None
    # Refused by the mapping, with their reason.
    logit_bias: Any = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    best_of: Any = None
    suffix: Any = None


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Count | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    service_tier: Any = None
    store: Any = None
    metadata: Any = None
    web_search_options: Any = None


_Request = TypeVar("_Request", bound=BaseModel)


def parse_request(model: type[_Request], body: bytes) -> _Request:
    """Validate a JSON body; a 400 in OpenAI's format naming the first bad field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise _as_openai_error(error) from None


def _as_openai_error(error: ValidationError) -> OpenAIError:
    # The deepest error: of a union's branches, the one that got furthest into the value
    # says what is wrong ("stop[0]: valid string", not "stop: valid string").
    first = max(error.errors(include_url=False), key=lambda e: len(e["loc"]))
    kind = first["type"]
    if kind == "json_invalid":
        return OpenAIError(
            400,
            f"The body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
            code="invalid_json",
        )
    if kind == "model_type" and not first["loc"]:
        return OpenAIError(400, "The body must be a JSON object", code="invalid_json")
    param = field_path(first["loc"])
    if kind == "extra_forbidden":
        return invalid(param, "unrecognized request argument", code="unknown_parameter")
    if kind == "missing":
        return invalid(param, "is required", code="missing_required_parameter")
    return invalid(param, f"{first['msg']} (got {first.get('input')!r})", code="invalid_type")


def field_path(loc: tuple[int | str, ...]) -> str:
    """("messages", 0, "content") -> "messages[0].content"; union branch tags dropped."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _is_branch_tag(part):
            continue
        else:
            path += f".{part}" if path else part
    return path


def _is_branch_tag(part: str) -> bool:
    # pydantic names the member of a union it tried: "str", "list[int]", "function-after[...]".
    return "[" in part or part in {"str", "int", "float", "bool", "none", "dict"}
