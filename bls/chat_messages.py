"""The `messages` input: a chat conversation, sent as one JSON string per prompt.

Triton's generate endpoints cannot turn a JSON array of objects into a tensor, so clients
send the conversation as a JSON-encoded string (the OpenAI `messages` array), e.g.
    "messages": "[{\"role\": \"user\", \"content\": \"Hi\"}]"
The BLS renders it with the tokenizer's chat template.

Only plain-text messages are accepted: `role`, `content` (a string) and an optional `name`.
Anything else (content parts, images, tool calls) is refused as UNSUPPORTED rather than
dropped, so a client never gets an answer to a conversation other than the one it sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from preprocessing.errors import RequestError

FIELD = "messages"
_KEYS = ("role", "content", "name")


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    name: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The form chat templates (`apply_chat_template`) expect."""
        out = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        return out


def parse_messages(text: str, where: str) -> tuple[ChatMessage, ...]:
    """Parse one row's JSON conversation; `where` names the row for error messages."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(
            FIELD,
            f"{where} is not valid JSON ({error.msg} at line {error.lineno} "
            f"column {error.colno}); expected a JSON array of "
            '{"role": ..., "content": ...} objects',
        ) from None
    if not isinstance(data, list):
        raise RequestError(
            FIELD,
            f"{where} must be a JSON array of messages, got a JSON {_json_type(data)}",
        )
    if not data:
        raise RequestError(FIELD, f"{where} is an empty conversation; send at least one message")
    return tuple(_message(item, f"{where}, message {index}") for index, item in enumerate(data))


def _message(item: object, where: str) -> ChatMessage:
    if not isinstance(item, dict):
        raise RequestError(FIELD, f"{where} must be a JSON object, got a JSON {_json_type(item)}")
    unknown = sorted(set(item) - set(_KEYS))
    if unknown:
        raise RequestError(
            FIELD,
            f"{where} has keys {unknown} that this BLS does not support; "
            f"accepted keys: {list(_KEYS)}",
            code="UNSUPPORTED",
        )
    role = item.get("role")
    if not isinstance(role, str) or not role:
        raise RequestError(FIELD, f"{where} needs a non-empty string 'role', got {role!r}")
    if "content" not in item:
        raise RequestError(FIELD, f"{where} needs a 'content' string")
    content = item["content"]
    if not isinstance(content, str):
        raise RequestError(
            FIELD,
            f"{where} has 'content' of JSON type {_json_type(content)}; only string content "
            "is supported (no content parts or images)",
            code="UNSUPPORTED",
        )
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise RequestError(FIELD, f"{where} has a 'name' that is not a string: {name!r}")
    return ChatMessage(role=role, content=content, name=name)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
