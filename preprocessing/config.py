"""The preprocessing model's settings, read from its config.pbtxt parameters.

A bad value is a deployment mistake, not a client one: it raises
`serving_common.config.ConfigError` at model load, naming the parameter, the value and
what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serving_common.config import (
    ConfigError,
    parameter_values,
    parse_bool,
    parse_positive_int,
    parse_tokenizer_dir,
)

# The parameters of the preprocessing model's config.pbtxt.
PREPROCESSING_PARAMETERS = (
    "tokenizer_dir",
    "add_special_tokens",
    "trust_remote_code",
    "max_input_len",
    "max_words",
    "max_word_tokens",
    "max_word_chars",
    "max_request_bytes",
)


@dataclass(frozen=True)
class PreprocessingLimits:
    """Caps on what one request may ask for. The token counts are checked after
    tokenization; the sizes before anything is decoded or tokenized, which bounds the work
    a request can cause."""

    max_input_len: int = 4096  # prompt tokens
    max_words: int = 64  # words per stop/bad/embedding-bias list
    max_word_tokens: int = 32  # tokens per word (its longest tokenization)
    max_word_chars: int = 256  # characters per word
    # Bytes of all inputs of one request together (the BLS leaves lora_weights out).
    max_request_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> PreprocessingLimits:
        """Read the limits present in `parameters`; absent ones keep their defaults."""
        values = parameter_values(parameters)
        found = {
            name: parse_positive_int(name, values[name])
            for name in cls.__dataclass_fields__
            if name in values
        }
        return cls(**found)


@dataclass(frozen=True)
class PreprocessingSettings:
    """Everything the preprocessing model reads from its parameters."""

    tokenizer_dir: Path
    add_special_tokens: bool = True
    trust_remote_code: bool = False
    limits: PreprocessingLimits = field(default_factory=PreprocessingLimits)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> PreprocessingSettings:
        values = parameter_values(parameters)
        return cls(
            tokenizer_dir=parse_tokenizer_dir(values),
            add_special_tokens=parse_bool(
                "add_special_tokens", values.get("add_special_tokens", "true")
            ),
            trust_remote_code=parse_bool(
                "trust_remote_code", values.get("trust_remote_code", "false")
            ),
            limits=PreprocessingLimits.from_parameters(values),
        )
