"""Where everything goes under --output-dir, and where the server will see it.

OUT/model_repository/     the four models, configs filled, model.py files copied
OUT/engine/               the TensorRT-LLM engine (config.json, rank*.engine)
OUT/trtllm_checkpoint/    the intermediate TensorRT-LLM checkpoint (may be deleted)
OUT/tokenizer/            the tokenizer files, copied from the checkpoint
OUT/xgrammar_tokenizer_info.json   (--guided-decoding only) what the C++ backend's
                          guided decoding reads about the tokenizer
OUT/bls/ serving_common/ preprocessing/ postprocessing/ [reference_engine/]
                          the packages, so each model.py finds them without pip
OUT/launch_triton.sh, OUT/slurm_example.sbatch   (tp × pp > 1 only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine_build.xgrammar_info import TOKENIZER_INFO_FILE

MODEL_NAMES = ("preprocessing", "postprocessing", "tensorrt_llm_bls", "tensorrt_llm")
ENGINE_MODEL = "tensorrt_llm"


@dataclass(frozen=True)
class OutputLayout:
    root: Path  # the output directory on this machine
    deploy_root: Path  # the same directory as the server will see it

    @property
    def repository(self) -> Path:
        return self.root / "model_repository"

    @property
    def engine(self) -> Path:
        return self.root / "engine"

    @property
    def trtllm_checkpoint(self) -> Path:
        return self.root / "trtllm_checkpoint"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def xgrammar_tokenizer_info(self) -> Path:
        return self.root / TOKENIZER_INFO_FILE

    @property
    def launch_script(self) -> Path:
        return self.root / "launch_triton.sh"

    @property
    def slurm_script(self) -> Path:
        return self.root / "slurm_example.sbatch"

    # Paths written into configs and scripts: as the server sees them.
    @property
    def deployed_repository(self) -> Path:
        return self.deploy_root / "model_repository"

    @property
    def deployed_engine(self) -> Path:
        return self.deploy_root / "engine"

    @property
    def deployed_tokenizer(self) -> Path:
        return self.deploy_root / "tokenizer"

    @property
    def deployed_xgrammar_tokenizer_info(self) -> Path:
        return self.deploy_root / TOKENIZER_INFO_FILE
