"""Where the tritonserver shipped in the `nvidia-pytriton` wheel lives, and how to run it.

We use only the server binary and its Python backend from that wheel, never PyTriton's
own Python API.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class ServerNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonDistribution:
    """Paths inside an installed nvidia-pytriton wheel."""

    root: Path  # <site-packages>/pytriton/tritonserver
    libraries: Path  # <site-packages>/nvidia_pytriton.libs

    @property
    def server_binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub_for(self, version: tuple[int, int]) -> Path:
        return (
            self.root
            / "python_backend_stubs"
            / f"{version[0]}.{version[1]}"
            / "triton_python_backend_stub"
        )


def find_distribution() -> TritonDistribution:
    # find_spec, not import: importing pytriton pulls in its whole client stack.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerNotInstalled(
            "tritonserver not found: install the serve extra (pip install -e '.[serve]'), "
            "which brings the nvidia-pytriton wheel that ships it"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    distribution = TritonDistribution(
        root=package_dir / "tritonserver",
        libraries=package_dir.parent / "nvidia_pytriton.libs",
    )
    if not distribution.server_binary.is_file():
        raise ServerNotInstalled(f"no tritonserver binary at {distribution.server_binary}")
    return distribution


def assemble_backend_directory(distribution: TritonDistribution, destination: Path) -> Path:
    """Make `destination/python/` with the Python backend and the stub for this interpreter."""
    version = (sys.version_info.major, sys.version_info.minor)
    stub = distribution.stub_for(version)
    if not stub.is_file():
        raise ServerNotInstalled(
            f"the tritonserver wheel has no Python backend stub for Python "
            f"{version[0]}.{version[1]} (looked for {stub})"
        )
    python_dir = destination / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (
        distribution.python_backend / "libtriton_python.so",
        distribution.python_backend / "triton_python_backend_utils.py",
        stub,
    ):
        shutil.copy2(source, python_dir / source.name)
    return destination


def stub_libpython(stub: Path) -> Path | None:
    """The libpython the stub embeds, as `ldd` resolves it (None when ldd cannot say)."""
    try:
        listing = subprocess.run(
            ["ldd", str(stub)], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listing.splitlines():
        if "libpython" in line and "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" ", 1)[0]
            return Path(target).resolve() if target.startswith("/") else None
    return None


def interpreter_mismatch(distribution: TritonDistribution) -> str | None:
    """Explain why models may fail to import, or None when the environment fits the stub.

    The stub embeds one libpython and imports packages through the `python3` first on
    PATH. A virtual environment made from another build of the same version fails at
    import time with undefined symbols, so we say so before the models do.
    """
    stub = distribution.stub_for((sys.version_info.major, sys.version_info.minor))
    libpython = stub_libpython(stub)
    if libpython is None:
        return None
    base_prefix = Path(sys.base_prefix).resolve()
    if base_prefix in libpython.parents:
        return None
    return (
        f"the Python backend stub embeds {libpython}, but this environment is built on the "
        f"Python at {base_prefix}; models may fail to import (e.g. 'undefined symbol'). "
        f"Create the virtual environment with the interpreter that owns {libpython.name} "
        "(on Debian: /usr/bin/python3.11 -m venv .venv)."
    )
