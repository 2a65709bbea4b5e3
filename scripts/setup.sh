#!/usr/bin/env bash
# Create .venv and install the project with everything the local server and tests need.
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# tritonserver's Python backend stub embeds the system libpython and imports packages
# through the `python3` first on PATH, so the environment must be made from that same
# Python build (README, "The local server"). PYTHON overrides the choice.
pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  # The system default first: its libpython is the one a Debian/Ubuntu stub links, and
  # the CPU torch wheel on these machines is built for it.
  for candidate in /usr/bin/python3 /usr/bin/python3.12 /usr/bin/python3.11 /usr/bin/python3.10; do
    if [ -x "$candidate" ] && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  command -v python3
}

if [ ! -x .venv/bin/python ]; then
  python=$(pick_python)
  echo "setup: creating .venv with $python ($("$python" --version 2>&1))"
  "$python" -m venv .venv
fi

pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }
# torch first and pinned: 2.13.0 is the CPU build present on these machines; an unpinned
# torch would pull several GB of CUDA packages.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "setup: installing torch (CPU)"
  pip_install "torch==${TORCH_VERSION:-2.13.0}"
fi
echo "setup: installing triton-llm-bls with the test and serve extras"
pip_install -e '.[test]'
echo "setup: creating the offline fixtures (tokenizers, tiny Llama)"
.venv/bin/llm-bls-fixtures >/dev/null
echo "setup: done"
