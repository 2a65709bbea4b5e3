"""Token ids to text: the exact incremental detokenizer and the postprocessing model's logic.

`IncrementalDetokenizer` turns one sequence's streamed ids into text deltas, a character
as soon as its bytes are complete, at a constant cost per token; `decode_texts` gives
the same text for whole sequences (the non-streaming path); `DetokenizerState` lets a
stateless caller carry a detokenizer between calls.
"""

from postprocessing.detokenizer import IncrementalDetokenizer, decode_texts
from postprocessing.state import DetokenizerState, StateError
from postprocessing.tokenizer_profile import DecodeOptions, TokenizerProfile, profile_for

__all__ = [
    "DecodeOptions",
    "DetokenizerState",
    "IncrementalDetokenizer",
    "StateError",
    "TokenizerProfile",
    "decode_texts",
    "profile_for",
]
