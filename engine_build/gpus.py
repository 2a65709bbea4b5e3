"""Count the GPUs of this machine (for the tp × pp check of a real build)."""

from __future__ import annotations

import os
import shutil
import subprocess


def count_gpus() -> int:
    """GPUs visible to processes started here: nvidia-smi's list, narrowed by
    CUDA_VISIBLE_DEVICES when that is set; torch.cuda when nvidia-smi is missing."""
    listed = _nvidia_smi_count()
    if listed is None:
        listed = _torch_count()
    if listed is None:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry for entry in visible.split(",") if entry.strip()]
        return min(listed, len(entries))
    return listed


def _nvidia_smi_count() -> int | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run(
            [executable, "--list-gpus"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))


def _torch_count() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
