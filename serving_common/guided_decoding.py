"""Guided decoding (structured output): what a guide is, and the one check of it.

A request may ask for output that follows a guide, with the two inputs the C++
TensorRT-LLM backend declares: `guided_decoding_guide_type` (one of `GuideType`) and
`guided_decoding_guide` (the JSON schema, regular expression or EBNF grammar; none for
`json`, which asks for any JSON object). The BLS checks a guide before the engine sees
it, and the reference engine reads the same two inputs, so both parse them here.

`guide_grammar` turns a guide into an `xgrammar.Grammar`, the step where every error in
a guide shows (bad JSON, an unsupported schema, a regex or grammar that does not parse).
It mirrors what TensorRT-LLM's C++ guided decoder does with the inputs
(cpp/tensorrt_llm/batch_manager/guidedDecoder.cpp: `CompileBuiltinJSONGrammar`,
`CompileJSONSchema(guide)` with xgrammar's defaults, `Grammar::FromRegex`,
`Grammar::FromEBNF`), so a guide accepted here is one the engine compiles. It needs no
tokenizer: compiling a grammar against the vocabulary is the engine's job.

xgrammar is imported only when a request carries a guide: the BLS must still load in
the older TensorRT-LLM containers that do not ship it (there a guide is refused with
UNSUPPORTED). The API used here (`Grammar.from_json_schema`, `from_regex`, `from_ebnf`,
`builtin_json_grammar`) is the same in xgrammar 0.1.10, 0.1.18, 0.1.21 and 0.2.9 (the
BLS's guide tests pass with each; only xgrammar's own error wording differs).
TensorRT-LLM's requirements.txt pinned xgrammar 0.1.18 from mid-2025 and later 0.1.21,
0.1.25 and 0.1.32.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Any

from serving_common.errors import RequestError, load_json

GUIDE_TYPE_INPUT = "guided_decoding_guide_type"
GUIDE_INPUT = "guided_decoding_guide"

# Distinct guides whose check (and, in the reference engine, compiled grammar) is kept:
# clients tend to send the same few schemas again and again.
GUIDE_CACHE_SIZE = 256


class GuideType(str, enum.Enum):
    """The guide types of TensorRT-LLM's GuidedDecodingParams, by their input names."""

    JSON = "json"  # any JSON object; no guide
    JSON_SCHEMA = "json_schema"  # a JSON schema
    REGEX = "regex"  # a regular expression the whole output must match
    EBNF_GRAMMAR = "ebnf_grammar"  # an EBNF grammar (llama.cpp's GBNF notation), root rule "root"


@dataclass(frozen=True)
class Guide:
    """A checked guide: its type and text (None for `json`)."""

    guide_type: GuideType
    text: str | None = None


def parse_guide(guide_type: str | None, text: str | None, *, row: str = "") -> Guide | None:
    """The guide of a request from its two input values, or None when it has none.

    Checks their combination only (a known type; a guide exactly when the type needs
    one); `check_guide` checks the guide itself. `row` starts every error message (e.g.
    "row 2: ") when the inputs have several rows.
    """
    if guide_type is None or guide_type == "":
        if text:
            raise RequestError(
                GUIDE_TYPE_INPUT,
                f"{row}is required with {GUIDE_INPUT}: say what the guide is ({_type_names()})",
            )
        return None
    try:
        kind = GuideType(guide_type)
    except ValueError:
        raise RequestError(
            GUIDE_TYPE_INPUT, f"{row}must be one of {_type_names()}, got {guide_type!r}"
        ) from None
    if kind is GuideType.JSON:
        if text:
            raise RequestError(
                GUIDE_INPUT,
                f"{row}must be empty or left out with guided_decoding_guide_type json (any "
                "JSON object); to constrain the object send json_schema with a schema",
            )
        return Guide(kind)
    if not text:
        raise RequestError(
            GUIDE_INPUT,
            f"{row}is required with guided_decoding_guide_type {kind.value}: send the "
            f"{_WHAT[kind]}",
        )
    return Guide(kind, text)


def check_guide(guide: Guide) -> None:
    """Raise RequestError (naming guided_decoding_guide) when the guide cannot be used."""
    problem = _guide_problem(guide)
    if problem is not None:
        field, message, code = problem
        raise RequestError(field, message, code=code)


def guide_grammar(guide: Guide) -> Any:
    """The guide as an `xgrammar.Grammar` (raises RequestError when it is not valid)."""
    xgrammar = _xgrammar()
    if guide.guide_type is GuideType.JSON:
        return xgrammar.Grammar.builtin_json_grammar()
    text = guide.text
    assert text is not None  # parse_guide made sure of it
    try:
        if guide.guide_type is GuideType.JSON_SCHEMA:
            _check_json(text)
            return xgrammar.Grammar.from_json_schema(text)
        if guide.guide_type is GuideType.REGEX:
            return xgrammar.Grammar.from_regex(text)
        return xgrammar.Grammar.from_ebnf(text)
    except RequestError:
        raise
    except Exception as error:  # xgrammar reports every parse error as RuntimeError
        raise RequestError(
            GUIDE_INPUT,
            f"is not a valid {_WHAT[guide.guide_type]}: {_one_line(error)}",
        ) from None


@functools.lru_cache(maxsize=GUIDE_CACHE_SIZE)
def _guide_problem(guide: Guide) -> tuple[str, str, str] | None:
    """(field, message, code) of what is wrong with a guide, or None; cached by guide,
    so a schema sent again is not parsed again (a bad one is not either)."""
    try:
        guide_grammar(guide)
    except RequestError as error:
        return error.field, error.message, error.code
    return None


def _check_json(text: str) -> None:
    schema = load_json(
        GUIDE_INPUT,
        text,
        subject="",
        expected="guided_decoding_guide_type json_schema needs a JSON schema",
    )
    if not isinstance(schema, (dict, bool)):
        raise RequestError(
            GUIDE_INPUT,
            f"must be a JSON schema (a JSON object), got a JSON {type(schema).__name__}",
        )


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError:
        raise RequestError(
            GUIDE_TYPE_INPUT,
            "guided decoding needs the xgrammar package, which is not installed where this "
            "model runs",
            code="UNSUPPORTED",
        ) from None
    return xgrammar


_WHAT = {
    GuideType.JSON_SCHEMA: "JSON schema",
    GuideType.REGEX: "regular expression",
    GuideType.EBNF_GRAMMAR: "EBNF grammar",
}


def _type_names() -> str:
    return ", ".join(kind.value for kind in GuideType)


# xgrammar's C++ messages start with "[hh:mm:ss] /path/to/source.cc:123: ", which says
# nothing to a client.
_SOURCE_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:[0-9]+: ")


def _one_line(error: Exception) -> str:
    text = _SOURCE_PREFIX.sub("", " ".join(str(error).split()))
    return text if len(text) <= 400 else text[:397] + "..."
