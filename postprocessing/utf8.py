"""UTF-8 decoding as bytes arrive, with the rule of `bytes.decode("utf-8", "replace")`.

That rule (Unicode's recommended practice; Rust's `String::from_utf8_lossy`, which
byte-level tokenizers decode with, follows it too) replaces each maximal invalid
subpart with one U+FFFD: a byte that never starts a character, a stray continuation
byte, or the beginning of a character that the next byte does not continue. Decoding
as bytes arrive, a character is complete at its last byte, and an invalid subpart is
known at the first byte that cannot continue it; only the bytes of one unfinished
character (at most 3) are ever undecided.

Python's incremental UTF-8 codec does most of the work, but it keeps back one kind of
sequence it could already reject (ED A0..BF, the start of a surrogate, which it waits
to see whole for the "surrogatepass" error handler), so what counts as unfinished is
decided here, by Unicode's table of well-formed UTF-8.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

REPLACEMENT_CHARACTER = "\ufffd"
# The longest UTF-8 character, in bytes; an unfinished one holds at most one less.
MAX_CHARACTER_BYTES = 4

_CONTINUATION = range(0x80, 0xC0)
# Well-formed UTF-8 (Unicode, Table 3-7): the second byte of a character is 80..BF,
# except after these lead bytes, where the range excludes overlong forms (E0, F0),
# surrogates (ED) and code points above U+10FFFF (F4).
_SECOND_BYTE = {
    0xE0: range(0xA0, 0xC0),
    0xED: range(0x80, 0xA0),
    0xF0: range(0x90, 0xC0),
    0xF4: range(0x80, 0x90),
}


def _character_length(lead: int) -> int:
    """Bytes in a character that starts with `lead` (1 for a byte that starts none)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def is_unfinished_character(data: bytes) -> bool:
    """Whether `data` is the beginning of a well-formed character, short of its end."""
    if not data or len(data) >= _character_length(data[0]):
        return False
    if len(data) > 1 and data[1] not in _SECOND_BYTE.get(data[0], _CONTINUATION):
        return False
    return all(byte in _CONTINUATION for byte in data[2:])


def decode_complete(data: bytes) -> tuple[str, bytes]:
    """(the text of `data` up to an unfinished last character, that character's bytes).

    The bytes returned are b"" unless `data` ends in the beginning of a character that
    later bytes can still complete; `text + decode_final(tail + more)` is always
    `(data + more).decode("utf-8", "replace")`.
    """
    text, used = codecs.utf_8_decode(data, "replace", False)
    if used == len(data):
        return text, b""
    tail = data[used:]
    if is_unfinished_character(tail):
        return text, tail
    # Kept back by the codec although no later byte can complete it (see the module
    # docstring): its U+FFFD are final.
    return text + decode_final(tail), b""


def decode_final(data: bytes) -> str:
    """`data` decoded at the end of the sequence: an unfinished character is one U+FFFD."""
    return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class ByteGroup:
    """Consecutive byte pieces that decode as one unit: a whole character (`valid`) or
    one maximal invalid subpart (shown as one U+FFFD)."""

    ids: tuple[int, ...]
    valid: bool


class CharacterAssembler:
    """Groups a run of byte-fallback pieces ("<0xF0>", ...) into whole characters and
    invalid subparts, each as soon as it is known; holds the pieces of at most one
    unfinished character."""

    def __init__(self) -> None:
        # The pieces of the unfinished character, oldest first (read-only outside).
        self.held_ids: tuple[int, ...] = ()
        self._bytes = b""

    def push(self, token_id: int, value: int) -> list[ByteGroup]:
        """Add the piece `token_id` of byte `value`; return the groups it completes."""
        groups: list[ByteGroup] = []
        if self.held_ids:
            data = self._bytes + bytes((value,))
            if is_unfinished_character(data):
                self._hold((*self.held_ids, token_id), data)
                return groups
            if len(data) == _character_length(data[0]) and value in _CONTINUATION:
                # A well-formed prefix one byte short of its length, completed by a
                # continuation byte: a whole character.
                groups.append(ByteGroup((*self.held_ids, token_id), valid=True))
                self._hold((), b"")
                return groups
            # The byte cannot continue the held bytes: they are one invalid subpart, and
            # the byte starts afresh.
            groups.append(ByteGroup(self.held_ids, valid=False))
        byte = bytes((value,))
        if is_unfinished_character(byte):
            self._hold((token_id,), byte)
        else:
            self._hold((), b"")
            groups.append(ByteGroup((token_id,), valid=value < 0x80))
        return groups

    def flush(self) -> list[ByteGroup]:
        """End the run: an unfinished character is an invalid subpart."""
        if not self.held_ids:
            return []
        group = ByteGroup(self.held_ids, valid=False)
        self._hold((), b"")
        return [group]

    def _hold(self, ids: tuple[int, ...], data: bytes) -> None:
        self.held_ids = ids
        self._bytes = data
