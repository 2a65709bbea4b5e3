"""The UTF-8 helpers against `bytes.decode("utf-8", "replace")`, byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postprocessing.utf8 import (
    CharacterAssembler,
    decode_complete,
    decode_final,
    is_unfinished_character,
)
from tests.unit.detokenizer_oracle import REPLACEMENT, settled_text

SETTINGS = settings(max_examples=400, derandomize=True, deadline=None)

# Mostly UTF-8 with every kind of damage mixed in: random bytes, characters of 1 to 4
# bytes, and the sequences whose second byte has a range of its own (E0, ED, F0, F4).
pieces = st.one_of(
    st.binary(min_size=1, max_size=4),
    st.text(max_size=3).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.tuples(
        st.sampled_from([0xE0, 0xED, 0xF0, 0xF4, 0xC2, 0xE4]),
        st.integers(min_value=0x80, max_value=0xBF),
    ).map(bytes),
)
byte_strings = st.lists(pieces, max_size=10).map(b"".join)


@pytest.mark.parametrize(
    ("data", "unfinished"),
    [
        (b"\xe4", True),
        (b"\xe4\xb8", True),
        (b"\xe4\xb8\xad", False),  # a whole character
        (b"\xf0\x9f\x91", True),
        (b"\xe0\xa0", True),
        (b"\xe0\x80", False),  # overlong
        (b"\xed\x9f", True),
        (b"\xed\xa0", False),  # a surrogate
        (b"\xf0\x90", True),
        (b"\xf0\x8f", False),  # overlong
        (b"\xf4\x8f", True),
        (b"\xf4\x90", False),  # above U+10FFFF
        (b"\xc0", False),
        (b"\xc1", False),
        (b"\xf5", False),
        (b"\x80", False),
        (b"A", False),
        (b"", False),
    ],
)
def test_unfinished_characters_follow_unicode_table_3_7(data, unfinished):
    assert is_unfinished_character(data) is unfinished
    # The same thing said by the reference: some continuation makes it a character.
    assert (settled_text(data) != data.decode("utf-8", "replace")) is unfinished


@SETTINGS
@given(data=byte_strings, cut=st.integers(min_value=0, max_value=40))
def test_decode_complete_returns_everything_settled_and_keeps_the_rest(data, cut):
    head, rest = data[:cut], data[cut:]
    text, tail = decode_complete(head)
    assert text == settled_text(head)
    assert len(tail) < 4
    assert text + decode_final(tail + rest) == data.decode("utf-8", "replace")


@SETTINGS
@given(data=byte_strings)
def test_byte_pieces_are_grouped_as_soon_as_each_unit_is_known(data):
    assembler = CharacterAssembler()
    returned = ""
    ids = [1000 + index for index in range(len(data))]  # one made-up id per byte
    grouped: list[int] = []
    for count, (token_id, value) in enumerate(zip(ids, data, strict=True), start=1):
        for group in assembler.push(token_id, value):
            grouped.extend(group.ids)
            unit = bytes(data[i - 1000] for i in group.ids)
            returned += unit.decode("utf-8") if group.valid else REPLACEMENT
            if not group.valid:
                assert unit.decode("utf-8", "replace") == REPLACEMENT  # one subpart
        assert returned == settled_text(data[:count])
        assert len(assembler.held_ids) <= 3
        assert grouped + list(assembler.held_ids) == ids[:count]  # in order, none lost
    for group in assembler.flush():
        assert not group.valid
        returned += REPLACEMENT
    assert returned == data.decode("utf-8", "replace")
    assert assembler.held_ids == ()
