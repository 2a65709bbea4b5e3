"""pb_utils adapters shared by every model of the pipeline.

Only used inside the Triton Python stub, where the caller passes in the
`triton_python_backend_utils` module (its classes exist only once the stub runs); unit
tests pass a stand-in. Everything here is the same for every model: how a request's
inputs are read, how a response or an error reaches the client, how Python logging
reaches Triton's log.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from serving_common.errors import RequestError

logger = logging.getLogger(__name__)

# One request's inputs (absent ones left out) and parameters to its output tensors.
Handler = Callable[[Mapping[str, np.ndarray], Mapping[str, object]], Mapping[str, np.ndarray]]


def read_inputs(pb_utils: Any, request: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The inputs among `names` that the request carries, as numpy arrays."""
    inputs: dict[str, np.ndarray] = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is not None:
            inputs[name] = tensor.as_numpy()
    return inputs


def request_parameters(request: Any) -> dict[str, object]:
    """The request's parameters, JSON-decoded ({} when it has none)."""
    return json.loads(request.parameters() or "{}")


def triton_error(pb_utils: Any, error: Exception, model_name: str):
    """The pb_utils.TritonError a client gets for `error`: its message, never a traceback.

    A RequestError keeps its code (INVALID_ARG -> HTTP 400); anything else is a bug of
    ours, reported as INTERNAL with the exception's type and message (the caller logs the
    traceback on the server side).
    """
    errors = pb_utils.TritonError
    if isinstance(error, RequestError):
        return errors(str(error), getattr(errors, error.code, errors.INVALID_ARG))
    return errors(
        f"internal error in {model_name}: {type(error).__name__}: {error}", errors.INTERNAL
    )


def stateless_response(
    pb_utils: Any, request: Any, input_names: Iterable[str], handle: Handler, model_name: str
):
    """The one response of a model that answers in `execute` (preprocessing,
    postprocessing): the handler's outputs, or the error for what went wrong."""
    try:
        outputs = handle(read_inputs(pb_utils, request, input_names), request_parameters(request))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
        )
    except Exception as error:  # RequestError: its own code; else a bug, logged here
        if not isinstance(error, RequestError):
            pb_utils.Logger.log_error(f"{model_name} failed:\n{traceback.format_exc()}")
        return pb_utils.InferenceResponse(error=triton_error(pb_utils, error, model_name))


class TritonResponseSink:
    """A decoupled request's response sender; a client that went away reads as cancelled.

    Outputs the client did not ask for are not sent (Triton would drop them anyway), and
    `requested_outputs` lets the caller not build them at all. A send that fails (the
    client is gone) is logged, not raised: `is_cancelled()` reads true from then on, and
    the caller ends the request at its next check.

    Thread-safe, and never asks whether the request was cancelled once FINAL is on its
    way: Triton 2.51 deletes the response factory with the FINAL response, and
    `is_cancelled()` on it afterwards crashes the server (seen: SIGSEGV in
    TRITONBACKEND_ResponseFactoryIsCancelled). The lock keeps a check and the FINAL
    send from overlapping.
    """

    def __init__(self, pb_utils: Any, request: Any) -> None:
        self._pb = pb_utils
        self._sender = request.get_response_sender()
        # Triton passes on only the outputs a client asked for (all when it named none).
        self.requested_outputs = frozenset(request.requested_output_names() or ()) or None
        self._lock = threading.Lock()
        self._final = False  # FINAL sent (or being sent)
        self._lost = False

    def send(self, outputs: Mapping[str, np.ndarray] | None, final: bool) -> None:
        pb = self._pb
        flags = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        if final:
            self._mark_final()
        try:
            if outputs is None:
                self._sender.send(flags=flags)
                return
            wanted = self.requested_outputs
            tensors = [
                pb.Tensor(name, np.ascontiguousarray(value))
                for name, value in outputs.items()
                if wanted is None or name in wanted
            ]
            self._sender.send(pb.InferenceResponse(output_tensors=tensors), flags=flags)
        except Exception as error:  # the client is gone; the caller sees is_cancelled()
            self._lost = True
            logger.warning("could not send a response: %s", error)

    def send_error(self, message: str, code: str) -> None:
        """One error response (code: a pb_utils.TritonError code name), always FINAL."""
        pb = self._pb
        error = pb.TritonError(message, getattr(pb.TritonError, code, pb.TritonError.INTERNAL))
        self._mark_final()
        try:
            self._sender.send(
                pb.InferenceResponse(output_tensors=[], error=error),
                flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        except Exception as send_error:
            self._lost = True
            logger.warning("could not send an error response: %s", send_error)

    def is_cancelled(self) -> bool:
        with self._lock:
            if self._final:
                return self._lost
            return self._lost or bool(self._sender.is_cancelled())

    def _mark_final(self) -> None:
        with self._lock:  # waits for a cancellation check in progress
            self._final = True


class TritonLogHandler(logging.Handler):
    """Routes Python logging to Triton's log (pb_utils.Logger)."""

    def __init__(self, pb_utils: ModuleType | Any) -> None:
        super().__init__()
        self._logger = pb_utils.Logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.log_error(message)
            elif record.levelno >= logging.WARNING:
                self._logger.log_warn(message)
            else:
                self._logger.log_info(message)
        except Exception:  # logging must never break the request that logs
            self.handleError(record)


def install_log_handler(pb_utils: Any, *logger_names: str) -> logging.Handler:
    """Send the log records (INFO and up) of the `logger_names` packages to Triton's log;
    returns the handler, for the model's finalize to remove (`remove_log_handler`)."""
    handler = TritonLogHandler(pb_utils)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in logger_names:
        package_logger = logging.getLogger(name)
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
    return handler


def remove_log_handler(handler: logging.Handler, *logger_names: str) -> None:
    for name in logger_names:
        logging.getLogger(name).removeHandler(handler)
