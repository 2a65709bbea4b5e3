"""`llm-bls-openai`: serve the OpenAI API in front of Triton's `tensorrt_llm_bls`.

llm-bls-openai --triton-url 127.0.0.1:8001 --port 9000
llm-bls-openai --triton-url host-a:8001 --triton-url host-b:8001   # replicas, round-robin
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from openai_gateway.app import SETTINGS_ENVIRONMENT, GatewaySettings, create_app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-bls-openai",
        description="An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, "
        "/v1/models, /health) in front of tensorrt_llm_bls on Triton, over gRPC streaming.",
    )
    parser.add_argument(
        "--triton-url",
        action="append",
        metavar="HOST:PORT",
        help="Triton's gRPC address; repeat for replicas, used round-robin "
        "(default 127.0.0.1:8001)",
    )
    parser.add_argument(
        "--model", default="tensorrt_llm_bls", help="the Triton model to call (%(default)s)"
    )
    parser.add_argument(
        "--served-model-name",
        help="the model name clients send and /v1/models lists (default: --model)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on (%(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (%(default)s); each streams about 8 000 tokens per second "
        "of CPU, so add one per core when clients read more than that",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (%(default)s; info logs every request)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    settings = GatewaySettings(
        triton_urls=tuple(args.triton_url or ["127.0.0.1:8001"]),
        triton_model=args.model,
        served_model_name=args.served_model_name,
    )
    print(
        f"llm-bls-openai: model {settings.model_name!r} at http://{args.host}:{args.port}/v1 "
        f"-> {settings.triton_model} on Triton gRPC {', '.join(settings.triton_urls)}",
        file=sys.stderr,
        flush=True,
    )
    if args.workers < 1:
        print("llm-bls-openai: --workers must be at least 1", file=sys.stderr)
        return 2
    options = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        # One line per request costs more than the request's own work at high concurrency.
        "access_log": args.log_level in ("info", "debug"),
        "timeout_graceful_shutdown": 5,
    }
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Several processes: uvicorn imports the app in each, so the settings go by environment.
    os.environ[SETTINGS_ENVIRONMENT] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run(
        "openai_gateway.app:app_from_environment", factory=True, workers=args.workers, **options
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
