"""Small writers for the Hugging Face tokenizer files both fixture tokenizers ship."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def added_tokens_decoder(tokens_by_id: dict[int, str]) -> dict[str, dict]:
    """The `added_tokens_decoder` entry of tokenizer_config.json: special, never split."""
    return {
        str(token_id): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token_id, content in tokens_by_id.items()
    }
