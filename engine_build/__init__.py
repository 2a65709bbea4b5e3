"""Hugging Face checkpoint -> TensorRT-LLM engine -> a filled, checked model repository.

The logic behind `build_engines.py` / `llm-bls-build`:
- `options`: the typed `BuildOptions` and the checks that refuse impossible builds;
- `steps`: `plan_build`, a pure function from options to a list of `BuildStep`s;
- `executor`: runs the steps (subprocesses for the TensorRT-LLM toolchain, in-process
  file work for the rest) with progress output;
- `values`, `repository`, `launch`: what goes into the configs and scripts;
- `verify`: the checks of the result; `convert`: the TensorRT-LLM conversion step.
"""
