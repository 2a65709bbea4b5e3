"""Sending to clients: a few sender threads, at most one send in flight per request, and
whatever arrives meanwhile merged into the next response.

In the Python backend a response `send` is a synchronous round trip to the server
process. Sent from the generation loop, one slow round trip would hold up every stream;
sent from a thread per request, hundreds of threads would fight over the GIL. So the
loop only *offers* an update to the request's `ClientStream` and goes on; `SenderPool`
threads do the round trips, several in flight at once.

Merge on lag: while a request's send is in flight, later updates for it are folded into
one pending update (text concatenated, token counts added, the latest finish reason).
When the client or the server keeps up, every engine step becomes one response; when
they fall behind, a response carries several steps, so the work per token shrinks exactly
when the machine is busiest, and the order of everything a client receives is kept.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bls.responses import ResponseSink
from bls.sequence import SequenceDelta

logger = logging.getLogger(__name__)

Render = Callable[[Sequence[SequenceDelta]], Mapping[str, np.ndarray]]


class ClientStream:
    """One request's responses on their way to the client."""

    def __init__(
        self, sink: ResponseSink, render: Render, streaming: bool, senders: SenderPool
    ) -> None:
        self._sink = sink
        self._render = render
        self._streaming = streaming
        self._senders = senders
        self._lock = threading.Lock()
        # What the loop offered since the last send, merged per sequence, in order.
        self._pending: dict[tuple[int, int], SequenceDelta] = {}
        self._final = False
        self._error: tuple[str, str] | None = None
        # A sender owns this stream (sending, or about to): offers only add to _pending.
        self._busy = False
        self._closed = False  # FINAL sent: nothing may follow
        self._started = False  # something was sent (the first response jumps the queue)

    @property
    def sink(self) -> ResponseSink:
        return self._sink

    def offer(self, deltas: Sequence[SequenceDelta], final: bool) -> None:
        with self._lock:
            if self._error is not None:
                return  # the request already ended with an error
            pending = self._pending
            for delta in deltas:
                key = (delta.batch_index, delta.sequence_index)
                earlier = pending.get(key)
                if earlier is None:
                    pending[key] = delta
                else:
                    earlier.merge(delta)
            self._final = self._final or final
            if self._busy:
                return
            self._busy = True
        self._senders.submit(self, urgent=not self._started)

    def offer_error(self, message: str, code: str) -> None:
        """End the request with an error; text already offered is sent before it."""
        with self._lock:
            if self._error is None:
                self._error = (message, code)
            if self._busy:
                return
            self._busy = True
        self._senders.submit(self, urgent=True)

    def drain(self) -> None:
        """Send until nothing is pending (called on a sender thread)."""
        while True:
            with self._lock:
                if self._closed or not (self._pending or self._final or self._error):
                    self._busy = self._closed  # a closed stream never gets a sender again
                    return
                deltas = list(self._pending.values())
                self._pending = {}
                final, error = self._final, self._error
                self._closed = final or error is not None
                self._started = True
            try:
                self._send(deltas, final, error)
            except Exception:
                # A bug in rendering: the client must still get its FINAL.
                logger.exception("tensorrt_llm_bls: sending a response failed")
                if not (final or error):
                    with self._lock:
                        self._closed = True
                self._sink.send_error(
                    "tensorrt_llm_bls: internal error while sending a response", "INTERNAL"
                )

    def _send(
        self, deltas: list[SequenceDelta], final: bool, error: tuple[str, str] | None
    ) -> None:
        sink = self._sink
        last_flag = final and error is None
        if not deltas:
            if error is not None:
                sink.send_error(*error)
            elif final:
                sink.send(None, True)
            return
        if self._streaming:
            for position, delta in enumerate(deltas):
                sink.send(self._render([delta]), last_flag and position == len(deltas) - 1)
        elif last_flag:
            sink.send(self._render(deltas), True)
        if error is not None:
            sink.send_error(*error)


class SenderPool:
    """Threads that drain client streams; each stream is drained by one thread at a time.

    Two queues: a stream's first response (its time to first token) and errors go ahead
    of the streams already under way, so a busy pool delays what is merged, not what a
    client is waiting for to start.
    """

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"sender threads must be at least 1, got {threads}")
        self._urgent: queue.SimpleQueue[ClientStream] = queue.SimpleQueue()
        self._normal: queue.SimpleQueue[ClientStream | None] = queue.SimpleQueue()
        self._ready = threading.Semaphore(0)  # one release per queued stream
        self._threads = [
            threading.Thread(target=self._run, name=f"bls-send-{index}", daemon=True)
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, stream: ClientStream, urgent: bool = False) -> None:
        (self._urgent if urgent else self._normal).put(stream)
        self._ready.release()

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the sends already submitted, then stop the threads."""
        for _ in self._threads:
            self._normal.put(None)  # behind everything queued
            self._ready.release()
        for thread in self._threads:
            thread.join(timeout_s)

    def _next(self) -> ClientStream | None:
        self._ready.acquire()
        try:
            return self._urgent.get_nowait()
        except queue.Empty:
            return self._normal.get_nowait()

    def _run(self) -> None:
        while True:
            stream = self._next()
            if stream is None:
                return
            try:
                stream.drain()
            except Exception:  # drain handles its own failures; never lose a sender
                logger.exception("tensorrt_llm_bls: a sender failed")
