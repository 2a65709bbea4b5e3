"""TokenizerProfile across tokenizers versions: DecodeStream only where it is safe."""

from __future__ import annotations

import pytest
import tokenizers

import postprocessing.tokenizer_profile as tokenizer_profile
from offline_fixtures import ensure_fixtures
from postprocessing import IncrementalDetokenizer
from serving_common.tokenizer_loading import load_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé 世界 and emoji 🦊 too."


@pytest.fixture(scope="module")
def sp_path():
    return ensure_fixtures().sentencepiece_tokenizer


def stream_deltas(tokenizer, ids: list[int]) -> str:
    detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=True)
    text = "".join(detokenizer.push([token_id]) for token_id in ids)
    return text + detokenizer.finish()


@pytest.mark.parametrize(("version", "safe"), [("0.21.0", False), ("0.21.1", True)])
def test_decode_stream_is_used_only_from_tokenizers_0_21_1(
    sp_path, monkeypatch, version: str, safe: bool
):
    """tokenizers 0.21.0's DecodeStream panics (huggingface/tokenizers PR #1699)."""
    if tokenizer_profile.DecodeStream is None:
        pytest.skip("this tokenizers has no DecodeStream at all")
    if safe and not tokenizer_profile.decode_stream_is_safe():
        pytest.skip(f"the installed tokenizers {tokenizers.__version__} has the panicking one")
    monkeypatch.setattr(tokenizers, "__version__", version)
    # A fresh tokenizer object: profiles are cached per tokenizer.
    tokenizer = load_tokenizer(sp_path)
    assert tokenizer_profile.profile_for(tokenizer).supports_decode_stream is safe
    ids = tokenizer.encode(TEXT, add_special_tokens=True)
    expected = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    # Either way the streamed text is the full decode.
    assert stream_deltas(tokenizer, ids) == expected
