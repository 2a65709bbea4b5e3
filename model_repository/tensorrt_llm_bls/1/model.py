"""tensorrt_llm_bls: the model clients call. Thin: Triton tensors in, bls.RequestHandler out.

execute() hands each request to a worker thread and returns at once (decoupled mode), so
one instance serves many requests concurrently and a long stream holds up no one.
"""

import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    import bls  # noqa: F401
except ImportError:  # a checkout handed straight to tritonserver, not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import triton_python_backend_utils as pb_utils

from bls.limits import BLS_PARAMETERS, BlsLimits
from bls.orchestrator import RequestHandler
from bls.triton_io import TritonEngineClient, TritonLogHandler, TritonResponseSink
from preprocessing.config import (
    PreprocessingSettings,
    check_known_parameters,
    parameter_values,
)
from preprocessing.encoding import PromptEncoder
from preprocessing.tokenizer_loading import load_tokenizer

# Requests served at once by this instance; more wait in the pool's queue (never dropped).
MAX_CONCURRENT_REQUESTS = 256


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = parameter_values(config.get("parameters", {}))
        check_known_parameters(parameters, BLS_PARAMETERS, "tensorrt_llm_bls")
        logging.getLogger("bls").addHandler(TritonLogHandler(pb_utils))
        logging.getLogger("bls").setLevel(logging.INFO)

        settings = PreprocessingSettings.from_parameters(parameters)
        tokenizer = load_tokenizer(settings.tokenizer_dir, settings.trust_remote_code)
        self.handler = RequestHandler(
            tokenizer=tokenizer,
            encoder=PromptEncoder(tokenizer, settings.limits, settings.add_special_tokens),
            limits=BlsLimits.from_parameters(
                parameters, max_batch_size=int(config.get("max_batch_size", 1)) or 1
            ),
            engine=TritonEngineClient(
                pb_utils, parameters.get("tensorrt_llm_model_name", "tensorrt_llm")
            ),
        )
        self.pool = ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_REQUESTS, thread_name_prefix="bls-request"
        )

    def execute(self, requests):
        for request in requests:
            inputs = {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
            parameters = json.loads(request.parameters() or "{}")
            sink = TritonResponseSink(pb_utils, request)
            self.pool.submit(self.handler.handle, inputs, parameters, sink).add_done_callback(
                _log_unexpected_failure
            )
        return None

    def finalize(self):
        self.pool.shutdown(wait=True)


def _log_unexpected_failure(future) -> None:
    # handle() answers every request itself and never raises; if it ever does, say so.
    error = future.exception()
    if error is not None:
        pb_utils.Logger.log_error(f"tensorrt_llm_bls: a request handler failed: {error!r}")
