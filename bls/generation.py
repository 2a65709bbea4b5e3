"""One request's sequences: engine rows in, client updates out. Pure logic, no threads.

The generation loop (`bls.loop`) owns a `Generation` per active request and calls it
from one thread only. Each sequence (prompt row x sample) has its own detokenizer and
stop-string state (`bls.sequence`), so prompts and samples never mix their text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bls.engine_io import EngineRow
from bls.request_types import ClientRequest
from bls.sequence import SequenceDelta, SequenceState
from bls.stop_strings import StopStringMatcher
from bls.validation import ValidatedRequest
from postprocessing.detokenizer import IncrementalDetokenizer


class EngineProtocolError(RuntimeError):
    """The engine answered something this request did not ask for."""


@dataclass
class ClientUpdate:
    """What the client is told next: one delta per sequence with news, and whether it ends."""

    deltas: list[SequenceDelta]
    final: bool


class Generation:
    def __init__(
        self,
        validated: ValidatedRequest,
        new_detokenizer: Callable[[ClientRequest], IncrementalDetokenizer],
    ) -> None:
        request, prompts = validated.request, validated.prompts
        self.request = request
        self.prompt_lengths = tuple(len(ids) for ids in prompts.input_ids)
        self.sequences: dict[tuple[int, int], SequenceState] = {}
        for batch_index, prompt_ids in enumerate(prompts.input_ids):
            for sequence_index in range(request.sampling.num_return_sequences):
                sequence = SequenceState(
                    batch_index=batch_index,
                    sequence_index=sequence_index,
                    max_tokens=request.max_tokens,
                    detokenizer=new_detokenizer(request),
                    stops=(
                        StopStringMatcher(request.stop_words, request.include_stop_str_in_output)
                        if request.stop_words
                        else None
                    ),
                    special_stops=prompts.special_stop_words,
                    include_stop_str_in_output=request.include_stop_str_in_output,
                )
                if not request.exclude_input_in_output:
                    sequence.echo_prompt(prompt_ids)
                self.sequences[(batch_index, sequence_index)] = sequence
        self._finish_reported: set[tuple[int, int]] = set()

    @property
    def finished(self) -> bool:
        """Every sequence has ended (stop string, cancel, or the engine's end)."""
        return all(sequence.finished for sequence in self.sequences.values())

    def consume(self, rows: Iterable[EngineRow]) -> None:
        """Take one engine response's tokens."""
        for row in rows:
            sequence = self.sequences.get((row.batch_index, row.sequence_index))
            if sequence is None:
                raise EngineProtocolError(
                    f"engine answered for batch_index={row.batch_index}, sequence_index="
                    f"{row.sequence_index}, which this request did not ask for"
                )
            sequence.consume(row)

    def end_of_generation(self) -> None:
        """The engine has finished every sequence: release held-back text, decide why."""
        for sequence in self.sequences.values():
            sequence.end_of_generation()

    def cancel(self) -> None:
        for sequence in self.sequences.values():
            sequence.cancel()

    def take_update(self, final: bool) -> ClientUpdate | None:
        """What to tell the client now; None when there is nothing to say.

        Streaming: a delta for each sequence with new text or a newly decided finish
        reason. Not streaming: nothing until `final`, then every sequence at once, so
        the client gets exactly one response (what HTTP /generate needs).
        """
        if not self.request.stream:
            if not final:
                return None
            return ClientUpdate([s.take_delta() for s in self.sequences.values()], final=True)
        deltas = []
        for key, sequence in self.sequences.items():
            newly_finished = sequence.finished and key not in self._finish_reported
            if sequence.has_news() or newly_finished:
                deltas.append(sequence.take_delta())
            if newly_finished:
                self._finish_reported.add(key)
        if not deltas and not final:
            return None
        return ClientUpdate(deltas, final)
