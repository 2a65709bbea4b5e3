"""`llm-bls-fixtures`: create the offline fixtures and print where they are."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline_fixtures.fixtures import ENV_ROOT, ensure_fixtures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llm-bls-fixtures",
        description="Build (once) the offline tokenizers and tiny Llama used by the tests "
        "and the local server, then print their directories.",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"where to put them (default: ${ENV_ROOT}, else <checkout>/.fixtures)",
    )
    args = parser.parse_args(argv)
    paths = ensure_fixtures(args.root)
    print(f"sentencepiece_tokenizer={paths.sentencepiece_tokenizer}")
    print(f"bpe_tokenizer={paths.bpe_tokenizer}")
    print(f"tiny_llama={paths.tiny_llama}")
    print(f"reciting_llama={paths.reciting_llama}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
