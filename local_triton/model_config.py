"""Read, check and edit Triton `config.pbtxt` files without losing their comments.

Our shipped configs are documented line by line, so edits (by the launcher's staging and
by `build_engines.py`) rewrite values in place instead of re-serialising the protobuf,
which would drop every comment. Every result is checked by parsing it as Triton's own
`ModelConfig` message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ModelConfigError(ValueError):
    """A config.pbtxt that Triton would refuse, or an edit that cannot be made."""


_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def _model_config_pb2():
    # Imported lazily: tritonclient[grpc] is a serve/test dependency, not a runtime one.
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def parse_model_config(text: str, source: str = "config.pbtxt"):
    """Parse `text` as Triton's ModelConfig protobuf; a clear error names the file and line."""
    from google.protobuf import text_format

    placeholders = find_placeholders(text)
    if placeholders:
        raise ModelConfigError(
            f"{source}: unfilled template placeholders {sorted(set(placeholders))}; "
            "configs must hold finished values"
        )
    config = _model_config_pb2().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelConfigError(f"{source}: not a valid Triton ModelConfig: {error}") from None
    return config


def load_model_config(path: Path):
    return parse_model_config(Path(path).read_text(encoding="utf-8"), source=str(path))


def find_placeholders(text: str) -> list[str]:
    """`${name}` template markers left in the text, ignoring those inside comments."""
    found: list[str] = []
    for line in text.splitlines():
        found.extend(_PLACEHOLDER.findall(line.split("#", 1)[0]))
    return found


def config_parameters(config) -> dict[str, str]:
    """The `parameters` map of a parsed ModelConfig as plain strings."""
    return {key: value.string_value for key, value in config.parameters.items()}


# One `parameters` entry as written in our configs and in Triton's documentation:
#   parameters { key: "name" value: { string_value: "..." } }
# possibly split across lines and with the colon after `value` omitted.
_GAP = r"(?:\s|#[^\n]*\n)*"  # whitespace and comments between tokens


def _parameter_pattern(key: str) -> re.Pattern[str]:
    return re.compile(
        r'(key\s*:\s*"'
        + re.escape(key)
        + r'"'
        + _GAP
        + r"value"
        + _GAP
        + r":?"
        + _GAP
        + r"\{"
        + _GAP
        + r"string_value\s*:\s*)"
        r'"((?:[^"\\]|\\.)*)"',
        re.MULTILINE,
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_parameters(text: str, values: Mapping[str, str], *, add_missing: bool = False) -> str:
    """Rewrite the string_value of existing `parameters` entries, keeping everything else.

    A key the config does not declare is an error (a typo would otherwise be a silent
    no-op) unless `add_missing`, which appends a new entry at the end.
    """
    for key, value in values.items():
        pattern = _parameter_pattern(key)
        matches = pattern.findall(text)
        if len(matches) > 1:
            raise ModelConfigError(f"parameter {key!r} is declared {len(matches)} times")
        if matches:
            text = pattern.sub(lambda m, v=value: m.group(1) + _quote(str(v)), text)
        elif add_missing:
            text = (
                text.rstrip("\n")
                + f"\nparameters {{\n  key: {_quote(key)}\n"
                + f"  value: {{ string_value: {_quote(str(value))} }}\n}}\n"
            )
        else:
            raise ModelConfigError(f"parameter {key!r} is not declared in this config")
    return text


def set_top_level_int(text: str, field: str, value: int) -> str:
    """Rewrite a top-level integer field such as `max_batch_size: 64`."""
    pattern = re.compile(r"^(\s*" + re.escape(field) + r"\s*:\s*)-?\d+", re.MULTILINE)
    if not pattern.search(text):
        raise ModelConfigError(f"field {field!r} is not set in this config")
    return pattern.sub(lambda m: m.group(1) + str(int(value)), text, count=1)


def set_model_name(text: str, name: str) -> str:
    pattern = re.compile(r'^(\s*name\s*:\s*)"[^"]*"', re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: m.group(1) + _quote(name), text, count=1)
    return f"name: {_quote(name)}\n" + text


def set_instance_count(text: str, count: int) -> str:
    """Rewrite `count` inside the (single) instance_group block."""
    pattern = re.compile(r"(instance_group\s*\[\s*\{[^}]*?\bcount\s*:\s*)\d+", re.DOTALL)
    if not pattern.search(text):
        raise ModelConfigError("config has no instance_group with a count")
    return pattern.sub(lambda m: m.group(1) + str(int(count)), text, count=1)


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as declared: what two configs must agree on."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool


def tensor_specs(config) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """Inputs and outputs of a parsed ModelConfig, by name."""
    pb2 = _model_config_pb2()

    def spec(tensor, optional: bool) -> TensorSpec:
        return TensorSpec(
            name=tensor.name,
            data_type=pb2.DataType.Name(tensor.data_type),
            dims=tuple(tensor.dims),
            optional=optional,
        )

    inputs = {t.name: spec(t, t.optional) for t in config.input}
    outputs = {t.name: spec(t, False) for t in config.output}
    return inputs, outputs
