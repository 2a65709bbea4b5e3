"""StopStringMatcher on worked examples: splits, multi-byte text, priority, hold-back."""

from __future__ import annotations

import time

import pytest

from bls.stop_strings import StopCheck, StopStringMatcher


def feed_all(matcher: StopStringMatcher, pieces: list[str]) -> tuple[list[str], str]:
    """Emitted text per feed, and what flush releases at the end."""
    emitted = [matcher.feed(piece).text for piece in pieces]
    return emitted, matcher.flush()


def test_stop_string_spanning_three_feeds():
    matcher = StopStringMatcher(["<|im_end|>"])
    assert matcher.feed("Hi there<|") == StopCheck("Hi there")
    assert matcher.held_back == "<|"
    assert matcher.feed("im_") == StopCheck("")
    assert matcher.held_back == "<|im_"
    check = matcher.feed("end|> and more")
    assert check == StopCheck("", matched="<|im_end|>", match_end=5)
    assert matcher.matched == "<|im_end|>"
    assert matcher.flush() == ""


def test_stop_string_ending_inside_a_feed_cuts_the_rest():
    matcher = StopStringMatcher(["STOP"])
    check = matcher.feed("foo STOP bar")
    assert check == StopCheck("foo ", matched="STOP", match_end=8)
    # Text after the match is dropped: len("foo STOP bar") - match_end characters.
    assert len("foo STOP bar") - check.match_end == len(" bar")


def test_include_stop_str_in_output_keeps_the_stop_string():
    matcher = StopStringMatcher(["STOP"], include_stop_str_in_output=True)
    assert matcher.feed("foo ST") == StopCheck("foo ")
    assert matcher.feed("OP bar") == StopCheck("STOP", matched="STOP", match_end=2)


def test_cjk_stop_string_split_between_feeds():
    matcher = StopStringMatcher(["停止"])
    emitted, rest = feed_all(matcher, ["今天天气", "很好停", "止了吗"])
    assert emitted == ["今天天气", "很好", ""]
    assert rest == ""
    assert matcher.matched == "停止"


def test_emoji_with_modifier_split_between_its_code_points():
    wave = "👋🏽"  # two code points: waving hand + skin tone modifier
    matcher = StopStringMatcher([wave])
    emitted, _ = feed_all(matcher, ["bye 👋", "🏽!"])
    assert emitted == ["bye ", ""]
    assert matcher.matched == wave
    # The bare waving hand without the modifier is not the stop string: it is released.
    matcher = StopStringMatcher([wave])
    emitted, rest = feed_all(matcher, ["bye 👋", "!"])
    assert emitted == ["bye ", "👋!"]
    assert matcher.matched is None and rest == ""


def test_earliest_match_wins_whatever_the_list_order():
    matcher = StopStringMatcher(["world", "hello"])
    assert matcher.feed("say hello world") == StopCheck("say ", matched="hello", match_end=9)


def test_the_match_that_ends_first_wins_over_one_that_starts_first():
    # "abcd" starts first but "bc" completes first: a streaming reader must stop there.
    matcher = StopStringMatcher(["abcd", "bc"])
    assert matcher.feed("xabcd") == StopCheck("xa", matched="bc", match_end=4)


def test_among_matches_ending_together_the_longest_wins():
    matcher = StopStringMatcher(["b", "ab"])
    assert matcher.feed("xab") == StopCheck("x", matched="ab", match_end=3)
    matcher = StopStringMatcher(["ab", "b"], include_stop_str_in_output=True)
    assert matcher.feed("xab") == StopCheck("xab", matched="ab", match_end=3)


def test_held_text_is_released_as_soon_as_it_cannot_start_a_stop_string():
    matcher = StopStringMatcher(["abc"])
    assert matcher.feed("xab") == StopCheck("x")
    assert matcher.held_back == "ab"
    # "abx" can no longer become "abc", and no suffix of it starts "abc".
    assert matcher.feed("x") == StopCheck("abx")
    assert matcher.held_back == ""


def test_held_back_keeps_only_the_longest_possible_start():
    matcher = StopStringMatcher(["aab"])
    assert matcher.feed("aaa") == StopCheck("a")  # "aa" may still become "aab"
    assert matcher.held_back == "aa"
    assert matcher.feed("b") == StopCheck("", matched="aab", match_end=1)


def test_flush_releases_what_is_held_when_generation_ends():
    matcher = StopStringMatcher(["</answer>"])
    assert matcher.feed("42 </ans") == StopCheck("42 ")
    assert matcher.flush() == "</ans"
    with pytest.raises(RuntimeError, match=r"feed\(\) after flush\(\)"):
        matcher.feed("wer>")


def test_feed_after_a_match_returns_nothing():
    matcher = StopStringMatcher(["."])
    assert matcher.feed("One. Two.").matched == "."
    # Tokens still in flight when the engine was cancelled are ignored.
    assert matcher.feed(" Three.") == StopCheck("")
    assert matcher.matched == "."
    assert matcher.flush() == ""


def test_no_stop_strings_passes_text_through():
    matcher = StopStringMatcher([])
    assert matcher.feed("anything <|im_end|>") == StopCheck("anything <|im_end|>")
    assert matcher.held_back == ""
    assert matcher.flush() == ""


def test_empty_feeds_change_nothing():
    matcher = StopStringMatcher(["ab"])
    assert matcher.feed("") == StopCheck("")
    assert matcher.feed("a") == StopCheck("")
    assert matcher.feed("") == StopCheck("")
    assert matcher.feed("b").matched == "ab"


def test_duplicate_stop_strings_are_one():
    matcher = StopStringMatcher(["x", "y", "x"])
    assert matcher.stop_strings == ("x", "y")


def test_invalid_stop_strings_are_refused():
    with pytest.raises(ValueError, match="non-empty strings, got ''"):
        StopStringMatcher(["ok", ""])
    with pytest.raises(TypeError, match="not one string"):
        StopStringMatcher("stop")  # type: ignore[arg-type]


def test_a_stop_string_inside_the_first_feed_at_position_zero():
    matcher = StopStringMatcher(["\n\n"])
    assert matcher.feed("\n\nrest") == StopCheck("", matched="\n\n", match_end=2)


def test_cost_is_linear_in_the_fed_text():
    # An adversarial stop string: every "a" fed could still start it, and the held text
    # would be re-scanned from scratch by a matcher that searched the whole history.
    stop = "a" * 40 + "b"
    matcher = StopStringMatcher([stop])
    started = time.perf_counter()
    for _ in range(100_000):
        matcher.feed("a")
        assert len(matcher.held_back) <= len(stop) - 1
    assert matcher.feed("b").matched == stop
    assert time.perf_counter() - started < 10.0
