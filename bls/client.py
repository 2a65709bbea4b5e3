"""`llm-bls-client`: call tensorrt_llm_bls over gRPC streaming and print text as it comes.

    llm-bls-client "Once upon a time" --stream --max-tokens 64 --stop "\\n\\n"

A decoupled model is reached through gRPC's bidirectional stream only, so both modes use
it; `--stream` decides whether the model answers per token or once. The `stream_generate`
function is the same path for Python callers (and the tests).
"""

from __future__ import annotations

import argparse
import queue
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_MODEL = "tensorrt_llm_bls"


class GenerateError(RuntimeError):
    """The server answered the request with an error (its message is the client message)."""


@dataclass(frozen=True)
class StreamedResponse:
    outputs: dict[str, np.ndarray]
    final: bool

    def text(self, row: int = 0) -> str:
        value = self.outputs.get("text_output")
        return "" if value is None else value.reshape(-1)[row].decode("utf-8")

    def scalar(self, name: str, row: int = 0):
        value = self.outputs.get(name)
        if value is None:
            return None
        item = value.reshape(-1)[row]
        return item.decode("utf-8") if isinstance(item, bytes) else item.item()


def as_input_array(value: object) -> np.ndarray:
    """A Python value as a [1, ...] tensor: str -> BYTES, bool -> BOOL, int -> INT32, ..."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, str):
        return np.array([[value.encode("utf-8")]], dtype=np.object_)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return np.array([[v.encode("utf-8") for v in value]], dtype=np.object_)
    if isinstance(value, bool):
        return np.array([[value]], dtype=np.bool_)
    if isinstance(value, int):
        return np.array([[value]], dtype=np.int32)
    if isinstance(value, float):
        return np.array([[value]], dtype=np.float32)
    if isinstance(value, (list, tuple)):
        return np.array([value], dtype=np.float32)
    raise TypeError(f"cannot send {type(value).__name__} as a tensor")


def grpc_inputs(inputs: Mapping[str, object]) -> list:
    """`tritonclient.grpc.InferInput`s for a mapping of input name to value."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        array = as_input_array(value)
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def stream_generate(
    url: str,
    inputs: Mapping[str, object],
    *,
    model: str = DEFAULT_MODEL,
    timeout_s: float = 120.0,
    request_id: str | None = None,
) -> Iterator[StreamedResponse]:
    """Send one request over a gRPC stream; yield each response until the final one.

    Leaving the loop early (break, exception, Ctrl-C) cancels the request on the server.
    """
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    replies: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    finished = False
    try:
        client.async_stream_infer(
            model,
            grpc_inputs(inputs),
            request_id=request_id or uuid.uuid4().hex,
            enable_empty_final_response=True,
        )
        while True:
            try:
                result, error = replies.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no response from {model} within {timeout_s:.0f} s") from None
            if error is not None:
                finished = True
                raise GenerateError(error.message() if hasattr(error, "message") else str(error))
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            outputs = {output.name: result.as_numpy(output.name) for output in response.outputs}
            finished = final
            yield StreamedResponse(outputs=outputs, final=final)
            if final:
                return
    finally:
        # Unfinished means the caller left early: cancel, so the server stops generating.
        client.stop_stream(cancel_requests=not finished)
        client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-bls-client", description="Generate text with tensorrt_llm_bls over gRPC."
    )
    parser.add_argument("prompt")
    parser.add_argument(
        "--url", default="127.0.0.1:8001", help="gRPC address (default %(default)s)"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--stream", action="store_true", help="print text as it is generated")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument(
        "--stop", action="append", default=[], metavar="S", help="stop string (repeatable)"
    )
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per response")
    return parser


def request_inputs(args: argparse.Namespace) -> dict[str, object]:
    inputs: dict[str, object] = {"text_input": args.prompt, "stream": bool(args.stream)}
    optional = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
    }
    inputs.update({name: value for name, value in optional.items() if value is not None})
    if args.seed is not None:
        inputs["seed"] = np.array([[args.seed]], dtype=np.uint64)
    if args.stop:
        inputs["stop_words"] = list(args.stop)
    return inputs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    finish_reason = None
    try:
        for response in stream_generate(
            args.url, request_inputs(args), model=args.model, timeout_s=args.timeout
        ):
            sys.stdout.write(response.text() if response.outputs else "")
            sys.stdout.flush()
            finish_reason = response.scalar("finish_reason") or finish_reason
    except GenerateError as error:
        print(f"\nllm-bls-client: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nllm-bls-client: cancelled", file=sys.stderr)
        return 130
    except Exception as error:  # connection refused, timeout: one line, not a traceback
        print(f"\nllm-bls-client: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"\n[finish_reason: {finish_reason}]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
