"""Every tokenization a word can have in running text.

A stop word must match however the model happens to produce it, and a bad word must be
banned in every form. Tokenizers spell a word differently at the start of a text, after
a space, and glued to what precedes it: SentencePiece "▁word" vs "word", byte-level BPE
"Ġword" vs "word". Encoding the word alone gives only one of these.

To get the tokens of a word *in context*, we encode an anchor followed by the word and
drop the anchor's tokens. The anchor is a newline: tokenizers split before and after it
(byte-level pre-tokenizers separate whitespace runs from letters; SentencePiece
vocabularies hold no piece that joins a newline to a letter), so the word's tokens do
not depend on it. That is checked, not assumed: the anchor's own tokens must be an exact
prefix of the combined encoding, else the next anchor is tried, else that form is left
out (and if no form is left, the word's plain encoding is used).

The plain encoding is otherwise not needed: at the start of a text it equals one of the
in-context forms (SentencePiece's dummy prefix makes "word" at the start "▁word"), and
for words that begin with whitespace it can carry a spurious "▁" that never occurs
after other text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

Encode = Callable[[str], Sequence[int]]

ANCHORS = ("\n", "\n\n", ".", ":")


def tokens_in_context(encode: Encode, text: str) -> list[int] | None:
    """The tokens of `text` as they come after other text, or None if not separable."""
    for anchor in ANCHORS:
        prefix = list(encode(anchor))
        full = list(encode(anchor + text))
        if len(full) > len(prefix) and full[: len(prefix)] == prefix:
            return full[len(prefix) :]
    return None


def word_token_variants(
    encode: Encode, word: str, special_tokens: Collection[str] = ()
) -> list[list[int]]:
    """Distinct token sequences of `word` in running text: glued to what precedes it,
    and after a space.

    `encode` must not add special tokens. A word that already starts with whitespace is
    taken as written (the client chose its leading whitespace), so no space is added. A
    word that is one special token (e.g. "</s>") has exactly one form. If no anchor
    separates cleanly, the word's plain encoding stands in.
    """
    if word in special_tokens:
        return [list(encode(word))]
    forms = [word] if word[:1].isspace() else [word, " " + word]
    variants: list[list[int]] = []
    for form in forms:
        in_context = tokens_in_context(encode, form)
        if in_context and in_context not in variants:
            variants.append(in_context)
    if not variants:
        plain = list(encode(word))
        if plain:
            variants.append(plain)
    return variants
