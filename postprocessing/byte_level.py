"""The engine for byte-level tokenizers (GPT-2, Llama-3, Qwen style): text from bytes.

Their decoder maps every token to bytes and decodes the concatenation with
`String::from_utf8_lossy`, which replaces invalid bytes exactly as
`bytes.decode("utf-8", "replace")` does. So the incremental UTF-8 codec over the same
bytes IS their full decode, for every id sequence, valid UTF-8 or not: a character comes
out as soon as its bytes are complete, an invalid subpart as soon as it is known, and
only the bytes of one unfinished character are held back. TokenizerProfile decides
whether a tokenizer is byte-level and checks its byte table against its own decode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from postprocessing.utf8 import decode_complete, decode_final


class ByteLevelDecoder:
    """Ids of one sequence to text through their bytes (see the module docstring)."""

    def __init__(self, bytes_of: Callable[[int], bytes]) -> None:
        self._bytes_of = bytes_of
        self._tail = b""
        # The ids whose bytes hold the unfinished character: the fewest last ids that
        # cover self._tail (each id has at least one byte, so at most 3).
        self._tail_ids: list[int] = []

    def context_ids(self) -> tuple[int, ...]:
        return ()  # bytes need no context: text so far never changes how later ids decode

    def pending_ids(self) -> tuple[int, ...]:
        return tuple(self._tail_ids)

    def step(self, token_id: int) -> str:
        data = self._bytes_of(token_id)
        if not data:  # an id the tokenizer decodes to nothing (outside its vocabulary)
            return ""
        text, tail = decode_complete(self._tail + data)
        if not tail:
            self._tail_ids = []
        elif len(tail) > len(data):
            # An unfinished character is only ever extended (a byte that cannot continue
            # it ends it), so the new tail is the old one plus all of this id's bytes.
            self._tail_ids.append(token_id)
        else:
            self._tail_ids = [token_id]
        self._tail = tail
        return text

    def finish(self) -> str:
        text = decode_final(self._tail)
        self._tail = b""
        self._tail_ids = []
        return text


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: the printable bytes stand for
    themselves, the other 68 (controls, space, DEL to NBSP, soft hyphen) for U+0100
    onward, in byte order."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    alphabet: dict[str, int] = {}
    shifted = 0x100
    for byte in range(256):
        if byte in printable:
            alphabet[chr(byte)] = byte
        else:
            alphabet[chr(shifted)] = byte
            shifted += 1
    return alphabet


_ALPHABET = _byte_alphabet()


class ByteLevelVocabulary:
    """The bytes each id of a byte-level tokenizer stands for, looked up once per id."""

    def __init__(self, rust: Any) -> None:
        self._rust = rust
        self._bytes: dict[int, bytes] = {}

    def bytes_of(self, token_id: int) -> bytes:
        data = self._bytes.get(token_id)
        if data is None:
            data = self._bytes[token_id] = self._look_up(token_id)
        return data

    def agrees_with_decode(self, token_ids: Iterable[int]) -> bool:
        """Whether the tokenizer decodes each of `token_ids` alone as its bytes."""
        return all(
            self._rust.decode([token_id], skip_special_tokens=False)
            == decode_final(self.bytes_of(token_id))
            for token_id in token_ids
        )

    def _look_up(self, token_id: int) -> bytes:
        token = self._rust.id_to_token(token_id)
        if token is None:  # not in the vocabulary: the decode leaves it out
            return b""
        try:
            return bytes([_ALPHABET[character] for character in token])
        except KeyError:
            # The ByteLevel decoder passes a token with a character outside its alphabet
            # (an added token with, say, accented text) through as its UTF-8.
            return token.encode()
