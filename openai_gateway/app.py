"""The FastAPI application: OpenAI's routes in front of `tensorrt_llm_bls`.

A request flows: body -> pydantic model (schemas) -> BLS inputs (mapping) -> one gRPC
stream (triton_client) -> OpenAI body or server-sent events (responses). A client that
goes away, while streaming or while waiting for a whole answer, cancels the gRPC call and
so the Triton request. Every error is answered in OpenAI's format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from openai_gateway.errors import OpenAIError, from_triton, unknown_model
from openai_gateway.mapping import BlsCall, chat_call, completion_call
from openai_gateway.responses import DONE, Answer, sse_error
from openai_gateway.schemas import ChatCompletionRequest, CompletionRequest, parse_request
from openai_gateway.triton_client import BackendError, BlsResponse, BlsStream, TritonBls

logger = logging.getLogger("openai_gateway")

_T = TypeVar("_T")


@dataclass(frozen=True)
class GatewaySettings:
    triton_urls: tuple[str, ...] = ("127.0.0.1:8001",)
    triton_model: str = "tensorrt_llm_bls"
    served_model_name: str | None = None  # the name clients send; default: triton_model

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.triton_model


#: Where `llm-bls-openai --workers N` hands the settings to each worker process.
SETTINGS_ENVIRONMENT = "LLM_BLS_OPENAI_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process, from the settings the CLI put in the environment."""
    values = json.loads(os.environ[SETTINGS_ENVIRONMENT])
    return create_app(GatewaySettings(**{**values, "triton_urls": tuple(values["triton_urls"])}))


class _ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bls = TritonBls(settings.triton_urls, settings.triton_model)
        try:
            yield
        finally:
            await app.state.bls.close()

    app = FastAPI(title="llm-bls-openai", lifespan=lifespan)
    started = int(time.time())
    model_card = {
        "id": settings.model_name,
        "object": "model",
        "created": started,
        "owned_by": "triton-llm-bls",
    }

    @app.exception_handler(OpenAIError)
    async def openai_error(_request: Request, error: OpenAIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        # Unknown routes (404) and methods (405), in OpenAI's format too.
        body = OpenAIError(error.status_code, str(error.detail)).body()
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        logger.exception("llm-bls-openai: unexpected error")
        body = OpenAIError(500, f"internal error in the gateway: {type(error).__name__}").body()
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        states = await request.app.state.bls.ready()
        ready = any(state == "ready" for state in states.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "triton": states},
            status_code=200 if ready else 503,
        )

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, object]:
        if name != settings.model_name:
            raise unknown_model(name, settings.model_name)
        return model_card

    def check_model(name: str) -> None:
        if name != settings.model_name:
            raise unknown_model(name, settings.model_name)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_request(CompletionRequest, await request.body())
        check_model(body.model)
        return await _answer(request, completion_call(body), chat=False, model=body.model)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = parse_request(ChatCompletionRequest, await request.body())
        check_model(body.model)
        return await _answer(request, chat_call(body), chat=True, model=body.model)

    return app


async def _answer(request: Request, call: BlsCall, *, chat: bool, model: str) -> Response:
    request_id = uuid.uuid4().hex
    answer = Answer(call, chat=chat, request_id=request_id, created=int(time.time()), model=model)
    stream: BlsStream = request.app.state.bls.open(call.inputs, request_id)
    streaming = False  # once true, event_stream owns the stream and cancels it
    try:
        if call.stream:
            # The first response before the headers: a refused request is a plain HTTP
            # error, not a 200 followed by an error event.
            first = await _unless_client_leaves(request, stream.__anext__)
            response = StreamingResponse(
                event_stream(answer, first, stream), media_type="text/event-stream"
            )
            streaming = True
            return response
        responses = await _unless_client_leaves(request, lambda: _collect(stream))
        return JSONResponse(answer.whole(responses))
    except BackendError as error:
        raise from_triton(
            error.status, error.message, max_tokens_param=call.max_tokens_param
        ) from None
    except StopAsyncIteration:  # a stream that ended without a response: not the BLS
        raise OpenAIError(502, "Triton ended the request without a response") from None
    except _ClientGone:
        return Response(status_code=499)  # nobody reads it; the request is cancelled
    finally:
        if not streaming:
            stream.cancel()  # a no-op once the request has ended


async def _collect(stream: BlsStream) -> list[BlsResponse]:
    return [response async for response in stream]


async def event_stream(
    answer: Answer, first: BlsResponse, stream: BlsStream
) -> AsyncIterator[bytes]:
    """The SSE body. Starlette cancels it when the client disconnects: `finally` then
    cancels the Triton request."""
    try:
        for chunk in answer.chunks(first):
            yield chunk
        async for response in stream:
            for chunk in answer.chunks(response):
                yield chunk
        if answer.call.include_usage:
            yield answer.usage_chunk()
        yield DONE
    except BackendError as error:
        yield sse_error(
            from_triton(error.status, error.message, max_tokens_param=answer.call.max_tokens_param)
        )
    finally:
        stream.cancel()


async def _unless_client_leaves(request: Request, work: Callable[[], Awaitable[_T]]) -> _T:
    """`work()`, unless the HTTP client disconnects first (then _ClientGone)."""
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler itself is cancelled (the server stops)
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task not in done:
        task.cancel()
        raise _ClientGone
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
