"""Triton Python-backend model `tensorrt_llm` over TensorRT-LLM's LLM API (PyTorch
backend): the C++ `tensorrt_llm` model's tensor contract, served by `tensorrt_llm.LLM`.
Thin: all logic is in `llm_api_engine`.
"""

import sys
from pathlib import Path

try:
    import llm_api_engine  # noqa: F401
    import serving_common
except ImportError:
    # llm-bls-build copies the packages next to model_repository/: three levels up from
    # this file (or, in a checkout, the repository root).
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    import serving_common  # noqa: F401

import triton_python_backend_utils as pb_utils

from llm_api_engine.triton_glue import TritonLlmApiModel


class TritonPythonModel:
    def initialize(self, args):
        self._model = TritonLlmApiModel(pb_utils, args)

    def execute(self, requests):
        # Decoupled: responses are sent from the driver's event-loop thread.
        return self._model.execute(requests)

    def finalize(self):
        self._model.finalize()
