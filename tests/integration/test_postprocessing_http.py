"""The `postprocessing` model in a real tritonserver: decode, stateless streaming, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from local_triton.staging import StagingPlan, default_model_repository
from local_triton.testing import staged_server
from serving_common.tokenizer_loading import load_tokenizer

pytestmark = pytest.mark.integration

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(fixture_paths):
    plan = StagingPlan(
        source=default_model_repository(),
        tokenizer_dir=fixture_paths.sentencepiece_tokenizer,
        only=frozenset({"postprocessing"}),
    )
    with staged_server(plan) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    url = server.http_url.split("://", 1)[-1]
    with httpclient.InferenceServerClient(url) as connection:
        yield connection


@pytest.fixture(scope="module")
def tokenizer(fixture_paths):
    return load_tokenizer(fixture_paths.sentencepiece_tokenizer)


def tensor(name, array, datatype):
    value = httpclient.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array)
    return value


def call(client, ids_rows, state=None, finish=None):
    width = max(len(ids) for ids in ids_rows)
    tokens = np.zeros((len(ids_rows), 1, width), dtype=np.int32)
    for row, ids in enumerate(ids_rows):
        tokens[row, 0, : len(ids)] = ids
    lengths = np.array([[len(ids)] for ids in ids_rows], dtype=np.int32)
    inputs = [tensor("TOKENS_BATCH", tokens, "INT32"), tensor("SEQUENCE_LENGTH", lengths, "INT32")]
    if state is not None:
        inputs.append(tensor("DETOKENIZER_STATE", np.array(state, dtype=object), "BYTES"))
    if finish is not None:
        inputs.append(tensor("FINISH", np.array(finish, dtype=bool), "BOOL"))
    return client.infer("postprocessing", inputs)


def test_whole_decode_of_a_batch(client, tokenizer):
    texts = ["Hello, world!", "今天天气很好 🍕 ꙮ"]
    ids = [tokenizer.encode(text, add_special_tokens=True) for text in texts]
    result = call(client, ids)
    assert [row[0].decode() for row in result.as_numpy("OUTPUT")] == texts


def test_stateless_streaming_one_token_per_call(client, tokenizer):
    text = "Streaming 今天 👨‍👩‍👧‍👦 Ångström ꙮ done."
    ids = tokenizer.encode(text, add_special_tokens=True)
    state = [[b""]]
    collected = ""
    for index, token_id in enumerate(ids):
        last = index == len(ids) - 1
        result = call(client, [[token_id]], state=state, finish=[[last]])
        delta = result.as_numpy("OUTPUT")[0, 0].decode()
        assert "\ufffd" not in delta
        collected += delta
        state = result.as_numpy("DETOKENIZER_STATE").tolist()
    assert collected == text
    assert json.loads(state[0][0])["finished"] is True


def test_byte_pieces_come_out_one_character_at_a_time(client, tokenizer):
    # A family emoji spelled as its 25 byte-fallback pieces, then two pieces of an
    # unfinished character and a word, one id per call: each character arrives with its
    # last piece, the unfinished one as one U+FFFD as soon as the word shows it.
    emoji = "👨\u200d👩\u200d👧\u200d👦"
    data = emoji.encode() + "中".encode()[:2]
    ids = [tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in data]
    ids.append(tokenizer.convert_tokens_to_ids("▁the"))
    expected = [""] * len(ids)
    end = 0
    for character in emoji:
        end += len(character.encode())
        expected[end - 1] = character
    expected[-1] = "\ufffd the"
    state, deltas = [[b""]], []
    for token_id in ids:
        result = call(client, [[token_id]], state=state)
        deltas.append(result.as_numpy("OUTPUT")[0, 0].decode())
        state = result.as_numpy("DETOKENIZER_STATE").tolist()
    assert deltas == expected
    # The whole decode (no state) gives the same text. Hugging Face's ByteFallback
    # decoder would show the whole run of 27 pieces as U+FFFD (the documented difference).
    whole = call(client, [ids]).as_numpy("OUTPUT")[0, 0].decode()
    assert whole == "".join(expected) == f"{emoji}\ufffd the"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "\ufffd" * 27 + " the"


def test_bad_input_is_an_invalid_arg_naming_the_field(client, tokenizer):
    ids = tokenizer.encode("hello", add_special_tokens=False)
    with pytest.raises(InferenceServerException, match="DETOKENIZER_STATE: row 0, beam 0"):
        call(client, [ids], state=[[b"{not json"]])
    with pytest.raises(InferenceServerException, match=r"TOKENS_BATCH: .*outside"):
        call(client, [[len(tokenizer) + 5]])
    with pytest.raises(InferenceServerException, match="FINISH: is only meaningful"):
        call(client, [ids], finish=[[True]])
