"""The generation loop: one thread advances every active request of this model instance.

The thread runs an asyncio event loop that also reads the engine's stream (see
`bls.engine_grpc`), so every engine response of every request is handled here, in
arrival order, the moment it arrives: detokenize, stop strings, finish reasons (the
request's `Generation`). What a response produces is offered to the request's
`ClientStream`, which sends on other threads; updates of the same request that arrive
within one turn of the event loop are offered once (`_flush`). Client cancellations
come in from the watcher thread through `call_soon_threadsafe`. Only this thread touches
a `Generation`, so none of it needs a lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bls.engine_io import EngineResponse
from bls.generation import Generation
from bls.metrics import ENGINE, INTERNAL
from bls.outbox import ClientStream
from serving_common.config import ConfigError

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ActiveRequest:
    """An admitted request between its engine call and its end."""

    engine_request_id: str
    generation: Generation
    client: ClientStream
    answered: bool = False  # FINAL (or an error) offered to the client
    engine_seen: bool = False  # a response came: the engine knows the request
    engine_done: bool = False  # the engine's stream for it has ended
    stop_wanted: bool = False  # the engine request should be stopped
    engine_stopped: bool = False  # a stop request was sent to the engine
    engine_responses: int = 0  # responses read so far: progress, for bls.stall
    # For metrics and the request log (time.monotonic()):
    first_token_s: float | None = None  # the first update with tokens was offered
    last_token_s: float | None = None
    answered_s: float | None = None  # FINAL or the error was offered
    error_kind: str | None = None  # see bls.metrics; None: no error
    error: str | None = None
    output_text: list[str] | None = None  # kept only when the request log shows text
    # Set once the engine's stream has ended and the client is answered.
    ended: threading.Event = field(default_factory=threading.Event)


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """The generation loop's event loop: `kind` is ServingOptions.event_loop.

    Every engine response costs the loop a few callbacks and a task step, so its own
    overhead is part of the CPU per token; uvloop's is lower (docs/performance.md). "auto"
    takes uvloop where it is installed (it is a dependency, but NVIDIA's containers may
    lack it), else asyncio's; "uvloop" insists on it.
    """
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as error:
            if kind == "uvloop":
                raise ConfigError(
                    f"event_loop is uvloop, which does not import here ({error}); install "
                    "uvloop or set event_loop to auto or asyncio"
                ) from error
        else:
            logger.info(
                "tensorrt_llm_bls: the generation loop runs on uvloop %s", uvloop.__version__
            )
            return uvloop.new_event_loop()
    logger.info("tensorrt_llm_bls: the generation loop runs on asyncio's event loop")
    return asyncio.new_event_loop()


class GenerationLoop:
    """Owns the thread and its event loop; the `on_*` methods run on that thread."""

    def __init__(
        self, stop_engine: Callable[[ActiveRequest], None], event_loop_kind: str = "auto"
    ) -> None:
        self._stop_engine_request = stop_engine
        self.event_loop = new_event_loop(event_loop_kind)
        self._progressed: dict[int, ActiveRequest] = {}
        self._flush_scheduled = False
        self._thread = threading.Thread(target=self._run, name="bls-generation-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the loop thread (from any thread)."""
        self.event_loop.call_soon_threadsafe(callback, *args)

    def close(self, timeout_s: float = 10.0) -> None:
        self.event_loop.call_soon_threadsafe(self.event_loop.stop)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        asyncio.set_event_loop(self.event_loop)
        self.event_loop.run_forever()

    # -- events, on the loop thread ------------------------------------------------------
    def on_engine_response(self, active: ActiveRequest, response: EngineResponse) -> None:
        active.engine_responses += 1
        try:
            if not active.engine_seen:
                active.engine_seen = True
                if active.stop_wanted:
                    self._stop_engine(active)
            if not active.answered:
                self._on_engine_output(active, response)
        except Exception:
            self._internal_error(active)

    def on_engine_end(self, active: ActiveRequest, error: BaseException | None) -> None:
        """The engine's stream for `active` is over (`error`: it broke off)."""
        active.engine_done = True
        try:
            if not active.answered:
                if error is not None:
                    logger.warning(
                        "tensorrt_llm_bls: engine request %s failed: %s",
                        active.engine_request_id,
                        error,
                    )
                    self._answer_error(active, f"tensorrt_llm: {error}", "UNAVAILABLE", ENGINE)
                else:
                    active.generation.end_of_generation()
                    self._answer(active, final=True)
        except Exception:
            self._internal_error(active)
        finally:
            active.ended.set()

    def on_engine_stalled(self, active: ActiveRequest, message: str) -> None:
        """The engine went silent (bls.stall): the client, if still waiting, is told."""
        if not active.answered:
            self._answer_error(active, message, "UNAVAILABLE", ENGINE)

    def on_client_cancelled(self, active: ActiveRequest) -> None:
        if active.answered:
            return
        try:
            active.generation.cancel()
            self._answer(active, final=True)
        except Exception:
            self._internal_error(active)
        self._stop_engine(active)

    # -- the work ------------------------------------------------------------------------
    def _on_engine_output(self, active: ActiveRequest, response: EngineResponse) -> None:
        if response.error is not None:
            self._answer_error(
                active,
                f"tensorrt_llm: {response.error}",
                response.error_code or "INTERNAL",
                ENGINE,
            )
            if not response.final:
                self._stop_engine(active)
            return
        generation = active.generation
        generation.consume(response.rows)
        if response.final:
            generation.end_of_generation()
            self._answer(active, final=True)
        elif generation.finished:
            # Every sequence hit a stop string: answer now, stop the engine after.
            self._answer(active, final=True)
            self._stop_engine(active)
        else:
            self._progressed[id(active)] = active
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.event_loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Offer what every request produced in this turn of the event loop, once each."""
        self._flush_scheduled = False
        progressed, self._progressed = self._progressed, {}
        for active in progressed.values():
            if not active.answered:
                try:
                    self._answer(active, final=False)
                except Exception:
                    self._internal_error(active)

    def _answer(self, active: ActiveRequest, final: bool) -> None:
        update = active.generation.take_update(final)
        if update is not None:
            if any(delta.num_output_tokens for delta in update.deltas):
                now = time.monotonic()
                if active.first_token_s is None:
                    active.first_token_s = now
                active.last_token_s = now
            if active.output_text is not None:
                active.output_text.extend(delta.text for delta in update.deltas)
            active.client.offer(update.deltas, update.final)
        if final:
            active.answered = True
            active.answered_s = time.monotonic()

    def _answer_error(self, active: ActiveRequest, message: str, code: str, kind: str) -> None:
        active.client.offer_error(message, code)
        active.answered = True
        active.answered_s = time.monotonic()
        active.error_kind, active.error = kind, message

    def _internal_error(self, active: ActiveRequest) -> None:
        logger.exception("tensorrt_llm_bls: request %s failed", active.engine_request_id)
        if not active.answered:
            self._answer_error(
                active, "tensorrt_llm_bls: internal error while generating", "INTERNAL", INTERNAL
            )
        self._stop_engine(active)

    def _stop_engine(self, active: ActiveRequest) -> None:
        active.stop_wanted = True
        # A stop that reached the engine before the request itself would be ignored; the
        # first response proves the engine has it (then the stop is sent, see above).
        if active.engine_done or active.engine_stopped or not active.engine_seen:
            return
        active.engine_stopped = True
        self._stop_engine_request(active)
