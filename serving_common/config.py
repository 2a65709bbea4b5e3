"""Config parameters (config.pbtxt `parameters`) read the same way by every model.

A bad value is a deployment mistake, not a client one: it raises `ConfigError` (a
ValueError) at model load, naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

DEFAULT_TOKENIZER_DIR = "/engines/tokenizer"


class ConfigError(ValueError):
    """A config.pbtxt parameter that cannot be used."""


def parameter_values(parameters: Mapping[str, object]) -> dict[str, str]:
    """Plain strings from either `{"k": "v"}` or Triton's `{"k": {"string_value": "v"}}`.

    Every model of the pipeline reads its parameters through here, so they all refuse the
    same mistakes: a value that is not a string, and an unfilled `${...}` template.
    """
    values: dict[str, str] = {}
    for key, raw in parameters.items():
        if isinstance(raw, Mapping):
            if "string_value" not in raw:
                raise ConfigError(f"parameter {key}: expected a string_value, got {dict(raw)!r}")
            raw = raw["string_value"]
        if not isinstance(raw, str):
            raise ConfigError(f"parameter {key} must be a string, got {raw!r}")
        value = raw.strip()
        if "${" in value:
            raise ConfigError(
                f"parameter {key}: unfilled template placeholder {value!r}; "
                "config.pbtxt must hold finished values"
            )
        values[key] = value
    return values


def check_known_parameters(
    parameters: Mapping[str, object], known: Sequence[str], model: str
) -> None:
    """Refuse a parameter the model does not read: a misspelt key would otherwise leave
    its setting at the default without a word."""
    unknown = sorted(set(parameter_values(parameters)) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} for the {model} model; known: {', '.join(known)}"
        )


def parse_tokenizer_dir(values: Mapping[str, str]) -> Path:
    tokenizer_dir = values.get("tokenizer_dir", DEFAULT_TOKENIZER_DIR)
    if not tokenizer_dir:
        raise ConfigError("tokenizer_dir must name a tokenizer directory, got ''")
    return Path(tokenizer_dir)


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f'{name} must be "true" or "false", got {value!r}')


def parse_positive_int(name: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return number


def parse_seconds(name: str, value: str) -> float:
    """A duration in seconds: a finite number, 0 or more."""
    try:
        number = float(value.strip())
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ConfigError(f"{name} must be a number of seconds (0 or more), got {value!r}")
    return number
