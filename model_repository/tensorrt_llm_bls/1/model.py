"""tensorrt_llm_bls: the model clients call. Thin: Triton tensors in, `bls.BlsServer` out.

execute() hands each request to the server and returns at once (decoupled mode); the
server answers every request on its own threads (see bls/server.py), many at a time, and
calls the engine model over the server's own gRPC endpoint (see bls/engine_grpc.py).
"""

import json
import logging
import sys
from pathlib import Path

try:
    import bls  # noqa: F401
    import serving_common  # noqa: F401
except ImportError:  # a checkout handed straight to tritonserver, not pip-installed
    # (or installed before a package was added)
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import triton_python_backend_utils as pb_utils

from bls.engine_grpc import GrpcEngineClient, resolve_engine_url
from bls.limits import (
    BLS_PARAMETERS,
    BlsLimits,
    RequestLogSettings,
    ServingOptions,
    TextSettings,
)
from bls.metrics import METRICS, RequestReporter
from bls.server import BlsServer
from bls.triton_metrics import TritonMetricsExporter
from bls.validation import RequestValidator
from postprocessing.detokenizer import IncrementalDetokenizer
from preprocessing.config import PreprocessingSettings
from preprocessing.encoding import PromptEncoder
from serving_common.config import check_known_parameters, parameter_values
from serving_common.tokenizer_loading import load_tokenizer
from serving_common.triton_glue import TritonResponseSink, install_log_handler


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = parameter_values(config.get("parameters", {}))
        check_known_parameters(parameters, BLS_PARAMETERS, "tensorrt_llm_bls")
        install_log_handler(pb_utils, "bls", "serving_common")

        settings = PreprocessingSettings.from_parameters(parameters)
        tokenizer = load_tokenizer(settings.tokenizer_dir, settings.trust_remote_code)
        limits = BlsLimits.from_parameters(
            parameters, max_batch_size=int(config.get("max_batch_size", 1)) or 1
        )
        options = ServingOptions.from_parameters(parameters)
        log_settings = RequestLogSettings.from_parameters(parameters)
        text_settings = TextSettings.from_parameters(parameters)
        self.server = None
        self.reporter = RequestReporter(
            TritonMetricsExporter(pb_utils, METRICS),
            labels={"model": args.get("model_name", "tensorrt_llm_bls")},
            gauges=lambda: (
                (self.server.admission.active_count, self.server.admission.waiting_count)
                if self.server is not None
                else (0, 0)
            ),
            log={
                "off": None,
                "info": pb_utils.Logger.log_info,
                "verbose": pb_utils.Logger.log_verbose,
            }[log_settings.level],
        )
        engine_url = resolve_engine_url(parameters.get("engine_grpc_url", "auto"))
        engine_model = parameters.get("tensorrt_llm_model_name", "tensorrt_llm")
        logging.getLogger("bls").info(
            "tensorrt_llm_bls: calling %s at %s (gRPC)", engine_model, engine_url
        )
        self.server = BlsServer(
            validator=RequestValidator(
                PromptEncoder(tokenizer, settings.limits, settings.add_special_tokens), limits
            ),
            engine=lambda loop: GrpcEngineClient(engine_url, engine_model, loop.event_loop),
            new_detokenizer=lambda request: IncrementalDetokenizer(
                tokenizer,
                skip_special_tokens=request.skip_special_tokens,
                spaces_between_special_tokens=text_settings.spaces_between_special_tokens,
            ),
            options=options,
            reporter=self.reporter,
            log_text=log_settings.text,
        )

    def execute(self, requests):
        for request in requests:
            self.server.submit(
                {tensor.name(): tensor.as_numpy() for tensor in request.inputs()},
                json.loads(request.parameters() or "{}"),
                TritonResponseSink(pb_utils, request),
                request.request_id(),
            )
        return None

    def finalize(self):
        self.server.close()
        self.reporter.close()
