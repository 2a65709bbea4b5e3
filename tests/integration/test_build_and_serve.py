"""From a checkpoint to a served pipeline, with the commands users run.

`llm-bls-build --engine reference` writes a repository; `llm-bls-serve` serves it as is;
`llm-bls-serve --demo` (the README's first command) serves the embedded default.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from local_triton.server import free_port
from tests.integration.clients import http_generate, http_generate_stream
from tests.integration.test_launcher import nothing_listens_on, wait_ready

pytestmark = pytest.mark.integration


def serve_until_stopped(args: list[str], check, announced_by: str = "/generate_stream") -> str:
    """Run llm-bls-serve with `args`, run `check(url)` once ready, then SIGTERM it once it
    has printed a line with `announced_by` (its examples, printed when all is up).

    Returns what it printed."""
    http_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local_triton.cli", *args, "--http-port", str(http_port), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    announced = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if announced_by in line:
                announced.set()
        announced.set()  # it exited: nothing more to wait for

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(url, process, timeout_s=180)
        check(url)
        # The launcher is up once it prints its examples, which can come a moment after a
        # check has already been answered (the gateway serves before its health poll returns).
        assert announced.wait(timeout=60), "llm-bls-serve never printed its examples"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
        output = "".join(lines)
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
    assert nothing_listens_on(http_port)
    return output


def test_build_with_reference_engine_then_serve_end_to_end(fixture_paths, tmp_path: Path):
    output_dir = tmp_path / "deploy"
    built = subprocess.run(
        [
            sys.executable,
            "build_engines.py",
            "--checkpoint",
            str(fixture_paths.reciting_llama),
            "--output-dir",
            str(output_dir),
            "--engine",
            "reference",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert built.returncode == 0, built.stdout + built.stderr
    repository = output_dir / "model_repository"
    assert sorted(p.name for p in repository.iterdir()) == [
        "postprocessing",
        "preprocessing",
        "tensorrt_llm",
        "tensorrt_llm_bls",
    ]

    def check(url: str) -> None:
        reply = http_generate(url, {"text_input": "Once upon a time,", "max_tokens": 40})
        assert reply.status == 200, reply.body
        assert reply.body["text_output"] == (
            "in a small village by the sea 🌊, there lived an old fisherman."
        )
        events = http_generate_stream(
            url,
            {
                "text_input": "The quick brown",
                "max_tokens": 40,
                "stream": True,
                "stop_words": ["lazy"],
            },
        )
        assert "".join(e["text_output"] for e in events) == "fox jumps over the "
        assert events[-1]["stop_reason"] == "lazy"

    serve_until_stopped(["--model-repository", str(repository)], check)


def test_demo_serves_the_embedded_default(fixture_paths):
    def check(url: str) -> None:
        reply = http_generate(
            url, {"text_input": "Hello 世界", "max_tokens": 8, "return_num_output_tokens": True}
        )
        assert reply.status == 200, reply.body
        assert reply.body["num_output_tokens"] == 8
        assert reply.body["finish_reason"] == "length"

    serve_until_stopped(["--demo"], check)


def test_demo_with_openai_starts_the_gateway_and_stops_it_with_the_server():
    import openai

    port = free_port()

    def check(_url: str) -> None:
        # Ready means both are up: the launcher prints its lines after the gateway's health.
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = client.chat.completions.create(
                    model="tensorrt_llm_bls",
                    messages=[{"role": "user", "content": "Hi"}],
                    max_tokens=4,
                )
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, "the gateway never answered"
                time.sleep(0.5)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 4

    output = serve_until_stopped(
        ["--demo", "--openai", "--openai-port", str(port)], check, announced_by="/chat/completions"
    )
    base = f"http://127.0.0.1:{port}/v1"
    assert f"curl -s {base}/chat/completions" in output
    assert f'OpenAI(base_url="{base}", api_key="none")' in output
    assert nothing_listens_on(port)  # stopped with the server
