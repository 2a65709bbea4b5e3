"""`ensure_fixtures`: the three offline fixtures, built once per recipe and reused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from offline_fixtures import store

ENV_ROOT = "LLM_BLS_FIXTURES_DIR"
# Bump to force a rebuild when something outside the hashed sources changes the result.
RECIPE_VERSION = "1"

_PACKAGE_DIR = Path(__file__).resolve().parent
_SHARED_SOURCES = ("corpus.py", "chat_templates.py", "hf_files.py", "fixtures.py")


@dataclass(frozen=True)
class FixturePaths:
    sentencepiece_tokenizer: Path
    bpe_tokenizer: Path
    tiny_llama: Path
    # A tiny Llama trained to recite offline_fixtures.reciting_llama.RECITALS.
    reciting_llama: Path


def default_root() -> Path:
    """$LLM_BLS_FIXTURES_DIR, else `<checkout>/.fixtures`, else a per-user cache dir."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".fixtures"
    return Path.home() / ".cache" / "triton-llm-bls" / "fixtures"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _key(recipe_module: str, libraries: tuple[str, ...], extra: tuple[str, ...] = ()) -> str:
    files = [_PACKAGE_DIR / name for name in (*_SHARED_SOURCES, recipe_module)]
    parts = (RECIPE_VERSION, *(f"{lib}=={_version(lib)}" for lib in libraries), *extra)
    return store.source_key(parts, files)


def ensure_fixtures(root: Path | None = None) -> FixturePaths:
    """Create (if missing or outdated) and return the fixture directories under `root`."""
    root = Path(root) if root is not None else default_root()
    sp_key = _key("sentencepiece_tokenizer.py", ("sentencepiece", "tokenizers"))
    bpe_key = _key("bpe_tokenizer.py", ("tokenizers",))
    llama_key = _key("tiny_llama.py", ("torch", "transformers", "safetensors"), (sp_key,))
    reciting_key = _key("reciting_llama.py", ("torch", "transformers", "safetensors"), (sp_key,))
    paths = FixturePaths(
        sentencepiece_tokenizer=root / "sentencepiece_tokenizer",
        bpe_tokenizer=root / "bpe_tokenizer",
        tiny_llama=root / "tiny_llama",
        reciting_llama=root / "reciting_llama",
    )
    wanted = (
        (paths.sentencepiece_tokenizer, sp_key),
        (paths.bpe_tokenizer, bpe_key),
        (paths.tiny_llama, llama_key),
        (paths.reciting_llama, reciting_key),
    )
    if all(store.is_current(path, key) for path, key in wanted):
        return paths

    # Builders are imported lazily: the fast path above must not pay for torch.
    from offline_fixtures.bpe_tokenizer import build_bpe_tokenizer
    from offline_fixtures.reciting_llama import build_reciting_llama
    from offline_fixtures.sentencepiece_tokenizer import build_sentencepiece_tokenizer
    from offline_fixtures.tiny_llama import build_tiny_llama

    with store.root_lock(root):
        store.ensure_built(
            root, paths.sentencepiece_tokenizer.name, sp_key, build_sentencepiece_tokenizer
        )
        store.ensure_built(root, paths.bpe_tokenizer.name, bpe_key, build_bpe_tokenizer)
        store.ensure_built(
            root,
            paths.tiny_llama.name,
            llama_key,
            lambda out: build_tiny_llama(out, paths.sentencepiece_tokenizer),
        )
        store.ensure_built(
            root,
            paths.reciting_llama.name,
            reciting_key,
            lambda out: build_reciting_llama(out, paths.sentencepiece_tokenizer),
        )
    return paths
