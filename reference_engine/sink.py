"""Where the scheduler sends one request's responses.

In Triton it wraps the request's `response_sender`
(`serving_common.triton_glue.TritonResponseSink`, which logs a failed send instead of
raising it and then reads as cancelled); in unit tests it records what was sent
(`testing.RecordingSink`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import numpy as np


class ResponseSink(Protocol):
    def send(self, tensors: Mapping[str, np.ndarray] | None, *, final: bool) -> None:
        """One response. `tensors=None` with final=True sends the FINAL flag alone;
        `{}` sends a response without tensors."""

    def send_error(self, message: str, code: str) -> None:
        """One error response (code: a pb_utils.TritonError code name), always FINAL."""

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request."""


logger = logging.getLogger(__name__)


def safe_send(
    sink: ResponseSink,
    tensors: Mapping[str, np.ndarray] | None,
    *,
    final: bool,
    request_id: str = "",
) -> bool:
    """Send one response; False (and logged) when it could not reach the client."""
    try:
        sink.send(tensors, final=final)
    except Exception:
        logger.exception("sending a response failed for request %r", request_id)
        return False
    return True


def safe_error(sink: ResponseSink, message: str, code: str) -> None:
    """Send one error response (FINAL); a failure is logged, never raised."""
    try:
        sink.send_error(message, code)
    except Exception:
        logger.exception("sending an error response failed")
