#!/usr/bin/env bash
# The unit tests (tokenizer/detokenizer property tests included) on the oldest supported
# libraries (scripts/oldest-libraries.txt), in their own environment .venv-oldest.
# Made here from the package index on first use, and again when the pins or this script
# change.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-oldest
pins=scripts/oldest-libraries.txt
stamp="$venv/.oldest-libraries"
python=${PYTHON:-/usr/bin/python3}
[ -x "$python" ] || python=$(command -v python3)

if ! cat "$pins" scripts/test_oldest.sh | cmp -s - "$stamp" 2>/dev/null; then
  echo "test_oldest: creating $venv with $("$python" --version 2>&1) and $pins"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip_install() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
  # The same pinned CPU torch as .venv (a local wheel; any other would download GBs): the
  # reference-engine and fixture tests need it, and the containers bring their own torch.
  pip_install "torch==${TORCH_VERSION:-2.13.0}"
  # The project with its declared ranges, held to the oldest pins: pip refuses if the
  # pins fall outside what pyproject.toml declares.
  # accelerate: every TensorRT-LLM release requires it, so the containers have it, and
  # transformers 4.51.0 cannot load a model without it (NameError init_empty_weights).
  # [gateway], httpx2 (starlette's test client) and jsonschema: the unit tests of the
  # OpenAI gateway and of guided decoding import them (without them collection stops).
  pip_install -c "$pins" -e ".[gateway]" "accelerate>=0.25" "tritonclient[grpc]>=2.40" \
    "pytest>=8" "hypothesis>=6.100" "jsonschema>=4" httpx2
  cat "$pins" scripts/test_oldest.sh >"$stamp"
fi
# The editable install maps each package by name: after pyproject.toml changes (a package
# added, say) the project is installed again, without touching the pinned libraries.
if ! cmp -s pyproject.toml "$venv/.pyproject.toml" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  cp pyproject.toml "$venv/.pyproject.toml"
fi

"$venv/bin/python" - "$pins" <<'PY'
# Fail loudly if the environment drifted from the pins (e.g. a later manual install).
import sys
from importlib.metadata import version

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#")[0].strip()
    if line:
        name, wanted = line.split("==")
        if version(name) != wanted:
            sys.exit(f"test_oldest: {name} is {version(name)}, {sys.argv[1]} pins {wanted}")
PY

# Fixtures built with these libraries, apart from .venv's (their keys differ by version).
export LLM_BLS_FIXTURES_DIR="$PWD/.fixtures-oldest"
exec "$venv/bin/python" -m pytest tests/unit -p no:cacheprovider "$@"
