"""The word-list tensor format of TensorRT-LLM (stop_words_list, bad_words_list).

Per prompt an INT32 array [2, N]: row 0 holds the token ids of all words, concatenated
and padded with 0; row 1 holds the cumulative end offset of each word in row 0, padded
with -1. Words [[5, 6], [7]] become [[5, 6, 7], [2, 3, -1]]. A batch pads every prompt
to the same N. "No words" is [[0], [-1]]: N is at least 1, as TensorRT-LLM's own
preprocessing produces it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROW_PAD = 0
OFFSET_PAD = -1


def encode_word_list(words: Sequence[Sequence[int]]) -> np.ndarray:
    """Token sequences to one int32 [2, N] word list (N = total tokens, at least 1)."""
    flat: list[int] = []
    offsets: list[int] = []
    for index, word in enumerate(words):
        if len(word) == 0:
            raise ValueError(f"word {index} has no tokens; a word list holds non-empty words")
        for token in word:
            if int(token) < 0:
                raise ValueError(f"word {index} has a negative token id {int(token)}")
        flat.extend(int(token) for token in word)
        offsets.append(len(flat))
    width = max(1, len(flat))
    out = np.empty((2, width), dtype=np.int32)
    out[0, :] = ROW_PAD
    out[1, :] = OFFSET_PAD
    out[0, : len(flat)] = flat
    out[1, : len(offsets)] = offsets
    return out


def batch_word_lists(per_prompt: Sequence[np.ndarray | None]) -> np.ndarray:
    """Stack per-prompt [2, n] word lists into [B, 2, N], padding each to the widest.

    None stands for a prompt without words. Every list is validated first.
    """
    if len(per_prompt) == 0:
        raise ValueError("batch_word_lists needs at least one prompt")
    lists = [encode_word_list([]) if item is None else np.asarray(item) for item in per_prompt]
    for index, item in enumerate(lists):
        try:
            decode_word_list(item)
        except ValueError as error:
            raise ValueError(f"word list of prompt {index}: {error}") from None
    width = max(1, *(item.shape[1] for item in lists))
    out = np.empty((len(lists), 2, width), dtype=np.int32)
    out[:, 0, :] = ROW_PAD
    out[:, 1, :] = OFFSET_PAD
    for index, item in enumerate(lists):
        out[index, :, : item.shape[1]] = item
    return out


def decode_word_list(arr: np.ndarray) -> list[list[int]]:
    """Check one [2, N] word list and return its words as lists of token ids.

    Raises ValueError naming what is wrong: not two rows, non-integer values, offsets
    not strictly increasing, offsets past row 0, values after the -1 padding, negative
    token ids. An array of width 0 is an empty list.
    """
    array = np.asarray(arr)
    if array.ndim != 2 or array.shape[0] != 2:
        raise ValueError(
            f"a word list must have shape [2, N] (row 0 token ids, row 1 end offsets), "
            f"got shape {list(array.shape)}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a word list must hold integers, got dtype {array.dtype}")
    width = array.shape[1]
    ids = [int(v) for v in array[0]]
    offsets = [int(v) for v in array[1]]
    count = 0
    while count < width and offsets[count] != OFFSET_PAD:
        count += 1
    trailing = [v for v in offsets[count:] if v != OFFSET_PAD]
    if trailing:
        raise ValueError(
            f"row 1 must be offsets followed only by -1 padding; found {trailing[0]} "
            f"after the padding starts at position {count}"
        )
    words: list[list[int]] = []
    start = 0
    for position, end in enumerate(offsets[:count]):
        if end <= start:
            raise ValueError(
                f"offsets must be strictly increasing and positive; offset {position} is "
                f"{end} after {start}"
            )
        if end > width:
            raise ValueError(f"offset {position} is {end}, past the end of row 0 (length {width})")
        word = ids[start:end]
        negative = [t for t in word if t < 0]
        if negative:
            raise ValueError(f"word {position} has a negative token id {negative[0]}")
        words.append(word)
        start = end
    return words
