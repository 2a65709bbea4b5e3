"""Token ids to text: the exact incremental detokenizer and the postprocessing model's logic.

`IncrementalDetokenizer` turns one sequence's streamed ids into text deltas whose
concatenation equals the tokenizer's full decode, at a constant cost per token; its
`DetokenizerState` lets a stateless caller carry it between calls.
"""

from postprocessing.detokenizer import IncrementalDetokenizer
from postprocessing.state import DetokenizerState, StateError
from postprocessing.tokenizer_profile import DecodeOptions, TokenizerProfile, profile_for

__all__ = [
    "DecodeOptions",
    "DetokenizerState",
    "IncrementalDetokenizer",
    "StateError",
    "TokenizerProfile",
    "profile_for",
]
