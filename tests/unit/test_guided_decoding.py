"""serving_common.guided_decoding: which guides are accepted, and the error for each bad one."""

from __future__ import annotations

import json
import sys

import pytest

from serving_common import guided_decoding
from serving_common.errors import RequestError
from serving_common.guided_decoding import Guide, GuideType, check_guide, parse_guide

SCHEMA = json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})


def error_of(guide_type, text) -> RequestError:
    with pytest.raises(RequestError) as info:
        guide = parse_guide(guide_type, text)
        assert guide is not None
        check_guide(guide)
    return info.value


@pytest.mark.parametrize(
    ("guide_type", "text", "expected"),
    [
        (None, None, None),
        ("", "", None),
        ("json", None, Guide(GuideType.JSON)),
        ("json", "", Guide(GuideType.JSON)),
        ("json_schema", SCHEMA, Guide(GuideType.JSON_SCHEMA, SCHEMA)),
        ("regex", r"\d{3}-[a-z]+", Guide(GuideType.REGEX, r"\d{3}-[a-z]+")),
        (
            "ebnf_grammar",
            'root ::= "yes" | "no"',
            Guide(GuideType.EBNF_GRAMMAR, 'root ::= "yes" | "no"'),
        ),
    ],
)
def test_valid_guides(guide_type, text, expected):
    guide = parse_guide(guide_type, text)
    assert guide == expected
    if guide is not None:
        check_guide(guide)  # does not raise


@pytest.mark.parametrize(
    ("guide_type", "text", "field", "message"),
    [
        (
            None,
            "[a-z]+",
            "guided_decoding_guide_type",
            "is required with guided_decoding_guide: say what the guide is (json, "
            "json_schema, regex, ebnf_grammar)",
        ),
        (
            "yaml",
            "a: 1",
            "guided_decoding_guide_type",
            "must be one of json, json_schema, regex, ebnf_grammar, got 'yaml'",
        ),
        (
            "JSON",
            None,
            "guided_decoding_guide_type",
            "must be one of json, json_schema, regex, ebnf_grammar, got 'JSON'",
        ),
        (
            "json",
            SCHEMA,
            "guided_decoding_guide",
            "must be empty or left out with guided_decoding_guide_type json (any JSON "
            "object); to constrain the object send json_schema with a schema",
        ),
        (
            "json_schema",
            None,
            "guided_decoding_guide",
            "is required with guided_decoding_guide_type json_schema: send the JSON schema",
        ),
        (
            "json_schema",
            '{"type": ',
            "guided_decoding_guide",
            "is not valid JSON (Expecting value at line 1 column 10); "
            "guided_decoding_guide_type json_schema needs a JSON schema",
        ),
        (
            "json_schema",
            "[1, 2]",
            "guided_decoding_guide",
            "must be a JSON schema (a JSON object), got a JSON list",
        ),
        (
            "json_schema",
            '{"type": "frob"}',
            "guided_decoding_guide",
            'is not a valid JSON schema: Unsupported type "frob"',
        ),
        (
            "regex",
            "[a-z",
            "guided_decoding_guide",
            "is not a valid regular expression: Regex parsing error at position 5: Unclosed '['",
        ),
        (
            "ebnf_grammar",
            'start ::= "a"',
            "guided_decoding_guide",
            "is not a valid EBNF grammar: EBNF parser error at line 1, column 1: The root "
            'rule with name "root" is not found',
        ),
    ],
)
def test_bad_guides_name_the_input(guide_type, text, field, message):
    error = error_of(guide_type, text)
    assert (error.field, error.message, error.code) == (field, message, "INVALID_ARG")


def test_row_prefixes_the_message():
    with pytest.raises(RequestError) as info:
        parse_guide("regex", None, row="row 2: ")
    assert info.value.message.startswith("row 2: is required")


def test_a_guide_is_checked_once_however_often_it_comes():
    cache = guided_decoding._guide_problem
    cache.cache_clear()
    bad = Guide(GuideType.REGEX, "(unclosed")
    for _ in range(3):
        check_guide(Guide(GuideType.JSON_SCHEMA, SCHEMA))
        with pytest.raises(RequestError):
            check_guide(bad)
    info = cache.cache_info()
    assert (info.misses, info.hits) == (2, 4)


def test_without_xgrammar_a_guide_is_unsupported(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar now fails
    guided_decoding._guide_problem.cache_clear()
    try:
        error = error_of("regex", "[a-z]+")
    finally:
        guided_decoding._guide_problem.cache_clear()
    assert error.field == "guided_decoding_guide_type"
    assert error.code == "UNSUPPORTED"
    assert "xgrammar" in error.message
    assert parse_guide(None, None) is None  # requests without a guide never need it
