"""The reference backend on a real (tiny) Hugging Face Llama, through the scheduler:
greedy output equals `model.generate(do_sample=False)`, and the request options
(end_id, stop/bad words, min_tokens, penalties, bias, seeds, log probs) act as the
contract says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_engine.backends.reference import ReferenceBackend, load_float32_model
from reference_engine.contract import EngineLimits, parse_request
from reference_engine.scheduler import Scheduler
from reference_engine.testing import RecordingSink
from serving_common.word_lists import encode_word_list

PROMPTS = [
    [1, 15, 27, 300, 41],
    [1, 7],
    [1, 900, 901, 902, 903, 904, 905, 906],
    [1, 1500, 3, 3, 3],
    [1, 222, 1999, 64],
]


@pytest.fixture(scope="module")
def model_dir():
    from offline_fixtures import ensure_fixtures

    return ensure_fixtures().tiny_llama


@pytest.fixture(scope="module")
def backend(model_dir):
    return ReferenceBackend(model_dir, device="cpu")


@pytest.fixture(scope="module")
def hf_model(model_dir):
    return load_float32_model(model_dir).eval()


def hf_greedy(model, prompt, n, **kwargs) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=n,
        eos_token_id=None,
        pad_token_id=0,
        **kwargs,
    )
    return out[0, len(prompt) :].tolist()


def generate(backend, prompts, n, streaming=False, **extra) -> list[RecordingSink]:
    """Run requests (one per prompt) through a scheduler driven in this thread."""
    sched = Scheduler(backend, random_seed=0)
    sinks = []
    for prompt in prompts:
        inputs = {
            "input_ids": np.array([prompt], np.int32),
            "request_output_len": np.array([[n]], np.int32),
            "streaming": np.array([[streaming]]),
        }
        inputs.update(extra)
        sink = RecordingSink()
        sched.submit(parse_request(inputs, "r", EngineLimits(2048, backend.vocab_size)), sink)
        sinks.append(sink)
    for _ in range(10 * n + 10):
        if all(s.done for s in sinks):
            break
        sched.run_once()
    assert all(s.finals == 1 for s in sinks)
    assert all(s.error is None for s in sinks), [s.error for s in sinks]
    return sinks


def test_greedy_equals_hf_generate_for_five_prompts_streaming_and_not(backend, hf_model):
    expected = [hf_greedy(hf_model, p, 24) for p in PROMPTS]
    streamed = generate(backend, PROMPTS, 24, streaming=True)
    full = generate(backend, PROMPTS, 24, streaming=False)
    assert [s.tokens() for s in streamed] == expected
    assert [s.responses[0].tokens for s in full] == expected
    # the five sequences ran interleaved, and the outputs are not degenerate
    assert len({tuple(e) for e in expected}) == 5


def test_end_id_is_excluded_and_ends_generation(backend, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[0], 12)
    end_id = reference[5]
    cut = reference.index(end_id)  # first occurrence
    (sink,) = generate(backend, [PROMPTS[0]], 12, end_id=np.array([[end_id]], np.int32))
    assert sink.responses[0].tokens == reference[:cut]


def test_stop_words_end_generation_with_their_tokens(backend, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[1], 16)
    word = reference[6:8]
    stop = encode_word_list([word, [1999, 1998]])[None]
    (sink,) = generate(backend, [PROMPTS[1]], 16, stop_words_list=stop)
    got = sink.responses[0].tokens
    assert got[-2:] == word
    assert got == reference[: len(got)]
    assert len(got) <= 8


def test_bad_words_never_appear(backend, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[2], 16)
    single = reference[0]
    pair = reference[3:5]
    bad = encode_word_list([[single], pair])[None]
    (sink,) = generate(backend, [PROMPTS[2]], 16, bad_words_list=bad)
    got = sink.responses[0].tokens
    assert single not in got
    assert all(got[i : i + 2] != pair for i in range(len(got) - 1))
    assert got != reference


def test_min_length_keeps_end_id_out_until_reached(backend, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[0], 12)
    end_id = reference[0]  # greedy would end at once
    end = np.array([[end_id]], np.int32)
    (ended,) = generate(backend, [PROMPTS[0]], 12, end_id=end)
    assert ended.responses[0].tokens == []
    (held,) = generate(backend, [PROMPTS[0]], 12, end_id=end, min_tokens=np.array([[4]], np.int32))
    tokens = held.responses[0].tokens
    assert len(tokens) >= 4 and end_id not in tokens[:4]


def test_repetition_penalty_matches_hf(backend, hf_model):
    expected = [hf_greedy(hf_model, p, 16, repetition_penalty=1.5) for p in PROMPTS[:3]]
    sinks = generate(backend, PROMPTS[:3], 16, repetition_penalty=np.array([[1.5]], np.float32))
    assert [s.responses[0].tokens for s in sinks] == expected


def test_embedding_bias_steers_greedy(backend):
    bias = np.zeros((1, backend.vocab_size), np.float32)
    bias[0, 77] = 1000.0
    (sink,) = generate(backend, [PROMPTS[0]], 5, embedding_bias=bias)
    assert sink.responses[0].tokens == [77] * 5


def test_seeded_sampling_repeats_and_differs_by_seed(backend):
    sampling = {
        "runtime_top_k": np.array([[50]], np.int32),
        "temperature": np.array([[1.5]], np.float32),
    }

    def run(seed):
        (sink,) = generate(
            backend, [PROMPTS[3]], 20, seed=np.array([[seed]], np.uint64), **sampling
        )
        return sink.responses[0].tokens

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_log_probs_match_hf_scores(backend, hf_model):
    prompt = PROMPTS[4]
    out = hf_model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=6,
        eos_token_id=None,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    tokens = out.sequences[0, len(prompt) :].tolist()
    expected = [
        torch.log_softmax(s[0], -1)[t].item() for s, t in zip(out.scores, tokens, strict=True)
    ]
    (sink,) = generate(backend, [prompt], 6, return_log_probs=np.array([[True]]))
    tensors = sink.responses[0].tensors
    assert sink.responses[0].tokens == tokens
    assert tensors["output_log_probs"].reshape(-1).tolist() == pytest.approx(expected, abs=1e-5)
    assert tensors["cum_log_probs"].item() == pytest.approx(sum(expected), abs=1e-4)


def test_default_max_seq_len_is_model_positions(backend):
    assert backend.default_max_seq_len == 2048
    assert backend.vocab_size == 2000
