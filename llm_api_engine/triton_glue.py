"""The Triton side of the LLM-API model, with `pb_utils` passed in (tests pass a stand-in).

`TritonLlmApiModel` is what `triton_model/1/model.py` delegates to. Request parsing and
responses are the reference engine's contract layer (`reference_engine.triton_glue`):
the same inputs are accepted and refused with the same errors.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping
from typing import Any

from llm_api_engine.config import LlmApiConfig, read_checkpoint_shape
from llm_api_engine.driver import LlmApiDriver, LlmEngine
from reference_engine.contract import ContractDefaults, EngineLimits
from reference_engine.triton_glue import accept_request, decoupled_model_config
from serving_common.triton_glue import install_log_handler, remove_log_handler

logger = logging.getLogger("llm_api_engine")

# The packages whose log records go to Triton's log.
LOGGERS = ("llm_api_engine", "reference_engine", "serving_common")

ENGINE_NAME = "the tensorrt_llm LLM-API model"
# No max_seq_len parameter and no max_position_embeddings in config.json: the LLM API
# then applies its own limit and reports violations as request errors.
UNBOUNDED_SEQ_LEN = 2**31 - 1


def create_engine(config: LlmApiConfig) -> LlmEngine:
    from llm_api_engine.engine import TensorRtLlmEngine

    return TensorRtLlmEngine(config)


class TritonLlmApiModel:
    """initialize / execute / finalize of the `tensorrt_llm` model over the LLM API."""

    def __init__(
        self,
        pb_utils: Any,
        args: Mapping[str, str],
        engine_factory: Callable[[LlmApiConfig], LlmEngine] = create_engine,
    ) -> None:
        self._pb = pb_utils
        self._handler = install_log_handler(pb_utils, *LOGGERS)
        model_config = decoupled_model_config(pb_utils, args, "the tensorrt_llm LLM-API model")
        self.config = LlmApiConfig.from_parameters(model_config.get("parameters", {}) or {})
        shape = read_checkpoint_shape(self.config.model_dir)
        max_seq_len = self.config.max_seq_len or shape.max_position_embeddings or UNBOUNDED_SEQ_LEN
        self.limits = EngineLimits(
            max_seq_len=max_seq_len, vocab_size=shape.vocab_size, engine_name=ENGINE_NAME
        )
        self.defaults = ContractDefaults(
            exclude_input_in_output=self.config.exclude_input_in_output
        )
        self.driver = LlmApiDriver(
            engine_factory(self.config),
            random_seed=self.config.random_seed,
            cancellation_check_period_ms=self.config.cancellation_check_period_ms,
            guided_decoding_backend=self.config.guided_decoding_backend,
        )
        self.driver.start()
        logger.info(
            "ready: model_dir=%s tp=%d pp=%d max_seq_len=%d vocab=%s guided_decoding=%s",
            self.config.model_dir,
            self.config.tensor_parallel_size,
            self.config.pipeline_parallel_size,
            max_seq_len,
            shape.vocab_size,
            self.config.guided_decoding_backend or "off",
        )

    def execute(self, requests: list) -> None:
        """Hand each request to the driver and return at once (decoupled)."""
        for request in requests:
            try:
                accept_request(self._pb, request, self.limits, self.defaults, self.driver)
            except Exception:  # never raise from execute: the stream would hang
                logger.exception("could not accept a request")
        return None

    def finalize(self) -> None:
        self.driver.shutdown()
        remove_log_handler(self._handler, *LOGGERS)
        # As the reference engine: free what holds Triton requests and senders while the
        # stub can still release them (freed at interpreter exit, they crash the stub).
        self.driver = None
        gc.collect()
