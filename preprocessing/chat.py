"""The `messages` input: a JSON conversation rendered with the tokenizer's chat template."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from preprocessing.errors import RequestError

_ALLOWED_KEYS = frozenset({"role", "content", "name"})


def parse_messages(text: str, field: str = "messages") -> list[dict[str, str]]:
    """Parse and check a JSON array of {"role": str, "content": str[, "name": str]}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(
            field,
            f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            'expected a JSON array like [{"role": "user", "content": "Hi"}]',
        ) from None
    if not isinstance(data, list):
        raise RequestError(
            field, f"must be a JSON array of messages, got a JSON {_json_type(data)}"
        )
    return check_messages(data, field)


def check_messages(messages: Sequence[object], field: str = "messages") -> list[dict[str, str]]:
    """Check already-parsed messages; returns plain dicts for `apply_chat_template`."""
    if len(messages) == 0:
        raise RequestError(field, "is an empty conversation; send at least one message")
    checked: list[dict[str, str]] = []
    for index, item in enumerate(messages):
        where = f"message {index}"
        if not isinstance(item, Mapping):
            raise RequestError(field, f"{where} must be a JSON object with role and content")
        unknown = sorted(set(item) - _ALLOWED_KEYS)
        if unknown:
            raise RequestError(
                field,
                f"{where} has unsupported keys {unknown}; allowed: {sorted(_ALLOWED_KEYS)}",
                code="UNSUPPORTED",
            )
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or not role:
            raise RequestError(field, f"{where} needs a non-empty string 'role', got {role!r}")
        if not isinstance(content, str):
            raise RequestError(
                field,
                f"{where} needs a string 'content' (content parts are not supported), "
                f"got a JSON {_json_type(content)}",
            )
        message = {"role": role, "content": content}
        if "name" in item:
            if not isinstance(item["name"], str):
                raise RequestError(field, f"{where} has a non-string 'name'")
            message["name"] = item["name"]
        checked.append(message)
    return checked


def render_chat(tokenizer, messages: list[dict[str, str]], field: str = "messages") -> str:
    """The prompt text for `messages`, ending with the assistant's turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError(
            field,
            "this model's tokenizer has no chat template, so messages cannot be rendered; "
            "send the prompt as text instead",
        )
    try:
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    except Exception as error:  # jinja2 errors, raise_exception() in templates
        raise RequestError(
            field, f"the chat template cannot render this conversation: {error}"
        ) from None
    if not isinstance(rendered, str):
        raise TypeError(f"apply_chat_template returned {type(rendered).__name__}, not str")
    return rendered


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
