"""What the detokenizer tests compare with, worked out from the tokenizer and from
`bytes.decode("utf-8", "replace")` alone, never from the code under test."""

from __future__ import annotations

import re
from collections.abc import Set

from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"
_PIECE = re.compile(r"<0x([0-9A-F]{2})>")
# Every way to go on from an unfinished character: a second byte, then continuations.
_COMPLETIONS = tuple(
    bytes([second]) + b"\x80" * extra for second in range(0x80, 0xC0) for extra in range(3)
)


def full_decode(tokenizer, ids: list[int], skip: bool) -> str:
    """The tokenizer's own decode, clean-up of spaces off."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.decode(ids, skip_special_tokens=skip)
    return tokenizer.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


def token_string(tokenizer, token_id: int) -> str | None:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.id_to_token(token_id)
    return tokenizer.convert_ids_to_tokens(token_id)


def _token_id(tokenizer, token: str) -> int | None:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.token_to_id(token)
    token_id = tokenizer.convert_tokens_to_ids(token)
    # Unknown tokens map to None or to the unknown token's id.
    if token_id is None or token_string(tokenizer, token_id) != token:
        return None
    return token_id


def byte_pieces(tokenizer) -> dict[int, int]:
    """Piece id -> byte of the pieces "<0x00>".."<0xFF>", if the tokenizer decodes them
    as bytes (else empty: a vocabulary without them, or pieces shown by name)."""
    found: dict[int, int] = {}
    for value in range(256):
        token_id = _token_id(tokenizer, f"<0x{value:02X}>")
        if token_id is not None:
            found[token_id] = value
    han = [token_id for value in "中".encode() for token_id, v in found.items() if v == value]
    if len(han) != 3 or full_decode(tokenizer, han, skip=False) != "中":
        return {}
    return found


def one_id_per_byte(tokenizer) -> dict[int, int] | None:
    """Byte -> an id that stands for exactly that byte: the byte-fallback piece, or the
    byte-level token of one byte (GPT-2's byte alphabet); None if the tokenizer has
    neither (or does not decode them as bytes)."""
    pieces = byte_pieces(tokenizer)
    if pieces:
        return {value: token_id for token_id, value in pieces.items()}
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    found = {}
    for value, character in bytes_to_unicode().items():
        token_id = _token_id(tokenizer, character)
        if token_id is None:
            return None
        found[value] = token_id
    han = [found[value] for value in "中".encode()]
    return found if full_decode(tokenizer, han, skip=False) == "中" else None


def settled_text(data: bytes) -> str:
    """The part of `data.decode("utf-8", "replace")` no later bytes can change: all of
    it, unless some continuation turns its last U+FFFD into a character (that U+FFFD is
    then the beginning of a character, not an invalid subpart)."""
    text = data.decode("utf-8", "replace")
    if text.endswith(REPLACEMENT) and any(
        not (data + more).decode("utf-8", "replace").startswith(text) for more in _COMPLETIONS
    ):
        return text[:-1]
    return text


def skipped_ids(tokenizer, vocab_size: int) -> set[int]:
    """The ids the decode drops with skip_special_tokens=True."""
    return {
        token_id
        for token_id in range(vocab_size)
        if full_decode(tokenizer, [token_id], True) == ""
        and full_decode(tokenizer, [token_id], False) != ""
    }


def rule_text(
    tokenizer, ids: list[int], skip: bool, *, pieces: dict[int, int], skipped: Set[int]
) -> str:
    """The detokenizer's contract: the tokenizer's decode once each run of byte pieces
    is valid UTF-8, every invalid subpart replaced by the pieces of U+FFFD's own bytes,
    as `bytes.decode("utf-8", "replace")` replaces it. Byte-level tokenizers already
    decode that way: for them (and for text) it is the plain decode. `pieces` is
    byte_pieces(tokenizer), `skipped` skipped_ids(tokenizer, ...)."""
    if not pieces:
        return full_decode(tokenizer, ids, skip)
    piece_of = {value: token_id for token_id, value in pieces.items()}
    repaired: list[int] = []
    run = bytearray()

    def close_run() -> None:
        repaired.extend(piece_of[b] for b in run.decode("utf-8", "replace").encode())
        run.clear()

    for token_id in ids:
        if skip and token_id in skipped:
            continue  # dropped before the decoder runs: it does not end a run
        if token_id in pieces:
            run.append(pieces[token_id])
        else:
            close_run()
            repaired.append(token_id)
    close_run()
    return full_decode(tokenizer, repaired, skip)
