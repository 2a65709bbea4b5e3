"""The `tensorrt_llm` model over TensorRT-LLM's LLM API (PyTorch backend, no engine build).

TensorRT-LLM's newer releases have no C++ Triton backend and no built engines; this
Python-backend model speaks that backend's tensor contract instead, so preprocessing,
postprocessing and tensorrt_llm_bls run unchanged on either generation. Layers:

- contract: `reference_engine.contract` (request tensors -> `GenerationRequest`, response
  tensors), shared with the reference engine, so both accept and refuse the same inputs;
- `sampling`: each contract sequence -> the keyword arguments of
  `tensorrt_llm.SamplingParams` (plus `logits.ContractLogitsProcessor` for bad words and
  embedding_bias, and `GuidedDecodingParams` for a guide);
- `outputs`: the LLM API's step outputs -> the contract's tokens, log probs and ends;
- `driver`: one asyncio loop driving every request (`generate_async(streaming=True)`),
  stop requests, client cancellation, FINAL on every path;
- `engine`: the only module that imports `tensorrt_llm` (lazily);
- `triton_glue` and `triton_model/`: the Triton model (`config.pbtxt`, thin `1/model.py`).

Written against TensorRT-LLM 1.2.1 (`release.py` cites the sources). TensorRT-LLM cannot
be installed on the machines this project is developed and tested on, so the mapping is
tested at the level of argument names and values; the calls run only in NVIDIA's container.
"""
