"""One sequence's deltas: the token count each delta reports."""

from __future__ import annotations

import pytest

from bls.engine_io import EngineRow
from bls.sequence import SequenceState
from postprocessing.detokenizer import IncrementalDetokenizer
from serving_common.tokenizer_loading import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(fixture_paths):
    return load_tokenizer(fixture_paths.sentencepiece_tokenizer)


def new_sequence(tokenizer, max_tokens: int = 100) -> SequenceState:
    return SequenceState(
        batch_index=0,
        sequence_index=0,
        max_tokens=max_tokens,
        detokenizer=IncrementalDetokenizer(tokenizer),
        stops=None,
    )


def test_each_delta_counts_the_tokens_it_adds_not_a_running_total(tokenizer):
    ids = tokenizer.encode("Hello world, 世界 and more", add_special_tokens=False)
    assert len(ids) >= 5
    sequence = new_sequence(tokenizer)
    sequence.consume(EngineRow(0, 0, tuple(ids[:3])))
    first = sequence.take_delta()
    sequence.consume(EngineRow(0, 0, tuple(ids[3:5])))
    second = sequence.take_delta()
    sequence.consume(EngineRow(0, 0, tuple(ids[5:])))
    sequence.end_of_generation()
    last = sequence.take_delta()
    assert (first.num_output_tokens, second.num_output_tokens) == (3, 2)
    assert last.num_output_tokens == len(ids) - 5
    # Nothing new since the last delta: it adds no tokens.
    assert sequence.take_delta().num_output_tokens == 0
    # Triton's OpenAI frontend sums the streamed counts into usage.completion_tokens.
    assert first.num_output_tokens + second.num_output_tokens + last.num_output_tokens == len(ids)


def test_a_single_delta_counts_every_token(tokenizer):
    ids = tokenizer.encode("Hello world", add_special_tokens=False)
    sequence = new_sequence(tokenizer)
    for token in ids:  # one engine response per token, one delta at the end (stream=false)
        sequence.consume(EngineRow(0, 0, (token,)))
    sequence.end_of_generation()
    assert sequence.take_delta().num_output_tokens == len(ids)
