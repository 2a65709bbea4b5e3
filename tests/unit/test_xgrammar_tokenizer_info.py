"""llm-bls-build --guided-decoding: the tokenizer-info file the C++ backend reads.

The backend builds its xgrammar TokenizerInfo from the file's three keys alone
(`xgrammar::TokenizerInfo::FromHuggingFace(encoded_vocab, tokenizer_str, vocab_size,
stop_token_ids)`, see engine_build/xgrammar_info.py). The test makes the same TokenizerInfo
from the written file, through xgrammar's Python binding of the same steps, and compares it
with what xgrammar builds from the tokenizer itself, for both fixture tokenizers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_build.options import BuildError
from engine_build.xgrammar_info import tokenizer_info, write_tokenizer_info
from serving_common.tokenizer_loading import load_tokenizer

xgrammar = pytest.importorskip("xgrammar")


@pytest.fixture(scope="module", params=["bpe_tokenizer", "sentencepiece_tokenizer"])
def tokenizer_dir(request) -> Path:
    from offline_fixtures import ensure_fixtures

    return getattr(ensure_fixtures(), request.param)


def info_as_the_backend_reads_it(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    # What C++ FromHuggingFace does: detect the vocabulary's encoding from tokenizer_str.
    metadata = xgrammar.TokenizerInfo._detect_metadata_from_hf(data["tokenizer_str"])
    return xgrammar.TokenizerInfo(
        data["encoded_vocab"],
        metadata["vocab_type"],
        stop_token_ids=data["stop_token_ids"],
        add_prefix_space=metadata["add_prefix_space"],
    )


def test_the_file_gives_the_backend_the_tokenizer_info_xgrammar_builds(tokenizer_dir, tmp_path):
    path = write_tokenizer_info(tokenizer_dir, tmp_path / "xgrammar_tokenizer_info.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(data) == ["encoded_vocab", "stop_token_ids", "tokenizer_str"]

    tokenizer = load_tokenizer(tokenizer_dir)
    expected = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
    got = info_as_the_backend_reads_it(path)
    assert got.vocab_type == expected.vocab_type
    assert got.add_prefix_space == expected.add_prefix_space
    assert got.vocab_size == expected.vocab_size == len(tokenizer.get_vocab())
    assert got.stop_token_ids == expected.stop_token_ids == [tokenizer.eos_token_id]
    assert got.decoded_vocab == expected.decoded_vocab
    # TensorRT-LLM's own script writes the vocabulary sorted by id: the same list here.
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert data["encoded_vocab"] == [token for token, _ in by_id]


def test_the_same_schema_compiles_to_the_same_masks_from_the_file(tokenizer_dir, tmp_path):
    path = write_tokenizer_info(tokenizer_dir, tmp_path / "info.json")
    schema = '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'
    masks = []
    for info in (
        info_as_the_backend_reads_it(path),
        xgrammar.TokenizerInfo.from_huggingface(load_tokenizer(tokenizer_dir)),
    ):
        matcher = xgrammar.GrammarMatcher(
            xgrammar.GrammarCompiler(info, max_threads=1).compile_json_schema(schema)
        )
        bitmask = xgrammar.allocate_token_bitmask(1, info.vocab_size)
        matcher.fill_next_token_bitmask(bitmask)
        masks.append(bitmask.tolist())
    assert masks[0] == masks[1]
    assert any(word != 0 for word in masks[0][0])  # "{" (and whitespace) is allowed


def test_a_vocabulary_with_holes_keeps_every_token_at_its_id():
    class Backend:
        def to_str(self) -> str:
            return "{}"

    class Tokenizer:
        backend_tokenizer = Backend()
        eos_token_id = 3

        def get_vocab(self) -> dict[str, int]:
            return {"a": 0, "b": 1, "</s>": 3}

    assert tokenizer_info(Tokenizer())["encoded_vocab"] == ["a", "b", "", "</s>"]


def test_a_tokenizer_the_backend_cannot_read_is_refused():
    class SlowTokenizer:
        eos_token_id = 2

    with pytest.raises(BuildError, match="fast tokenizer"):
        tokenizer_info(SlowTokenizer())

    class NoEos:
        backend_tokenizer = object()
        eos_token_id = None

    with pytest.raises(BuildError, match="no EOS token"):
        tokenizer_info(NoEos())
