"""The `preprocessing` model in a real tritonserver: tensors over HTTP, errors as 400s."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from local_triton.staging import StagingPlan, default_model_repository
from local_triton.testing import staged_server
from preprocessing import PreprocessingLimits, PromptEncoder
from preprocessing.handler import preprocess
from serving_common.tokenizer_loading import load_tokenizer

pytestmark = pytest.mark.integration

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

LIMITS = {"max_input_len": "64", "max_words": "4", "max_word_tokens": "8"}


@pytest.fixture(scope="module")
def server(fixture_paths):
    plan = StagingPlan(
        source=default_model_repository(),
        tokenizer_dir=fixture_paths.sentencepiece_tokenizer,
        only=frozenset({"preprocessing"}),
        overrides={"preprocessing": LIMITS},
    )
    with staged_server(plan) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    url = server.http_url.split("://", 1)[-1]
    with httpclient.InferenceServerClient(url) as connection:
        yield connection


@pytest.fixture(scope="module")
def local(fixture_paths) -> PromptEncoder:
    """The same code in-process, to compare the server's answers with."""
    tok = load_tokenizer(fixture_paths.sentencepiece_tokenizer)
    return PromptEncoder(tok, PreprocessingLimits.from_parameters(LIMITS))


def bytes_input(name: str, rows: list[list[str | bytes]]):
    array = np.array(
        [[s if isinstance(s, bytes) else s.encode("utf-8") for s in row] for row in rows],
        dtype=object,
    )
    tensor = httpclient.InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def int_input(name: str, rows: list[list[int]]):
    array = np.array(rows, dtype=np.int32)
    tensor = httpclient.InferInput(name, list(array.shape), "INT32")
    tensor.set_data_from_numpy(array)
    return tensor


def infer(client, inputs):
    result = client.infer("preprocessing", inputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    return {name: result.as_numpy(name) for name in names}


def test_batch_matches_the_in_process_code(client, local):
    prompts = [["Hello world"], ["Bonjour, je suis un peu plus long. Café e\u0301 🇫🇷"]]
    stop = [["hello", ""], ["\nUser:", "world"]]
    out = infer(
        client,
        [
            bytes_input("QUERY", prompts),
            int_input("REQUEST_OUTPUT_LEN", [[8], [9]]),
            bytes_input("STOP_WORDS_DICT", stop),
        ],
    )
    expected = preprocess(
        local,
        {
            "QUERY": np.array([[p[0].encode()] for p in prompts], dtype=object),
            "REQUEST_OUTPUT_LEN": np.array([[8], [9]], np.int32),
            "STOP_WORDS_DICT": np.array([[w.encode() for w in r] for r in stop], dtype=object),
        },
    )
    assert set(out) == set(expected)
    for name, value in expected.items():
        assert out[name].dtype == value.dtype, name
        np.testing.assert_array_equal(out[name], value, err_msg=name)
    assert out["INPUT_ID"].shape[0] == 2 and out["BAD_WORDS_IDS"].shape == (2, 2, 0)


def test_messages_render_the_chat_template(client, local):
    conversation = json.dumps([{"role": "user", "content": "Hi there"}])
    out = infer(client, [bytes_input("MESSAGES", [[conversation]])])
    assert out["INPUT_ID"][0].tolist() == local.encode_messages(conversation)
    assert out["INPUT_ID"][0].tolist().count(1) == 1  # one BOS


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (lambda: [bytes_input("QUERY", [[""]])], "QUERY: is empty"),
        (
            lambda: [bytes_input("QUERY", [["hello " * 80]])],
            "over the limit of 64 tokens (max_input_len)",
        ),
        (
            lambda: [
                bytes_input("QUERY", [["x"]]),
                bytes_input("BAD_WORDS_DICT", [["a", "b", "c", "d", "e"]]),
            ],
            "BAD_WORDS_DICT: has 5 words, over the limit of 4 words (max_words)",
        ),
        (
            lambda: [
                bytes_input("QUERY", [["x"]]),
                bytes_input("STOP_WORDS_DICT", [["a", "b", "c", "d", "e"]]),
            ],
            "STOP_WORDS_DICT: has 5 words, over the limit of 4 words (max_words)",
        ),
        (
            lambda: [
                bytes_input("QUERY", [["x"]]),
                bytes_input("STOP_WORDS_DICT", [["antidisestablishmentarianism " * 3]]),
            ],
            "(max_word_tokens)",
        ),
        # Sent as binary tensor data, which (unlike JSON) can carry bytes that are not UTF-8.
        (
            lambda: [bytes_input("QUERY", [[b"caf\xc3 au lait"]])],
            "QUERY: is not valid UTF-8 (invalid continuation byte at byte offset 3)",
        ),
        (
            lambda: [bytes_input("MESSAGES", [["{oops"]])],
            "MESSAGES: the conversation is not valid JSON",
        ),
        (lambda: [int_input("END_ID", [[2]])], "QUERY: is required"),
    ],
)
def test_bad_requests_get_invalid_arg_errors(client, inputs, expected):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("preprocessing", inputs())
    message = caught.value.message()
    assert expected in message
    assert "Traceback" not in message
    assert str(caught.value.status()) == "400", caught.value.status()
    # The model keeps serving after an error.
    assert infer(client, [bytes_input("QUERY", [["ok"]])])["REQUEST_INPUT_LEN"].tolist()[0][0] > 0


def test_generate_endpoint_and_unknown_fields(server):
    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{server.http_url}/v2/models/preprocessing/generate",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = post({"QUERY": "Hello world", "REQUEST_OUTPUT_LEN": 4})
    assert status == 200, body
    # The generate endpoint turns one-element outputs into JSON scalars.
    assert body["REQUEST_OUTPUT_LEN"] == 4
    assert body["REQUEST_INPUT_LEN"] == len(body["INPUT_ID"]) > 2
    status, body = post({"QUERY": "Hello world", "max_tokens": 4})
    assert status == 400
    assert "max_tokens: is not an input of this model" in body["error"]
