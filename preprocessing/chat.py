"""The `messages` input: a JSON conversation rendered with the tokenizer's chat template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from serving_common.errors import RequestError, load_json

_KEYS = ("role", "content", "name")


def parse_messages(text: str, field: str = "messages", where: str = "") -> list[dict[str, str]]:
    """Parse and check a JSON array of {"role": str, "content": str[, "name": str]}.

    `where` says which prompt of a batch this is (e.g. "prompt 1"), for the messages.
    Only plain-text messages are accepted: content parts, images and tool calls are
    refused (UNSUPPORTED) rather than dropped, so a client never gets an answer to a
    conversation other than the one it sent.
    """
    subject = where or "the conversation"
    data = load_json(
        field,
        text,
        subject=subject,
        expected='expected a JSON array like [{"role": "user", "content": "Hi"}]',
    )
    if not isinstance(data, list):
        raise RequestError(
            field, f"{subject} must be a JSON array of messages, got a JSON {_json_type(data)}"
        )
    return check_messages(data, field, where)


def check_messages(
    messages: Sequence[object], field: str = "messages", where: str = ""
) -> list[dict[str, str]]:
    """Check already-parsed messages; returns plain dicts for `apply_chat_template`."""
    if len(messages) == 0:
        subject = where or "the conversation"
        raise RequestError(field, f"{subject} is empty; send at least one message")
    return [
        _checked_message(item, field, f"{where}, message {index}" if where else f"message {index}")
        for index, item in enumerate(messages)
    ]


def _checked_message(item: object, field: str, where: str) -> dict[str, str]:
    if not isinstance(item, Mapping):
        raise RequestError(field, f"{where} must be a JSON object, got a JSON {_json_type(item)}")
    unknown = sorted(set(item) - set(_KEYS))
    if unknown:
        raise RequestError(
            field,
            f"{where} has keys {unknown} that are not supported; accepted keys: {list(_KEYS)}",
            code="UNSUPPORTED",
        )
    role = item.get("role")
    if not isinstance(role, str) or not role:
        raise RequestError(field, f"{where} needs a non-empty string 'role', got {role!r}")
    if "content" not in item:
        raise RequestError(field, f"{where} needs a 'content' string")
    content = item["content"]
    if not isinstance(content, str):
        raise RequestError(
            field,
            f"{where} has 'content' of JSON type {_json_type(content)}; only string content "
            "is supported (no content parts or images)",
            code="UNSUPPORTED",
        )
    message = {"role": role, "content": content}
    if "name" in item:
        if not isinstance(item["name"], str):
            raise RequestError(
                field, f"{where} has a 'name' that is not a string: {item['name']!r}"
            )
        message["name"] = item["name"]
    return message


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
