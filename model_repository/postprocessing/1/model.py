"""Triton Python model `postprocessing`: token ids to text (TensorRT-LLM names).

Thin adapter: tensors in and out of `pb_utils`; the logic is `postprocessing.triton_io`.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

try:
    import postprocessing.triton_io  # noqa: F401
except ImportError:
    # Running from a checkout that is not pip-installed: the packages sit three levels up
    # (model_repository/postprocessing/1/model.py). Drop whatever half-import failed (the
    # model directory itself is also named "postprocessing") before retrying.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    for _name in [
        n for n in sys.modules if n == "postprocessing" or n.startswith("postprocessing.")
    ]:
        del sys.modules[_name]

import triton_python_backend_utils as pb_utils

from postprocessing.config import PostprocessingSettings
from postprocessing.triton_io import INPUT_NAMES, Postprocessor
from preprocessing.errors import RequestError, triton_error
from preprocessing.tokenizer_loading import load_tokenizer


class TritonPythonModel:
    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        settings = PostprocessingSettings.from_parameters(model_config.get("parameters", {}))
        tokenizer = load_tokenizer(settings.tokenizer_dir, settings.trust_remote_code)
        self.postprocessor = Postprocessor(
            tokenizer,
            skip_special_tokens=settings.skip_special_tokens,
            spaces_between_special_tokens=settings.spaces_between_special_tokens,
        )
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"postprocessing: tokenizer {settings.tokenizer_dir} ({type(tokenizer).__name__}, "
            f"{self.postprocessor.vocab_size} ids), "
            f"skip_special_tokens={settings.skip_special_tokens}, "
            f"spaces_between_special_tokens={settings.spaces_between_special_tokens}"
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
            outputs = self.postprocessor.postprocess(
                inputs, json.loads(request.parameters() or "{}")
            )
            return pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
            )
        except Exception as error:  # RequestError: its own code; else a bug, logged here
            if not isinstance(error, RequestError):
                self.logger.log_error(f"postprocessing failed:\n{traceback.format_exc()}")
            return pb_utils.InferenceResponse(error=triton_error(pb_utils, error, "postprocessing"))
