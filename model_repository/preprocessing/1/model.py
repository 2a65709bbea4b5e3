"""Triton Python model `preprocessing`: prompt text to token ids (TensorRT-LLM names).

Thin adapter: tensors in and out of `pb_utils`; the logic is `preprocessing.triton_io`.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

try:
    import preprocessing  # noqa: F401
except ImportError:
    # Running from a checkout that is not pip-installed: the packages sit three levels up
    # (model_repository/preprocessing/1/model.py).
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import triton_python_backend_utils as pb_utils

from preprocessing.config import (
    PREPROCESSING_PARAMETERS,
    PreprocessingSettings,
    check_known_parameters,
)
from preprocessing.encoding import PromptEncoder
from preprocessing.errors import RequestError, triton_error
from preprocessing.tokenizer_loading import load_tokenizer
from preprocessing.triton_io import INPUT_NAMES, preprocess


class TritonPythonModel:
    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        parameters = model_config.get("parameters", {})
        check_known_parameters(parameters, PREPROCESSING_PARAMETERS, "preprocessing")
        settings = PreprocessingSettings.from_parameters(parameters)
        tokenizer = load_tokenizer(settings.tokenizer_dir, settings.trust_remote_code)
        self.encoder = PromptEncoder(tokenizer, settings.limits, settings.add_special_tokens)
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"preprocessing: tokenizer {settings.tokenizer_dir} ({type(tokenizer).__name__}, "
            f"{self.encoder.vocab_size} ids), add_special_tokens={settings.add_special_tokens}, "
            f"{settings.limits}"
        )

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        try:
            inputs = {}
            for name in INPUT_NAMES:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    inputs[name] = tensor.as_numpy()
            parameters = json.loads(request.parameters() or "{}")
            outputs = preprocess(self.encoder, inputs, parameters)
            return pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
            )
        except Exception as error:  # RequestError: its own code; else a bug, logged here
            if not isinstance(error, RequestError):
                self.logger.log_error(f"preprocessing failed:\n{traceback.format_exc()}")
            return pb_utils.InferenceResponse(error=triton_error(pb_utils, error, "preprocessing"))
