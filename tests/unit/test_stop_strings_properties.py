"""StopStringMatcher against a brute-force reference, on any text split any way.

The reference scans the whole text at once: the first position where some stop string
ends wins, and among stop strings ending there the longest. The alphabet is small and
mixes ASCII, CJK and an astral-plane emoji so that matches, near-misses and overlaps
are frequent.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from bls.stop_strings import StopStringMatcher

ALPHABET = ["a", "b", "c", "语", "😀"]
SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)

texts = st.lists(st.sampled_from(ALPHABET), max_size=30).map("".join)
stop_lists = st.lists(
    st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=4).map("".join),
    min_size=1,
    max_size=4,
)


def reference(text: str, stops: list[str], include: bool) -> tuple[str, str | None]:
    for end in range(1, len(text) + 1):
        ending_here = [stop for stop in stops if text[:end].endswith(stop)]
        if ending_here:
            stop = max(ending_here, key=len)
            return (text[:end] if include else text[: end - len(stop)]), stop
    return text, None


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    bounds = [0, *points, len(text)]
    return [text[start:end] for start, end in pairwise(bounds)]


def longest_pending_prefix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    for length in range(min(len(text), max(map(len, stops)) - 1), 0, -1):
        suffix = text[len(text) - length :]
        if any(len(stop) > length and stop.startswith(suffix) for stop in stops):
            return length
    return 0


@SETTINGS
@given(texts, stop_lists, st.lists(st.integers(0, 30), max_size=8), st.booleans())
def test_any_split_gives_the_reference_result(text, stops, cuts, include):
    matcher = StopStringMatcher(stops, include_stop_str_in_output=include)
    pieces = split(text, cuts)
    assert "".join(pieces) == text
    output = "".join(matcher.feed(piece).text for piece in pieces) + matcher.flush()
    assert (output, matcher.matched) == reference(text, stops, include)


@SETTINGS
@given(texts, stop_lists, st.lists(st.integers(0, 30), max_size=8), st.booleans())
def test_emitted_text_is_always_a_prefix_of_the_final_output(text, stops, cuts, include):
    final, _ = reference(text, stops, include)
    matcher = StopStringMatcher(stops, include_stop_str_in_output=include)
    emitted = ""
    for piece in split(text, cuts):
        emitted += matcher.feed(piece).text
        assert final.startswith(emitted)


@SETTINGS
@given(texts, texts, stop_lists, st.booleans())
def test_nothing_is_emitted_that_later_text_could_turn_into_a_stop_string(
    head, tail, stops, include
):
    # Whatever comes next, what was emitted after `head` stays a prefix of the output.
    matcher = StopStringMatcher(stops, include_stop_str_in_output=include)
    emitted = matcher.feed(head).text
    final, _ = reference(head + tail, stops, include)
    assert final.startswith(emitted)


@SETTINGS
@given(texts, stop_lists, st.lists(st.integers(0, 30), max_size=8))
def test_exactly_the_longest_possible_start_is_held_back(text, stops, cuts):
    matcher = StopStringMatcher(stops)
    fed = emitted = ""
    for piece in split(text, cuts):
        check = matcher.feed(piece)
        if check.matched is not None:
            return
        fed += piece
        emitted += check.text
        assert emitted + matcher.held_back == fed
        assert len(matcher.held_back) == longest_pending_prefix(fed, stops)
        assert len(matcher.held_back) <= max(map(len, stops)) - 1


@SETTINGS
@given(texts, stop_lists, st.lists(st.integers(0, 30), max_size=8))
def test_output_never_overlaps_the_stop_string(text, stops, cuts):
    matcher = StopStringMatcher(stops)
    output = ""
    for piece in split(text, cuts):
        check = matcher.feed(piece)
        output += check.text
        if check.matched is not None:
            # The stop string starts exactly where the output ends ...
            assert text.startswith(output + check.matched)
            break
    else:
        output += matcher.flush()
    # ... and no stop string occurs inside the output.
    assert not [stop for stop in stops if stop in output]


@SETTINGS
@given(texts, stop_lists, st.lists(st.integers(0, 30), max_size=8))
def test_match_end_locates_the_end_of_the_stop_string_in_the_chunk(text, stops, cuts):
    matcher = StopStringMatcher(stops)
    consumed = 0
    for piece in split(text, cuts):
        check = matcher.feed(piece)
        if check.matched is not None:
            end = consumed + check.match_end
            assert text[:end].endswith(check.matched)
            assert reference(text, stops, include=True)[0] == text[:end]
            return
        consumed += len(piece)
