"""Triton Python-backend model `tensorrt_llm`: the reference engine standing in for
TensorRT-LLM's C++ in-flight batching model. Thin: all logic is in `reference_engine`.
"""

import sys
from pathlib import Path

try:
    import reference_engine  # noqa: F401
    import serving_common
except ImportError:
    # The launcher symlinks this `1/` directory into a staged repository; resolve()
    # leads back to the checkout, whose root holds the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    import serving_common  # noqa: F401

import triton_python_backend_utils as pb_utils

from reference_engine.triton_glue import TritonEngineModel


class TritonPythonModel:
    def initialize(self, args):
        self._engine = TritonEngineModel(pb_utils, args)

    def execute(self, requests):
        # Decoupled: responses are sent from the engine's scheduler thread.
        return self._engine.execute(requests)

    def finalize(self):
        self._engine.finalize()
