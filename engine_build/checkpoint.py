"""Look at a Hugging Face checkpoint directory before anything is built from it.

A missing directory, a missing config.json, no weights or no tokenizer each become one
clear error here, before a long conversion starts and fails half way.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from engine_build.options import BuildError

# Weight files of a Hugging Face checkpoint (any of these is enough).
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.pt", "*.pth")

# Files that make a tokenizer loadable on their own, each a tuple of files that must
# all be present: a fast tokenizer, a SentencePiece model, a BPE vocabulary + merges,
# a WordPiece vocabulary, or tiktoken ranks.
_TOKENIZER_SETS: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),
    ("tokenizer.model",),
    ("spiece.model",),
    ("vocab.json", "merges.txt"),
    ("vocab.txt",),
    ("tekken.json",),
)
_TOKENIZER_GLOBS = ("*.tiktoken",)

# What is copied into OUT/tokenizer: the tokenizer itself plus the small files that
# transformers reads to pick the tokenizer class and the special/end tokens.
_TOKENIZER_COPY_PATTERNS = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "tekken.json",
    "*.tiktoken",
    "chat_template*",
    "config.json",
    "generation_config.json",
)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    architecture: str  # config.json "architectures"[0], e.g. "LlamaForCausalLM"
    model_type: str
    max_position_embeddings: int | None
    is_moe: bool
    # config.json "auto_map": the checkpoint brings Python code that transformers runs
    # only with trust_remote_code=True.
    has_custom_code: bool = False


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Read config.json and check that weights are present; raise BuildError otherwise."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise BuildError(
            f"checkpoint {path} does not exist or is not a directory: pass --checkpoint "
            "a Hugging Face model directory (config.json, weights, tokenizer)"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BuildError(
            f"checkpoint {path} has no config.json: it is not a Hugging Face model directory"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BuildError(f"{config_file} is not valid JSON: {error}") from None
    if not _matches_any(path, _WEIGHT_PATTERNS):
        raise BuildError(
            f"checkpoint {path} holds no weights (expected *.safetensors or pytorch_model*.bin)"
        )
    architectures = config.get("architectures") or []
    if not architectures:
        raise BuildError(
            f'{config_file} names no architecture ("architectures" is missing); '
            "TensorRT-LLM picks its model class from it"
        )
    return CheckpointInfo(
        path=path,
        architecture=str(architectures[0]),
        model_type=str(config.get("model_type", "")),
        max_position_embeddings=config.get("max_position_embeddings"),
        is_moe=any(
            key in config for key in ("num_local_experts", "num_experts", "n_routed_experts")
        ),
        has_custom_code=bool(config.get("auto_map")),
    )


def check_tokenizer_dir(path: Path, *, given: bool) -> None:
    """Raise BuildError unless `path` holds the files of a loadable tokenizer."""
    path = Path(path)
    option = "--tokenizer-dir" if given else "the checkpoint (no --tokenizer-dir given)"
    if not path.is_dir():
        raise BuildError(f"tokenizer directory {path} ({option}) does not exist")
    present = {entry.name for entry in path.iterdir() if entry.is_file()}
    if any(all(name in present for name in group) for group in _TOKENIZER_SETS):
        return
    if _matches_any(path, _TOKENIZER_GLOBS):
        return
    expected = " or ".join("+".join(group) for group in _TOKENIZER_SETS)
    hint = "" if given else "; pass --tokenizer-dir with the model's tokenizer"
    raise BuildError(f"no tokenizer in {path} ({option}): expected {expected}{hint}")


def tokenizer_files(path: Path) -> list[Path]:
    """The files of `path` that OUT/tokenizer gets (no weights)."""
    return sorted(
        entry
        for entry in Path(path).iterdir()
        if entry.is_file()
        and any(fnmatch.fnmatch(entry.name, pattern) for pattern in _TOKENIZER_COPY_PATTERNS)
    )


def _matches_any(path: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(path.glob(pattern), None) is not None for pattern in patterns)
