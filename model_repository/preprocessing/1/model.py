"""Triton Python model `preprocessing`: prompt text to token ids (TensorRT-LLM names).

Thin adapter: the logic is `preprocessing.handler`, the pb_utils side
`serving_common.triton_glue`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import preprocessing  # noqa: F401
    import serving_common  # noqa: F401
except ImportError:
    # Running from a checkout that is not pip-installed (or installed before a package
    # was added): the packages sit three levels up (model_repository/preprocessing/1/).
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import triton_python_backend_utils as pb_utils

from preprocessing.config import PREPROCESSING_PARAMETERS, PreprocessingSettings
from preprocessing.encoding import PromptEncoder
from preprocessing.handler import INPUT_NAMES, preprocess
from serving_common.config import check_known_parameters
from serving_common.tokenizer_loading import load_tokenizer
from serving_common.triton_glue import stateless_response


class TritonPythonModel:
    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        parameters = model_config.get("parameters", {})
        check_known_parameters(parameters, PREPROCESSING_PARAMETERS, "preprocessing")
        settings = PreprocessingSettings.from_parameters(parameters)
        tokenizer = load_tokenizer(settings.tokenizer_dir, settings.trust_remote_code)
        self.encoder = PromptEncoder(tokenizer, settings.limits, settings.add_special_tokens)
        pb_utils.Logger.log_info(
            f"preprocessing: tokenizer {settings.tokenizer_dir} ({type(tokenizer).__name__}, "
            f"{self.encoder.vocab_size} ids), add_special_tokens={settings.add_special_tokens}, "
            f"{settings.limits}"
        )

    def execute(self, requests):
        return [
            stateless_response(pb_utils, request, INPUT_NAMES, self._handle, "preprocessing")
            for request in requests
        ]

    def _handle(self, inputs, parameters):
        return preprocess(self.encoder, inputs, parameters)
