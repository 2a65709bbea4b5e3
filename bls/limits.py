"""The limits and defaults of `tensorrt_llm_bls`, read from its config.pbtxt parameters.

A bad value is a deployment mistake, not a client one: it raises `BlsConfigError`
(a ValueError) at model load, naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class BlsConfigError(ValueError):
    """A config.pbtxt parameter of tensorrt_llm_bls that cannot be used."""


@dataclass(frozen=True)
class BlsLimits:
    """Caps on client requests, and the defaults for what a client leaves out.

    The defaults equal the values shipped in model_repository/tensorrt_llm_bls/config.pbtxt.
    """

    max_input_len: int = 4096  # prompt tokens (checked after tokenization)
    max_output_len: int = 4096  # upper bound of max_tokens
    default_max_tokens: int = 128  # max_tokens when the client gives none
    max_words: int = 64  # stop/bad/embedding-bias words per list
    max_word_tokens: int = 32  # tokens per word (checked after tokenization)
    max_batch_rows: int = 64  # prompts in one request (the model's max_batch_size)
    max_num_return_sequences: int = 8  # upper bound of num_return_sequences
    default_skip_special_tokens: bool = True  # skip_special_tokens when not given

    def __post_init__(self) -> None:
        for name in (
            "max_input_len",
            "max_output_len",
            "default_max_tokens",
            "max_words",
            "max_word_tokens",
            "max_batch_rows",
            "max_num_return_sequences",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BlsConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.default_max_tokens > self.max_output_len:
            raise BlsConfigError(
                f"default_max_tokens ({self.default_max_tokens}) must not exceed "
                f"max_output_len ({self.max_output_len})"
            )

    @classmethod
    def from_parameters(
        cls, parameters: Mapping[str, object], *, max_batch_size: int = 64
    ) -> BlsLimits:
        """Read the limits from the model's config parameters.

        `parameters` is either {key: "value"} or Triton's own model_config["parameters"]
        ({key: {"string_value": "value"}}). Parameters this class does not use are left
        alone (they belong to other parts of the model); a missing one takes the default
        above. `max_batch_size` is the model's max_batch_size from its config.
        """
        values = {key: _unwrap(key, raw) for key, raw in parameters.items()}
        defaults = cls()
        kwargs: dict[str, object] = {}
        for name in (
            "max_input_len",
            "max_output_len",
            "default_max_tokens",
            "max_words",
            "max_word_tokens",
            "max_num_return_sequences",
        ):
            kwargs[name] = (
                _positive_int(name, values[name]) if name in values else getattr(defaults, name)
            )
        kwargs["default_skip_special_tokens"] = (
            _bool("skip_special_tokens", values["skip_special_tokens"])
            if "skip_special_tokens" in values
            else defaults.default_skip_special_tokens
        )
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise BlsConfigError(f"max_batch_size must be an integer, got {max_batch_size!r}")
        if max_batch_size < 1:
            raise BlsConfigError(
                f"max_batch_size must be at least 1 (a request carries prompts as rows "
                f"[B, 1]), got {max_batch_size}"
            )
        kwargs["max_batch_rows"] = max_batch_size
        return cls(**kwargs)  # type: ignore[arg-type]


def _unwrap(key: str, raw: object) -> str:
    if isinstance(raw, Mapping):
        if "string_value" not in raw:
            raise BlsConfigError(f"parameter {key}: expected a string_value, got {dict(raw)!r}")
        raw = raw["string_value"]
    if not isinstance(raw, str):
        raise BlsConfigError(f"parameter {key}: expected a string value, got {raw!r}")
    value = raw.strip()
    if "${" in value:
        raise BlsConfigError(
            f"parameter {key}: unfilled template placeholder {value!r}; "
            "config.pbtxt must hold finished values"
        )
    return value


def _positive_int(key: str, value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise BlsConfigError(
            f"parameter {key}: expected a positive integer, got {value!r}"
        ) from None
    if number < 1:
        raise BlsConfigError(f"parameter {key}: expected a positive integer, got {number}")
    return number


def _bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BlsConfigError(f"parameter {key}: expected true or false, got {value!r}")
