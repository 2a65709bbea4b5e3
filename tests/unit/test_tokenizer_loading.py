"""Tokenizer directories as users have them, not only as our fixtures write them."""

import json
import shutil
from pathlib import Path

from offline_fixtures.corpus import TRAINING_TEXTS
from serving_common.tokenizer_loading import load_tokenizer


def test_a_directory_with_only_tokenizer_model_loads_and_encodes_the_same(
    fixture_paths, tmp_path: Path
):
    """Llama-2 style: tokenizer.model and tokenizer_config.json, no tokenizer.json."""
    source = fixture_paths.sentencepiece_tokenizer
    shutil.copyfile(source / "tokenizer.model", tmp_path / "tokenizer.model")
    config = json.loads((source / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert not (tmp_path / "tokenizer.json").exists()

    converted = load_tokenizer(tmp_path)
    reference = load_tokenizer(source)
    for text in TRAINING_TEXTS:
        assert converted.encode(text) == reference.encode(text), text
