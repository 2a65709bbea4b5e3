"""pb_utils adapters for the orchestrator: the engine as a BLS call, the client as a sink.

Only imported inside the Triton Python stub (by model.py), which passes in the
`triton_python_backend_utils` module: its classes exist only once the stub runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from types import ModuleType

import numpy as np

from bls.engine_io import ENGINE_OUTPUTS, EngineResponse, cancel_inputs, engine_rows

ERROR_CODES = (
    "UNKNOWN",
    "INTERNAL",
    "NOT_FOUND",
    "INVALID_ARG",
    "UNAVAILABLE",
    "UNSUPPORTED",
    "ALREADY_EXISTS",
    "CANCELLED",
)

logger = logging.getLogger(__name__)


def error_code_name(pb_utils: ModuleType, code: int) -> str:
    for name in ERROR_CODES:
        if getattr(pb_utils.TritonError, name, None) == code:
            return name
    return "INTERNAL"


class TritonEngineClient:
    """Calls the engine model (`tensorrt_llm` or a stand-in) through decoupled BLS requests."""

    def __init__(
        self, pb_utils: ModuleType, model_name: str, outputs: tuple[str, ...] = ENGINE_OUTPUTS
    ) -> None:
        self._pb = pb_utils
        self.model_name = model_name
        self.outputs = list(outputs)

    def _request(self, request_id: str, inputs: Mapping[str, np.ndarray]):
        pb = self._pb
        return pb.InferenceRequest(
            model_name=self.model_name,
            inputs=[pb.Tensor(name, value) for name, value in inputs.items()],
            requested_output_names=self.outputs,
            request_id=request_id,
        )

    def generate(
        self, request_id: str, inputs: Mapping[str, np.ndarray]
    ) -> Iterator[EngineResponse]:
        try:
            yield from self._responses(request_id, inputs)
        except Exception as error:  # e.g. the engine model is not loaded: say so
            logger.warning("calling %s failed: %s", self.model_name, error)
            yield EngineResponse(
                error=f"the call to model {self.model_name!r} failed: {error}",
                error_code="UNAVAILABLE",
                final=True,
            )

    def _responses(
        self, request_id: str, inputs: Mapping[str, np.ndarray]
    ) -> Iterator[EngineResponse]:
        for response in self._request(request_id, inputs).exec(decoupled=True):
            if response.has_error():
                error = response.error()
                yield EngineResponse(
                    error=error.message(),
                    error_code=error_code_name(self._pb, error.code()),
                    final=True,
                )
                return
            tensors = {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}
            yield EngineResponse(rows=engine_rows(tensors))

    def cancel(self, request_id: str) -> None:
        for response in self._request(request_id, cancel_inputs()).exec(decoupled=True):
            if response.has_error():
                logger.warning(
                    "engine refused the cancel of %s: %s", request_id, response.error().message()
                )


class TritonResponseSink:
    """A decoupled request's response sender; a client that went away reads as cancelled."""

    def __init__(self, pb_utils: ModuleType, request) -> None:
        self._pb = pb_utils
        self._request = request
        self._sender = request.get_response_sender()
        self._lost = False

    def send(self, outputs: Mapping[str, np.ndarray] | None, final: bool) -> None:
        pb = self._pb
        flags = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        try:
            if outputs is None:
                self._sender.send(flags=flags)
            else:
                tensors = [pb.Tensor(name, value) for name, value in outputs.items()]
                self._sender.send(pb.InferenceResponse(output_tensors=tensors), flags=flags)
        except Exception as error:  # the client is gone; the caller sees is_cancelled()
            self._lost = True
            logger.warning("could not send a response: %s", error)

    def send_error(self, message: str, code: str) -> None:
        pb = self._pb
        error = pb.TritonError(message, getattr(pb.TritonError, code, pb.TritonError.INTERNAL))
        try:
            self._sender.send(
                pb.InferenceResponse(output_tensors=[], error=error),
                flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        except Exception as send_error:
            self._lost = True
            logger.warning("could not send an error response: %s", send_error)

    def is_cancelled(self) -> bool:
        return self._lost or bool(self._request.is_cancelled())


class TritonLogHandler(logging.Handler):
    """Routes Python logging to Triton's log (pb_utils.Logger)."""

    def __init__(self, pb_utils: ModuleType) -> None:
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
