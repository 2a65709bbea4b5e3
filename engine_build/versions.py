"""The versions the production path was written against (see docs/production.md).

Triton's `<tag>-trtllm-python-py3` containers pin one TensorRT-LLM release each; 25.08
is the last of the 0.x line, where the TensorRT engine workflow (checkpoint conversion,
`trtllm-build`, the C++ `tensorrtllm` backend) is the documented path.
"""

from __future__ import annotations

TRITON_CONTAINER_TAG = "25.08"
TENSORRT_LLM_VERSION = "0.21.0"
CONTAINER_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_CONTAINER_TAG}-trtllm-python-py3"

TENSORRT_LLM_MISSING = (
    f"tensorrt_llm is not installed: run inside {CONTAINER_IMAGE} "
    "(or use --dry-run to plan, or --engine reference to serve without a GPU)"
)
TRTLLM_BUILD_MISSING = (
    f"trtllm-build is not on PATH: it comes with the tensorrt_llm wheel; run inside "
    f"{CONTAINER_IMAGE}"
)
