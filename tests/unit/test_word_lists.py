"""The TensorRT-LLM word-list format: encoding, batching, and validating decode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving_common.word_lists import batch_word_lists, decode_word_list, encode_word_list


def test_encode_matches_the_documented_example():
    out = encode_word_list([[5, 6], [7]])
    assert out.dtype == np.int32
    assert out.tolist() == [[5, 6, 7], [2, 3, -1]]


def test_encode_no_words_is_one_padding_column():
    out = encode_word_list([])
    assert out.shape == (2, 1)
    assert out.tolist() == [[0], [-1]]
    assert decode_word_list(out) == []


def test_encode_refuses_empty_words_and_negative_ids():
    with pytest.raises(ValueError, match="word 1 has no tokens"):
        encode_word_list([[1], []])
    with pytest.raises(ValueError, match="negative token id -3"):
        encode_word_list([[1, -3]])


def test_batch_pads_every_prompt_to_the_same_width():
    out = batch_word_lists([encode_word_list([[5, 6], [7]]), None, encode_word_list([[9]])])
    assert out.shape == (3, 2, 3)
    assert out.dtype == np.int32
    assert out[0].tolist() == [[5, 6, 7], [2, 3, -1]]
    assert out[1].tolist() == [[0, 0, 0], [-1, -1, -1]]
    assert out[2].tolist() == [[9, 0, 0], [1, -1, -1]]
    assert [decode_word_list(row) for row in out] == [[[5, 6], [7]], [], [[9]]]


def test_batch_of_nothing_but_none_has_width_one():
    out = batch_word_lists([None, None])
    assert out.shape == (2, 2, 1)
    assert out.tolist() == [[[0], [-1]], [[0], [-1]]]


def test_batch_refuses_empty_batch_and_names_the_bad_prompt():
    with pytest.raises(ValueError, match="at least one prompt"):
        batch_word_lists([])
    bad = np.array([[5, 6], [3, -1]], dtype=np.int32)  # offset past row 0
    with pytest.raises(ValueError, match="prompt 1: offset 0 is 3, past the end"):
        batch_word_lists([None, bad])


def test_decode_accepts_width_zero_as_empty():
    assert decode_word_list(np.empty((2, 0), dtype=np.int32)) == []


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 2), dtype=np.int32), r"shape \[2, N\].*got shape \[3, 2\]"),
        (np.zeros((1, 2, 2), dtype=np.int32), r"got shape \[1, 2, 2\]"),
        (np.zeros(4, dtype=np.int32), r"got shape \[4\]"),
        (np.array([[1.5, 2.0], [1.0, -1.0]]), "must hold integers"),
        (np.array([[5, 6, 7], [2, 2, -1]]), "strictly increasing.*offset 1 is 2 after 2"),
        (np.array([[5, 6, 7], [2, 1, -1]]), "strictly increasing.*offset 1 is 1 after 2"),
        (np.array([[5, 6], [0, -1]]), "offset 0 is 0 after 0"),
        (np.array([[5, 6], [3, -1]]), "offset 0 is 3, past the end of row 0 \\(length 2\\)"),
        (np.array([[5, 6, 7], [1, -1, 3]]), "found 3 after the padding starts at position 1"),
        (np.array([[5, 6], [-2, -1]]), "strictly increasing and positive; offset 0 is -2"),
        (np.array([[5, -6], [1, 2]]), "word 1 has a negative token id -6"),
    ],
)
def test_decode_names_what_is_malformed(array, message):
    with pytest.raises(ValueError, match=message):
        decode_word_list(array)


words_strategy = st.lists(
    st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=6),
    max_size=8,
)


@given(st.lists(words_strategy, min_size=1, max_size=4))
def test_encode_batch_decode_round_trip(batch):
    stacked = batch_word_lists([encode_word_list(words) for words in batch])
    widest = max(sum(len(w) for w in words) for words in batch)
    assert stacked.shape == (len(batch), 2, max(1, widest))
    assert [decode_word_list(row) for row in stacked] == batch
