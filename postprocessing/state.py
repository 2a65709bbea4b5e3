"""The exportable state of an incremental detokenizer.

It is what a stateless caller (a client or BLS streaming through the `postprocessing`
Triton model) carries from one call to the next. It is small and bounded: a few ids of
already-emitted context plus the ids whose text is not wholly returned yet, never the
history. The text emitted so far is NOT in it: the state only says where emission stands.

Version 2 (the detokenizer that returns a character as soon as its bytes are complete):
the last pending id may have returned part of its text already (a byte-level token
holding the first bytes of a character after complete ones); a restored detokenizer
replays the pending ids from the context and returns only what they had not returned.
A version 1 state meant "nothing of the pending ids was returned" and is refused rather
than read the new way, which would lose text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STATE_FORMAT_VERSION = 2

# Most already-emitted ids kept as decoding context. The detokenizer normally keeps 4;
# it keeps more only while the last ones decode to whitespace alone (some slow
# tokenizers strip the leading whitespace of a decode, so context must show a
# non-space character).
MAX_CONTEXT_IDS = 32
# Most ids whose text may be held back at once. Normally a few: the pieces of one
# unfinished character and ids that add no text yet; past this many ids the detokenizer
# emits what it has (see postprocessing.detokenizer).
MAX_PENDING_IDS = 64
# Longest JSON text from_json() parses; a real state is well under 1 KiB.
MAX_STATE_JSON_CHARS = 8192


class StateError(ValueError):
    """A state that cannot be restored: malformed, too large, or made differently."""


@dataclass(frozen=True)
class DetokenizerState:
    """Where an IncrementalDetokenizer stands; `to_json()` / `from_json()` round-trip."""

    # Already-emitted ids the next decode needs as context (at most MAX_CONTEXT_IDS).
    context_ids: tuple[int, ...] = ()
    # Ids pushed whose text is not wholly returned yet (at most MAX_PENDING_IDS).
    pending_ids: tuple[int, ...] = ()
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    # len(tokenizer) when the state was made: a cheap guard against restoring with
    # another tokenizer, which would decode the context ids into different text.
    vocab_size: int = 0
    # True after finish(): nothing more may be pushed.
    finished: bool = False
    version: int = field(default=STATE_FORMAT_VERSION)

    def __post_init__(self) -> None:
        _check_ids("context_ids", self.context_ids, MAX_CONTEXT_IDS)
        _check_ids("pending_ids", self.pending_ids, MAX_PENDING_IDS)
        for name in ("skip_special_tokens", "spaces_between_special_tokens", "finished"):
            if not isinstance(getattr(self, name), bool):
                raise StateError(f"{name} must be true or false")
        if self.finished and self.pending_ids:
            raise StateError("a finished state holds no pending_ids: finish() returned them")
        if not _is_int(self.vocab_size) or self.vocab_size < 0:
            raise StateError("vocab_size must be a non-negative integer")
        if self.version != STATE_FORMAT_VERSION:
            raise StateError(
                f"version {self.version!r} is not supported (this server reads version "
                f"{STATE_FORMAT_VERSION})"
            )

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "context_ids": list(self.context_ids),
                "pending_ids": list(self.pending_ids),
                "skip_special_tokens": self.skip_special_tokens,
                "spaces_between_special_tokens": self.spaces_between_special_tokens,
                "vocab_size": self.vocab_size,
                "finished": self.finished,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> DetokenizerState:
        """Parse and validate; raises StateError saying what is wrong."""
        if len(text) > MAX_STATE_JSON_CHARS:
            raise StateError(
                f"is {len(text)} characters long; a state is at most {MAX_STATE_JSON_CHARS}"
            )
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise StateError(f"not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise StateError(f"must be a JSON object, got {type(data).__name__}")
        known = {
            "version",
            "context_ids",
            "pending_ids",
            "skip_special_tokens",
            "spaces_between_special_tokens",
            "vocab_size",
            "finished",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise StateError(f"unknown keys {unknown}; expected only {sorted(known)}")
        missing = sorted(known - set(data))
        if missing:
            raise StateError(f"missing keys {missing}")
        for name in ("context_ids", "pending_ids"):
            if not isinstance(data[name], list):
                raise StateError(f"{name} must be a list of token ids")
        return cls(
            context_ids=tuple(data["context_ids"]),
            pending_ids=tuple(data["pending_ids"]),
            skip_special_tokens=data["skip_special_tokens"],
            spaces_between_special_tokens=data["spaces_between_special_tokens"],
            vocab_size=data["vocab_size"],
            finished=data["finished"],
            version=data["version"],
        )


def _is_int(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass as a token id.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(name: str, ids: tuple[int, ...], limit: int) -> None:
    if not isinstance(ids, tuple):
        raise StateError(f"{name} must be a tuple of token ids")
    if len(ids) > limit:
        raise StateError(f"{name} has {len(ids)} ids; at most {limit} are allowed")
    for token_id in ids:
        if not _is_int(token_id) or token_id < 0:
            raise StateError(f"{name} must hold non-negative integer token ids, got {token_id!r}")
