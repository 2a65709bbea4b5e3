"""Build a TensorRT-LLM engine from a Hugging Face checkpoint and write a finished,
checked Triton model repository for it (also installed as the `llm-bls-build` command).

    python build_engines.py --checkpoint HF_DIR --output-dir OUT [--dry-run]

The logic lives in the `engine_build` package; see docs/production.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from engine_build.cli import main
except ImportError:  # run as a script from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_build.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
