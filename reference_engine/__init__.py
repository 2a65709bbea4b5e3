"""The reference engine: a Python stand-in for TensorRT-LLM's C++ `tensorrt_llm` model.

It speaks the same tensor contract (`contract.py`, the inputs and outputs of
`model_repository/tensorrt_llm/config.pbtxt`), so the BLS, preprocessing and
postprocessing run and are tested for real on any machine. Two layers:

- contract adapter (`contract.py`): request tensors -> `GenerationRequest` /
  `StopRequest`, validation (clear INVALID_ARG / UNSUPPORTED errors), response tensors;
- scheduler (`scheduler.py`): one thread, iteration-level batching, streaming,
  stop requests and client cancellation, FINAL on every path; it drives a small
  generation-backend interface (`backends/base.py`) with two backends: `reference`
  (a Hugging Face causal LM on PyTorch) and `synthetic` (tokens at a set pace).

Triton specifics live in `triton_glue.py`; `triton_model/` is the model directory
(`config.pbtxt`, `1/model.py`) that the launcher stages as `tensorrt_llm`.

Semantics follow TensorRT-LLM (its C++ runtime documentation and kernels):
- greedy when top_k = 0 and top_p = 0 (the defaults), or top_k = 1, or temperature = 0;
- logits: + embedding_bias, * 1/(temperature + 1e-6) when temperature != 1,
  repetition / presence / frequency penalties over prompt + generated tokens,
  end_id masked while fewer than min_tokens tokens were generated (min_tokens does
  not hold back stop words), bad words masked; then top-k, then top-p;
- stop words and bad words are matched against prompt + generated tokens;
- end_id ends a sequence and is not output; a stop word ends it and is output;
- output_log_probs / cum_log_probs cover generated tokens only (log-softmax of the
  processed logits).
Input names are those of the C++ backend from Triton 25.05 on (min_tokens and seed; the
older backends before 25.05 called them min_length and random_seed).
Deliberate differences: no seed input -> model parameter random_seed + a request
counter (TensorRT-LLM uses 0); beam_width > 1 and logits/perf-metrics returns are
refused; a bad word's last token is banned even when it is token id 0.
"""

from reference_engine.config import EngineConfig
from reference_engine.contract import ContractDefaults, EngineLimits, parse_request
from reference_engine.scheduler import Scheduler
from reference_engine.types import (
    GenerationRequest,
    LiveSequence,
    SamplingParams,
    SequenceSpec,
    StepOutput,
    StopRequest,
)

__all__ = [
    "ContractDefaults",
    "EngineConfig",
    "EngineLimits",
    "GenerationRequest",
    "LiveSequence",
    "SamplingParams",
    "Scheduler",
    "SequenceSpec",
    "StepOutput",
    "StopRequest",
    "parse_request",
]
