"""The postprocessing model's settings, read from its config.pbtxt parameters.

A bad value is a deployment mistake: it raises `ConfigError` at model load, naming the
parameter, the value and what is allowed (the parsing helpers are shared with the
preprocessing model so both read parameters the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving_common.config import (
    DEFAULT_TOKENIZER_DIR,
    check_known_parameters,
    parameter_values,
    parse_bool,
    parse_tokenizer_dir,
)

# The parameters this model reads; any other key is refused (a misspelt key would
# otherwise leave its setting at the default without a word).
POSTPROCESSING_PARAMETERS = (
    "tokenizer_dir",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "trust_remote_code",
)


@dataclass(frozen=True)
class PostprocessingSettings:
    """Everything the postprocessing model reads from its parameters."""

    tokenizer_dir: Path = Path(DEFAULT_TOKENIZER_DIR)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    trust_remote_code: bool = False

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> PostprocessingSettings:
        values = parameter_values(parameters)
        check_known_parameters(values, POSTPROCESSING_PARAMETERS, "postprocessing")
        return cls(
            tokenizer_dir=parse_tokenizer_dir(values),
            skip_special_tokens=parse_bool(
                "skip_special_tokens", values.get("skip_special_tokens", "true")
            ),
            spaces_between_special_tokens=parse_bool(
                "spaces_between_special_tokens",
                values.get("spaces_between_special_tokens", "true"),
            ),
            trust_remote_code=parse_bool(
                "trust_remote_code", values.get("trust_remote_code", "false")
            ),
        )
