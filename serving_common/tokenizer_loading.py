"""Load the tokenizer of a model from its directory, with errors a deployer can act on."""

from __future__ import annotations

from pathlib import Path

# Files of which at least one is in every directory AutoTokenizer can load from.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tekken.json",
)


class TokenizerLoadError(ValueError):
    """The tokenizer directory is missing, is not a tokenizer, or fails to load."""


def load_tokenizer(tokenizer_dir: str | Path, trust_remote_code: bool = False):
    """`AutoTokenizer.from_pretrained(tokenizer_dir)`, local files only.

    `trust_remote_code` runs Python code shipped in the directory; it stays off unless
    the deployment turns it on. Returns a `PreTrainedTokenizerBase` (fast when the
    directory allows).
    """
    directory = Path(tokenizer_dir)
    if not directory.exists():
        raise TokenizerLoadError(f"tokenizer_dir {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise TokenizerLoadError(f"tokenizer_dir {str(directory)!r} is not a directory")
    present = [name for name in TOKENIZER_FILES if (directory / name).is_file()]
    if not present:
        raise TokenizerLoadError(
            f"tokenizer_dir {str(directory)!r} is not a tokenizer directory: it has none of "
            f"{', '.join(TOKENIZER_FILES)}"
        )
    # Imported here: transformers is slow to import, and the errors above need none of it.
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(directory), trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as error:  # transformers raises many types; all mean "cannot load"
        hint = ""
        if "trust_remote_code" in str(error) and not trust_remote_code:
            hint = " (the tokenizer needs custom code: set trust_remote_code to true)"
        raise TokenizerLoadError(
            f"could not load a tokenizer from {str(directory)!r}{hint}: "
            f"{type(error).__name__}: {error}"
        ) from error
