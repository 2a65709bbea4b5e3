"""ClientStream: one send in flight per request; what comes meanwhile is merged."""

from __future__ import annotations

import threading

from bls.outbox import ClientStream, SenderPool
from bls.sequence import SequenceDelta


def delta(text: str, tokens: int = 1, sequence: int = 0, finish: str = "") -> SequenceDelta:
    return SequenceDelta(
        batch_index=0,
        sequence_index=sequence,
        text=text,
        num_output_tokens=tokens,
        log_probs=[-0.1] * tokens,
        cum_log_prob=-0.1,
        finish_reason=finish,
    )


class BlockingSink:
    """The first send blocks until released: the client is lagging."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[tuple[str, int, list[float], str]], bool]] = []
        self.errors: list[tuple[str, str]] = []
        self.first_send_started = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    def send(self, outputs, final: bool) -> None:
        self.first_send_started.set()
        self.release.wait(5)
        self.sent.append((outputs, final))
        if final:
            self.done.set()

    def send_error(self, message: str, code: str) -> None:
        self.errors.append((message, code))
        self.done.set()

    def is_cancelled(self) -> bool:
        return False


def render(deltas):
    return [(d.text, d.num_output_tokens, list(d.log_probs), d.finish_reason) for d in deltas]


def test_updates_that_arrive_during_a_send_are_merged_into_the_next_response():
    senders = SenderPool(2)
    sink = BlockingSink()
    stream = ClientStream(sink, render, streaming=True, senders=senders)
    stream.offer([delta("Hel")], final=False)
    assert sink.first_send_started.wait(5)
    # The first send is in flight: these three steps become one response.
    stream.offer([delta("lo")], final=False)
    stream.offer([delta(", wor", tokens=2)], final=False)
    stream.offer([delta("ld", finish="length")], final=True)
    sink.release.set()
    assert sink.done.wait(5)
    senders.close()
    assert sink.sent == [
        ([("Hel", 1, [-0.1], "")], False),
        ([("lo, world", 4, [-0.1] * 4, "length")], True),
    ]


def test_streaming_sends_one_response_per_sequence_and_final_on_the_last():
    senders = SenderPool(1)
    sink = BlockingSink()
    sink.release.set()
    stream = ClientStream(sink, render, streaming=True, senders=senders)
    stream.offer([delta("a", sequence=0), delta("b", sequence=1)], final=True)
    assert sink.done.wait(5)
    senders.close()
    assert [final for _, final in sink.sent] == [False, True]
    assert [outputs[0][0] for outputs, _ in sink.sent] == ["a", "b"]


def test_an_error_follows_the_text_already_offered():
    senders = SenderPool(1)
    sink = BlockingSink()
    stream = ClientStream(sink, render, streaming=True, senders=senders)
    stream.offer([delta("one")], final=False)
    assert sink.first_send_started.wait(5)
    stream.offer([delta(" two")], final=False)
    stream.offer_error("tensorrt_llm: failed", "INTERNAL")
    stream.offer([delta(" three")], final=True)  # after the error: never sent
    sink.release.set()
    assert sink.done.wait(5)
    senders.close()
    assert [outputs[0][0] for outputs, _ in sink.sent] == ["one", " two"]
    assert [final for _, final in sink.sent] == [False, False]
    assert sink.errors == [("tensorrt_llm: failed", "INTERNAL")]


def test_non_streaming_sends_one_response_with_every_sequence():
    senders = SenderPool(1)
    sink = BlockingSink()
    sink.release.set()
    stream = ClientStream(sink, render, streaming=False, senders=senders)
    stream.offer([delta("a", sequence=0), delta("b", sequence=1)], final=True)
    assert sink.done.wait(5)
    senders.close()
    assert sink.sent == [([("a", 1, [-0.1], ""), ("b", 1, [-0.1], "")], True)]


def test_a_rendering_failure_still_ends_the_stream_with_an_error():
    def broken(deltas):
        raise ValueError("cannot render")

    senders = SenderPool(1)
    sink = BlockingSink()
    sink.release.set()
    stream = ClientStream(sink, broken, streaming=True, senders=senders)
    stream.offer([delta("a")], final=False)
    assert sink.done.wait(5)
    stream.offer([delta("b")], final=True)  # the stream is closed: nothing follows
    senders.close()
    assert sink.sent == []
    assert sink.errors == [
        ("tensorrt_llm_bls: internal error while sending a response", "INTERNAL")
    ]


def test_a_first_response_goes_ahead_of_streams_under_way():
    senders = SenderPool(1)
    order: list[str] = []

    class Named(BlockingSink):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def send(self, outputs, final: bool) -> None:
            order.append(self.name)
            super().send(outputs, final)

    blocker, running, fresh = Named("blocker"), Named("running"), Named("fresh")
    running.release.set()
    fresh.release.set()
    under_way = ClientStream(running, render, streaming=True, senders=senders)
    under_way.offer([delta("a")], final=False)
    assert running.first_send_started.wait(5)
    # The only sender is now stuck in the blocker's send...
    ClientStream(blocker, render, streaming=True, senders=senders).offer([delta("x")], True)
    assert blocker.first_send_started.wait(5)
    # ... while a stream under way and a new one queue up: the new one goes first.
    under_way.offer([delta("b")], final=True)
    ClientStream(fresh, render, streaming=True, senders=senders).offer([delta("c")], True)
    blocker.release.set()
    assert running.done.wait(5) and fresh.done.wait(5)
    senders.close()
    assert order == ["running", "blocker", "fresh", "running"]
