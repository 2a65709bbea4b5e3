"""The limits and defaults of `tensorrt_llm_bls`, read from its config.pbtxt parameters.

A bad value is a deployment mistake, not a client one: it raises
`serving_common.config.ConfigError` (a ValueError) at model load, naming the parameter,
the value and what is allowed; every model of the pipeline parses parameters the same way.
The prompt and word limits (max_input_len, max_words, max_word_tokens, max_word_chars,
max_request_bytes) are the preprocessing model's, read by `PreprocessingSettings`: the BLS
encodes with the same `PromptEncoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bls.metrics import LOG_LEVELS
from serving_common.config import (
    ConfigError,
    parameter_values,
    parse_bool,
    parse_positive_int,
    parse_seconds,
)

# The parameters of the tensorrt_llm_bls model's config.pbtxt (read by BlsLimits, the
# shared PreprocessingSettings and the model itself).
BLS_PARAMETERS = (
    "tokenizer_dir",
    "tensorrt_llm_model_name",
    "engine_grpc_url",
    "max_input_len",
    "max_output_len",
    "max_seq_len",
    "default_max_tokens",
    "add_special_tokens",
    "max_words",
    "max_word_tokens",
    "max_word_chars",
    "max_request_bytes",
    "max_num_return_sequences",
    "trust_remote_code",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "max_concurrent_requests",
    "cancellation_check_period_ms",
    "response_sender_threads",
    "event_loop",
    "engine_stall_timeout_s",
    "request_log_level",
    "request_log_text",
)


@dataclass(frozen=True)
class BlsLimits:
    """Caps on client requests, and the defaults for what a client leaves out.

    The defaults equal the values shipped in model_repository/tensorrt_llm_bls/config.pbtxt.
    """

    max_output_len: int = 4096  # upper bound of max_tokens
    default_max_tokens: int = 128  # max_tokens when the client gives none
    max_batch_rows: int = 64  # prompts in one request (the model's max_batch_size)
    max_num_return_sequences: int = 8  # upper bound of num_return_sequences
    default_skip_special_tokens: bool = True  # skip_special_tokens when not given
    # The engine's max_seq_len (prompt + output), 0 when not known here. TensorRT-LLM may
    # shorten a request that does not fit instead of refusing it; checking here keeps
    # finish_reason "length" truthful and the error clear.
    max_seq_len: int = 0

    def __post_init__(self) -> None:
        for name in (
            "max_output_len",
            "default_max_tokens",
            "max_batch_rows",
            "max_num_return_sequences",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.max_seq_len, bool) or not isinstance(self.max_seq_len, int):
            raise ConfigError(f"max_seq_len must be an integer, got {self.max_seq_len!r}")
        if self.max_seq_len < 0:
            raise ConfigError(
                f"max_seq_len must be 0 (not checked) or more, got {self.max_seq_len}"
            )
        if self.default_max_tokens > self.max_output_len:
            raise ConfigError(
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
        values = parameter_values(parameters)
        defaults = cls()
        kwargs: dict[str, object] = {}
        for name in (
            "max_output_len",
            "default_max_tokens",
            "max_num_return_sequences",
        ):
            kwargs[name] = (
                parse_positive_int(name, values[name])
                if name in values
                else getattr(defaults, name)
            )
        if values.get("max_seq_len", "0") != "0":
            kwargs["max_seq_len"] = parse_positive_int("max_seq_len", values["max_seq_len"])
        kwargs["default_skip_special_tokens"] = (
            parse_bool("skip_special_tokens", values["skip_special_tokens"])
            if "skip_special_tokens" in values
            else defaults.default_skip_special_tokens
        )
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise ConfigError(f"max_batch_size must be an integer, got {max_batch_size!r}")
        if max_batch_size < 1:
            raise ConfigError(
                f"max_batch_size must be at least 1 (a request carries prompts as rows "
                f"[B, 1]), got {max_batch_size}"
            )
        kwargs["max_batch_rows"] = max_batch_size
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TextSettings:
    """How the BLS turns token ids into text: the postprocessing model's setting of the
    same name, so both decode alike."""

    # Slow (pure Python) tokenizers of transformers 4.x put a space between added tokens
    # and the text around them; fast tokenizers and transformers 5 ignore it.
    spaces_between_special_tokens: bool = True

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> TextSettings:
        value = parameter_values(parameters).get("spaces_between_special_tokens")
        if value is None:
            return cls()
        return cls(parse_bool("spaces_between_special_tokens", value))


# The generation loop's event loop (bls.loop.new_event_loop): "auto" takes uvloop where
# it is installed, else asyncio's own.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")

# The ServingOptions that are counts (positive integers).
_COUNTS = ("max_concurrent_requests", "cancellation_check_period_ms", "response_sender_threads")


@dataclass(frozen=True)
class ServingOptions:
    """How one instance of the model serves requests (see its config.pbtxt comments)."""

    # Requests served at once; more wait for a slot, in arrival order.
    max_concurrent_requests: int = 256
    # How often every request's client is asked whether it cancelled (a round trip each).
    cancellation_check_period_ms: int = 100
    # Threads that send responses (each send is a round trip to the server). Few: under
    # load a lagging stream's updates merge, fewer sends for the same text.
    response_sender_threads: int = 2
    # The generation loop's event loop (EVENT_LOOPS). uvloop costs less CPU per engine
    # response than asyncio's loop (docs/performance.md).
    event_loop: str = "auto"
    # Seconds an engine request may send nothing before it is given up (bls.stall); 0:
    # never. Why 600: the config.pbtxt comment.
    engine_stall_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"event_loop must be one of {', '.join(EVENT_LOOPS)}, got {self.event_loop!r}"
            )
        timeout = self.engine_stall_timeout_s
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not (0 <= timeout < float("inf"))
        ):
            raise ConfigError(
                f"engine_stall_timeout_s must be a number of seconds (0: off), got {timeout!r}"
            )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> ServingOptions:
        values = parameter_values(parameters)
        options: dict[str, object] = {
            name: parse_positive_int(name, values[name]) for name in _COUNTS if name in values
        }
        if "engine_stall_timeout_s" in values:
            options["engine_stall_timeout_s"] = parse_seconds(
                "engine_stall_timeout_s", values["engine_stall_timeout_s"]
            )
        if "event_loop" in values:
            options["event_loop"] = values["event_loop"].lower()
        return cls(**options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RequestLogSettings:
    """The log line written for every finished request (see bls/metrics.py)."""

    level: str = "info"  # off, info or verbose (Triton's --log-verbose >= 1 shows it)
    text: bool = False  # also the prompt and output text: off, they may be private

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> RequestLogSettings:
        values = parameter_values(parameters)
        level = values.get("request_log_level", cls.level).strip().lower()
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"request_log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
            )
        text = values.get("request_log_text")
        return cls(level, parse_bool("request_log_text", text) if text is not None else False)
