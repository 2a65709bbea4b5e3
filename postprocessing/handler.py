"""The `postprocessing` Triton model's request handling, on plain numpy arrays.

Input and output names follow TensorRT-LLM's own postprocessing model (TOKENS_BATCH,
SEQUENCE_LENGTH -> OUTPUT), so it drops into that ensemble. Our addition is stateless
streaming: with DETOKENIZER_STATE the model decodes only the new tokens, from the state
the previous call returned, and returns the new text and the next state.

Shapes (max_batch_size > 0, so a batch dimension B comes first; `beams` is the beam
width, 1 without beam search):
- TOKENS_BATCH     INT32 [B, beams, T]  token ids; only the first SEQUENCE_LENGTH count
- SEQUENCE_LENGTH  INT32 [B, beams]     how many ids of each row are real (0..T)
- DETOKENIZER_STATE BYTES [B, beams]    optional; per sequence the JSON state from the
                                        previous call, or "" to start a stream
- FINISH           BOOL  [B, 1] or [B, beams]  optional (needs DETOKENIZER_STATE); true
                                        returns the held-back text too: the stream ends
- OUTPUT           BYTES [B, beams]     UTF-8 text: the whole text, or (streaming) the
                                        new text of this call; both by the same rule
                                        (postprocessing.detokenizer), so streamed texts
                                        add up to the whole one
- DETOKENIZER_STATE BYTES [B, beams]    (streaming only) the state for the next call
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from postprocessing.detokenizer import IncrementalDetokenizer, decode_texts
from postprocessing.state import DetokenizerState, StateError
from postprocessing.tokenizer_profile import DecodeOptions, profile_for
from serving_common.errors import RequestError
from serving_common.text import decode_utf8
from serving_common.triton_parameters import refuse_parameters

INPUT_NAMES = ("TOKENS_BATCH", "SEQUENCE_LENGTH", "DETOKENIZER_STATE", "FINISH")
OUTPUT_NAMES = ("OUTPUT", "DETOKENIZER_STATE")


class Postprocessor:
    """Token ids to text for one tokenizer and one set of decode options."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.profile = profile_for(tokenizer)
        self.options = DecodeOptions(
            skip_special_tokens=skip_special_tokens,
            spaces_between_special_tokens=spaces_between_special_tokens,
        )

    @property
    def vocab_size(self) -> int:
        return self.profile.vocab_size

    def postprocess(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object] | None = None
    ) -> dict[str, np.ndarray]:
        """One request's input tensors (absent optional ones left out) to its outputs.

        `parameters`: the request's parameters (JSON-decoded); this model takes none.
        Raises RequestError, naming the input, for anything the client got wrong.
        """
        unknown = sorted(set(inputs) - set(INPUT_NAMES))
        if unknown:
            raise RequestError(unknown[0], f"is not an input of this model; inputs: {INPUT_NAMES}")
        refuse_parameters(parameters, INPUT_NAMES)
        for name in ("TOKENS_BATCH", "SEQUENCE_LENGTH"):
            if name not in inputs:
                raise RequestError(name, "is required")
        tokens = _tokens(inputs["TOKENS_BATCH"])
        lengths = _lengths(inputs["SEQUENCE_LENGTH"], tokens.shape)
        sequences = self._sequences(tokens, lengths)
        if "DETOKENIZER_STATE" not in inputs:
            if "FINISH" in inputs:
                raise RequestError(
                    "FINISH",
                    "is only meaningful with DETOKENIZER_STATE (streaming); a decode "
                    "without it always returns the whole text",
                )
            texts = decode_texts(
                self.tokenizer, [ids for row in sequences for ids in row], self.options
            )
            return {"OUTPUT": _bytes_array(texts, tokens.shape[:2])}
        states = _states(inputs["DETOKENIZER_STATE"], tokens.shape[:2])
        finish = _finish(inputs.get("FINISH"), tokens.shape[:2])
        texts: list[str] = []
        next_states: list[str] = []
        for row, row_states in enumerate(states):
            for beam, raw_state in enumerate(row_states):
                detokenizer = self._detokenizer(raw_state, row, beam)
                text = detokenizer.push(sequences[row][beam])
                if finish[row, beam]:
                    text += detokenizer.finish()
                texts.append(text)
                next_states.append(detokenizer.state().to_json())
        return {
            "OUTPUT": _bytes_array(texts, tokens.shape[:2]),
            "DETOKENIZER_STATE": _bytes_array(next_states, tokens.shape[:2]),
        }

    def _sequences(self, tokens: np.ndarray, lengths: np.ndarray) -> list[list[list[int]]]:
        """The real ids of every [row][beam], checked against the vocabulary."""
        batch, beams, width = tokens.shape
        valid = np.arange(width)[None, None, :] < lengths[:, :, None]
        bad = valid & ((tokens < 0) | (tokens >= self.vocab_size))
        if bad.any():
            row, beam, position = (int(i) for i in np.argwhere(bad)[0])
            raise RequestError(
                "TOKENS_BATCH",
                f"row {row}, beam {beam}, position {position}: token id "
                f"{int(tokens[row, beam, position])} is outside the tokenizer's vocabulary "
                f"[0, {self.vocab_size})",
            )
        return [
            [tokens[row, beam, : lengths[row, beam]].tolist() for beam in range(beams)]
            for row in range(batch)
        ]

    def _detokenizer(self, raw_state: str, row: int, beam: int) -> IncrementalDetokenizer:
        if not raw_state:
            return IncrementalDetokenizer(
                self.tokenizer,
                skip_special_tokens=self.options.skip_special_tokens,
                spaces_between_special_tokens=self.options.spaces_between_special_tokens,
            )
        where = f"row {row}, beam {beam}"
        try:
            state = DetokenizerState.from_json(raw_state)
            if state.finished:
                raise StateError(
                    "belongs to a stream that has ended (FINISH was true); send an empty "
                    "state to start a new one"
                )
            return IncrementalDetokenizer.restore(
                self.tokenizer,
                state,
                skip_special_tokens=self.options.skip_special_tokens,
                spaces_between_special_tokens=self.options.spaces_between_special_tokens,
            )
        except StateError as error:
            raise RequestError("DETOKENIZER_STATE", f"{where}: {error}") from None


def _integer_array(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise RequestError(name, f"must hold integers (INT32), got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _tokens(array: np.ndarray) -> np.ndarray:
    tokens = _integer_array("TOKENS_BATCH", array)
    if tokens.ndim != 3:
        raise RequestError(
            "TOKENS_BATCH",
            f"expected shape [batch, beams, tokens], got {list(tokens.shape)}",
        )
    return tokens


def _lengths(array: np.ndarray, tokens_shape: tuple[int, ...]) -> np.ndarray:
    lengths = _integer_array("SEQUENCE_LENGTH", array)
    batch, beams, width = tokens_shape
    if lengths.shape != (batch, beams):
        raise RequestError(
            "SEQUENCE_LENGTH",
            f"expected shape [{batch}, {beams}] (one length per row and beam of "
            f"TOKENS_BATCH), got {list(lengths.shape)}",
        )
    if lengths.size and (lengths.min() < 0 or lengths.max() > width):
        row, beam = (int(i) for i in np.argwhere((lengths < 0) | (lengths > width))[0])
        raise RequestError(
            "SEQUENCE_LENGTH",
            f"row {row}, beam {beam}: {int(lengths[row, beam])} is not between 0 and "
            f"{width} (the number of ids per row of TOKENS_BATCH)",
        )
    return lengths


def _states(array: np.ndarray, shape: tuple[int, int]) -> list[list[str]]:
    states = np.asarray(array, dtype=object)
    if states.shape != shape:
        raise RequestError(
            "DETOKENIZER_STATE",
            f"expected shape {list(shape)} (one state per row and beam of TOKENS_BATCH), "
            f"got {list(states.shape)}",
        )
    rows: list[list[str]] = []
    for row in range(shape[0]):
        values: list[str] = []
        for beam in range(shape[1]):
            text = decode_utf8("DETOKENIZER_STATE", states[row, beam], f"row {row}, beam {beam}")
            values.append(text.strip())
        rows.append(values)
    return rows


def _finish(array: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if array is None:
        return np.zeros(shape, dtype=bool)
    finish = np.asarray(array)
    if finish.dtype != np.bool_:
        raise RequestError("FINISH", f"must be BOOL, got dtype {finish.dtype}")
    if finish.ndim != 2 or finish.shape[0] != shape[0] or finish.shape[1] not in (1, shape[1]):
        raise RequestError(
            "FINISH",
            f"expected shape [{shape[0]}, 1] or [{shape[0]}, {shape[1]}], got {list(finish.shape)}",
        )
    return np.broadcast_to(finish, shape)


def _bytes_array(texts: list[str], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = [text.encode("utf-8") for text in texts]
    return out.reshape(shape)
