"""The production `LlmEngine`: `tensorrt_llm.LLM` (PyTorch backend) behind the driver.

`tensorrt_llm` is imported only here, and only when the engine is created: the package
installs, imports and is tested without it, and (as upstream's Triton model notes)
importing it initialises CUDA, which must happen after the process chose its GPUs.
Nothing of this module runs on a machine without TensorRT-LLM.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llm_api_engine.config import LlmApiConfig
from llm_api_engine.outputs import CompletionSnapshot, snapshot_of
from llm_api_engine.sampling import GenerationCall

# Greedy decoding with several samples: the C++ backend returns identical copies; the LLM
# API refuses best_of > 1 under greedy decoding unless this is set (sampling_params.py).
# We send one request per sample, so this only matters if a caller sends n > 1 itself.
_ENVIRONMENT = {"TLLM_ALLOW_N_GREEDY_DECODING": "1"}


def worker_pythonpath(environment: dict[str, str]) -> str:
    """PYTHONPATH that lets TensorRT-LLM's worker processes unpickle our logits processor.

    The LLM API pickles SamplingParams (and its logits_processor) to worker processes that
    it starts itself; they inherit the environment, not this process's sys.path, so the
    directory holding this package (which model.py put on sys.path) is added.
    """
    package_root = str(Path(__file__).resolve().parents[1])
    parts = [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        parts.append(package_root)
    return os.pathsep.join(parts)


class _ResultStream:
    """One `generate_async(..., streaming=True)` result as CompletionSnapshots."""

    def __init__(self, result: Any) -> None:
        self._result = result

    async def __aiter__(self) -> AsyncIterator[CompletionSnapshot]:
        async for request_output in self._result:
            yield snapshot_of(request_output)

    def abort(self) -> None:
        self._result.abort()


class TensorRtLlmEngine:
    def __init__(self, config: LlmApiConfig) -> None:
        from tensorrt_llm import LLM, SamplingParams
        from tensorrt_llm.llmapi import GuidedDecodingParams, KvCacheConfig

        # Read by SamplingParams validation and by the workers LLM(...) starts: set once
        # tensorrt_llm imported (a failed import leaves the environment as it was).
        os.environ.update(_ENVIRONMENT)
        os.environ["PYTHONPATH"] = worker_pythonpath(dict(os.environ))

        self._sampling_params = SamplingParams
        self._guided_decoding_params = GuidedDecodingParams
        kwargs = config.llm_kwargs()
        kwargs["kv_cache_config"] = KvCacheConfig(**kwargs["kv_cache_config"])
        self._llm = LLM(**kwargs)

    def generate(self, call: GenerationCall) -> _ResultStream:
        kwargs = dict(call.sampling_params)
        if call.guided_decoding is not None:
            kwargs["guided_decoding"] = self._guided_decoding_params(**call.guided_decoding)
        params = self._sampling_params(**kwargs)
        result = self._llm.generate_async(
            list(call.prompt_token_ids), sampling_params=params, streaming=True
        )
        return _ResultStream(result)

    def shutdown(self) -> None:
        self._llm.shutdown()
