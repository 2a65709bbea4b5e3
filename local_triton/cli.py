"""`llm-bls-serve`: run a real tritonserver on a model repository, locally.

llm-bls-serve --demo                                  # the embedded tiny model
llm-bls-serve --model-repository OUT/model_repository # a repository as it is
llm-bls-serve --engine reference --model-dir CKPT --tokenizer-dir CKPT
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from local_triton.distribution import ServerNotInstalled, find_distribution, interpreter_mismatch
from local_triton.gateway import GatewayProcess
from local_triton.server import ServerOptions, ServerStartError, TritonServer
from local_triton.staging import (
    EngineKind,
    StagingError,
    StagingPlan,
    default_model_repository,
    stage_repository,
)


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        target, separator, value = item.partition("=")
        model, dot, parameter = target.partition(".")
        if not separator or not dot or not model or not parameter:
            raise SystemExit(f"--set {item!r}: expected MODEL.PARAMETER=VALUE")
        overrides.setdefault(model, {})[parameter] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-bls-serve",
        description="Run a real tritonserver (from the nvidia-pytriton wheel) on a model repository.",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve the embedded tiny Llama and tokenizer with the reference engine",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        help="repository to serve (default: this checkout's model_repository/)",
    )
    parser.add_argument(
        "--engine",
        choices=[kind.value for kind in EngineKind],
        help="what serves `tensorrt_llm`: native keeps the repository's own (default), "
        "reference/synthetic put this project's Python engine in its place "
        "(--demo: reference)",
    )
    parser.add_argument(
        "--model-dir", type=Path, help="Hugging Face checkpoint for the reference engine"
    )
    parser.add_argument(
        "--tokenizer-dir", type=Path, help="tokenizer for every model that takes one"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="MODEL.PARAM=VALUE",
        help="set a config parameter of a model in the staged copy (repeatable)",
    )
    parser.add_argument("--http-port", type=int, help="default: a free port")
    parser.add_argument("--grpc-port", type=int, help="default: a free port")
    parser.add_argument("--metrics-port", type=int, help="default: a free port")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds (default 180)")
    parser.add_argument("--log-verbose", type=int, default=0, help="tritonserver --log-verbose")
    parser.add_argument("--quiet", action="store_true", help="do not echo the server's log")
    parser.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to tritonserver as it is (repeatable), e.g. "
        "--server-arg=--backend-config=python,shm-default-byte-size=16777216",
    )
    parser.add_argument(
        "--openai",
        action="store_true",
        help="also start the OpenAI-compatible gateway (llm-bls-openai) in front of the server",
    )
    parser.add_argument("--openai-port", type=int, help="the gateway's port (default: a free port)")
    return parser


def plan_from_args(args: argparse.Namespace) -> StagingPlan | None:
    """What to stage, or None to serve the given repository untouched."""
    engine = EngineKind(args.engine) if args.engine else None
    model_dir, tokenizer_dir = args.model_dir, args.tokenizer_dir
    if args.demo:
        from offline_fixtures import ensure_fixtures

        fixtures = ensure_fixtures()
        engine = engine or EngineKind.REFERENCE
        model_dir = model_dir or fixtures.tiny_llama
        tokenizer_dir = tokenizer_dir or fixtures.tiny_llama
    overrides = parse_overrides(args.overrides)
    needs_staging = (
        engine not in (None, EngineKind.NATIVE) or model_dir or tokenizer_dir or overrides
    )
    if args.model_repository and not needs_staging:
        return None
    return StagingPlan(
        source=args.model_repository or default_model_repository(),
        engine=engine or EngineKind.NATIVE,
        model_dir=model_dir,
        tokenizer_dir=tokenizer_dir,
        overrides=overrides,
    )


def curl_examples(server: TritonServer) -> str:
    url = server.http_url
    return "\n".join(
        [
            "Ready. Try:",
            f"  curl -s {url}/v2/models/tensorrt_llm_bls/generate \\",
            '    -d \'{"text_input": "The quick brown fox", "max_tokens": 24}\'',
            f"  curl -sN {url}/v2/models/tensorrt_llm_bls/generate_stream \\",
            '    -d \'{"text_input": "Hello 世界", "max_tokens": 24, "stream": true, "stop_words": ["\\n"]}\'',
            f"  llm-bls-client --url {server.grpc_url} --stream 'Once upon a time'",
            f"HTTP {url}  gRPC {server.grpc_url}  metrics {server.metrics_url}",
            "Ctrl-C stops the server.",
        ]
    )


def openai_examples(gateway: GatewayProcess) -> str:
    base = gateway.base_url
    return "\n".join(
        [
            f"OpenAI-compatible gateway: {base} (model tensorrt_llm_bls). Try:",
            f"  curl -s {base}/chat/completions -H 'Content-Type: application/json' \\",
            """    -d '{"model": "tensorrt_llm_bls", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 24}'""",
            f"  curl -sN {base}/completions -H 'Content-Type: application/json' \\",
            """    -d '{"model": "tensorrt_llm_bls", "prompt": "Once upon a time", "max_tokens": 24, "stream": true}'""",
            f"  {sys.executable} -c 'from openai import OpenAI; "
            f'client = OpenAI(base_url="{base}", api_key="none"); '
            'print(client.chat.completions.create(model="tensorrt_llm_bls", max_tokens=24, '
            'messages=[{"role": "user", "content": "Hi"}]).choices[0].message.content)\'',
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.openai_port is not None and not args.openai:
        print("llm-bls-serve: --openai-port needs --openai", file=sys.stderr)
        return 2
    try:
        distribution = find_distribution()
    except ServerNotInstalled as error:
        print(f"llm-bls-serve: {error}", file=sys.stderr)
        return 2
    warning = interpreter_mismatch(distribution)
    if warning:
        print(f"llm-bls-serve: warning: {warning}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="llm-bls-repo-") as scratch:
        try:
            plan = plan_from_args(args)
            repository = (
                args.model_repository
                if plan is None
                else stage_repository(plan, Path(scratch) / "model_repository")
            )
        except (StagingError, ValueError) as error:
            print(f"llm-bls-serve: {error}", file=sys.stderr)
            return 2
        options = ServerOptions(
            model_repository=Path(repository),
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            ready_timeout_s=args.ready_timeout,
            log_verbose=args.log_verbose,
            extra_args=tuple(args.server_args),
        )
        server = TritonServer(
            options, echo=None if args.quiet else print, distribution=distribution
        )
        gateway = None
        if args.openai:
            gateway = GatewayProcess(server.grpc_url, port=args.openai_port, inherit_output=True)
        return _run_until_stopped(server, gateway)


def _run_until_stopped(server: TritonServer, gateway: GatewayProcess | None = None) -> int:
    def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # A closed terminal (SIGHUP) or a quit must stop the server too: it runs in a session
    # of its own and would otherwise outlive us, holding its ports.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(stop_signal, stop_on_signal)
    try:
        if gateway is not None:
            gateway.check_port()  # before the server's long start, not after it
        server.start()
        if gateway is not None:
            gateway.start()
    except ServerStartError as error:
        server.stop()
        print(f"llm-bls-serve: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        server.stop()  # it may be up while the gateway was starting
        # A requested stop is a clean exit, also while the server was still starting.
        print("llm-bls-serve: stopped before the server was ready", file=sys.stderr)
        return 0
    try:
        print(curl_examples(server), flush=True)
        if gateway is not None:
            print(openai_examples(gateway), flush=True)
        code = server.wait()
        print(f"llm-bls-serve: tritonserver exited with code {code}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        print("llm-bls-serve: stopping tritonserver", file=sys.stderr, flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the stop short and leave the server behind.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(stop_signal, signal.SIG_IGN)
        if gateway is not None:
            gateway.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
