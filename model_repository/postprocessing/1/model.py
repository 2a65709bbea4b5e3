"""Triton Python model `postprocessing`: token ids to text (TensorRT-LLM names).

Thin adapter: the logic is `postprocessing.handler`, the pb_utils side
`serving_common.triton_glue`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import postprocessing.handler  # noqa: F401
    import serving_common  # noqa: F401
except ImportError:
    # Running from a checkout that is not pip-installed (or installed before a package
    # was added): the packages sit three levels up (model_repository/postprocessing/1/).
    # Drop whatever half-import failed (the model directory itself is also named
    # "postprocessing") before retrying.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    for _name in [
        n for n in sys.modules if n == "postprocessing" or n.startswith("postprocessing.")
    ]:
        del sys.modules[_name]

import triton_python_backend_utils as pb_utils

from postprocessing.config import PostprocessingSettings
from postprocessing.handler import INPUT_NAMES, Postprocessor
from serving_common.tokenizer_loading import load_tokenizer
from serving_common.triton_glue import stateless_response


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
        pb_utils.Logger.log_info(
            f"postprocessing: tokenizer {settings.tokenizer_dir} ({type(tokenizer).__name__}, "
            f"{self.postprocessor.vocab_size} ids), "
            f"skip_special_tokens={settings.skip_special_tokens}, "
            f"spaces_between_special_tokens={settings.spaces_between_special_tokens}"
        )

    def execute(self, requests):
        return [
            stateless_response(
                pb_utils, request, INPUT_NAMES, self.postprocessor.postprocess, "postprocessing"
            )
            for request in requests
        ]
