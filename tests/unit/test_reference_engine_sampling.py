"""Logits processing and token choice of the reference backend (TensorRT-LLM semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_engine.sampling import (
    after_token,
    choose_token,
    log_prob_of,
    new_sampling_state,
    process_logits,
    top_k_top_p_filter,
)
from reference_engine.types import LiveSequence, SamplingParams, SequenceSpec

VOCAB = 8


def make_seq(prompt=(1, 2), generated=(), seed=0, bias=None, **sampling) -> LiveSequence:
    spec_kwargs = {}
    for key in ("end_id", "bad_words"):
        if key in sampling:
            spec_kwargs[key] = sampling.pop(key)
    spec = SequenceSpec(
        batch_index=0,
        sequence_index=0,
        prompt=tuple(prompt),
        max_new_tokens=10,
        end_id=spec_kwargs.get("end_id"),
        pad_id=None,
        stop_words=(),
        bad_words=spec_kwargs.get("bad_words", ()),
        embedding_bias=None if bias is None else np.asarray(bias, np.float32),
        sampling=SamplingParams(**sampling),
    )
    seq = LiveSequence(spec=spec, seed=seed)
    seq.generated.extend(generated)
    return seq


def run(logits, seq):
    state = new_sampling_state(seq, VOCAB, torch.device("cpu"))
    # replay generated tokens into the state as the backend would have
    return process_logits(torch.tensor(logits, dtype=torch.float32), seq, state), state


BASE = [0.5, -1.0, 2.0, 0.0, 1.0, -2.0, 3.0, 0.25]


def test_no_params_leaves_logits_alone_and_is_greedy():
    seq = make_seq()
    out, state = run(BASE, seq)
    assert out.tolist() == BASE
    assert choose_token(out, seq, state) == 6
    assert state.generator is None


def test_bias_then_temperature():
    bias = [0.0] * VOCAB
    bias[1] = 4.0
    seq = make_seq(bias=bias, temperature=0.5, top_k=5)
    out, _ = run(BASE, seq)
    expected = [(v + b) * (1.0 / (0.5 + 1e-6)) for v, b in zip(BASE, bias, strict=True)]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)


def test_repetition_penalty_counts_prompt_and_divides_positive_multiplies_negative():
    # prompt holds 1 (negative logit) and 2 (positive logit); 6 was generated.
    seq = make_seq(prompt=(1, 2), generated=(6,), repetition_penalty=2.0)
    state = new_sampling_state(seq, VOCAB, torch.device("cpu"))
    after_token(seq, state, 6)  # count the generated token
    out = process_logits(torch.tensor(BASE), seq, state)
    expected = list(BASE)
    expected[1] = -1.0 * 2.0
    expected[2] = 2.0 / 2.0
    expected[6] = 3.0 / 2.0
    assert out.tolist() == pytest.approx(expected)


def test_presence_and_frequency_penalties_use_counts():
    seq = make_seq(prompt=(3, 3, 4), presence_penalty=0.5, frequency_penalty=0.25)
    out, _ = run(BASE, seq)
    expected = list(BASE)
    expected[3] = 0.0 - 0.5 - 0.25 * 2
    expected[4] = 1.0 - 0.5 - 0.25 * 1
    assert out.tolist() == pytest.approx(expected)


def test_min_length_masks_end_id_until_enough_tokens():
    seq = make_seq(generated=(0,), min_length=2, end_id=6)
    out, state = run(BASE, seq)
    assert out[6].item() == -math.inf
    assert choose_token(out, seq, state) == 2  # the next best
    seq2 = make_seq(generated=(0, 0), min_length=2, end_id=6)
    out2, _ = run(BASE, seq2)
    assert out2[6].item() == 3.0


def test_bad_words_mask_tokens():
    seq = make_seq(prompt=(1,), generated=(4,), bad_words=((6,), (4, 2), (5, 2)))
    out, state = run(BASE, seq)
    assert out[6].item() == -math.inf and out[2].item() == -math.inf
    assert out[5].item() == -2.0  # prefix (5) does not match the end of the sequence
    assert choose_token(out, seq, state) == 4


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1]))
    kept = lambda t: [i for i, v in enumerate(t.tolist()) if v != -math.inf]  # noqa: E731
    assert kept(top_k_top_p_filter(logits, 2, 0.0)) == [1, 2]
    # nucleus: 0.4 + 0.3 = 0.7 reaches 0.6 -> {1, 2}; 0.7 < 0.75 -> add 3
    assert kept(top_k_top_p_filter(logits, 0, 0.6)) == [1, 2]
    assert kept(top_k_top_p_filter(logits, 0, 0.75)) == [1, 2, 3]
    assert kept(top_k_top_p_filter(logits, 0, 0.01)) == [1]
    assert kept(top_k_top_p_filter(logits, 0, 1.0)) == [0, 1, 2, 3, 4]
    assert kept(top_k_top_p_filter(logits, 3, 0.5)) == [1, 2]


def draw_many(seed: int, n: int = 50, **sampling) -> list[int]:
    seq = make_seq(seed=seed, **sampling)
    state = new_sampling_state(seq, VOCAB, torch.device("cpu"))
    logits = torch.zeros(VOCAB)  # uniform
    return [choose_token(process_logits(logits, seq, state), seq, state) for _ in range(n)]


def test_same_seed_same_tokens_different_seed_different_tokens():
    a = draw_many(seed=123, top_k=8, top_p=1.0)
    b = draw_many(seed=123, top_k=8, top_p=1.0)
    c = draw_many(seed=124, top_k=8, top_p=1.0)
    assert a == b
    assert a != c
    assert len(set(a)) > 3  # actually sampling over the uniform distribution


def test_top_k_sampling_stays_in_top_k():
    seq = make_seq(seed=5, top_k=2)
    state = new_sampling_state(seq, VOCAB, torch.device("cpu"))
    picks = {
        choose_token(process_logits(torch.tensor(BASE), seq, state), seq, state) for _ in range(200)
    }
    assert picks == {2, 6}


@pytest.mark.parametrize("params", [{"temperature": 0.0, "top_k": 50}, {"top_k": 1, "top_p": 0.9}])
def test_greedy_choices(params):
    seq = make_seq(**params)
    assert seq.sampling.greedy
    out, state = run(BASE, seq)
    assert choose_token(out, seq, state) == 6


def test_log_prob_is_log_softmax_of_processed_logits():
    seq = make_seq(temperature=2.0, top_k=3)
    out, _ = run(BASE, seq)
    expected = torch.log_softmax(torch.tensor(BASE) / (2.0 + 1e-6), dim=-1)[4].item()
    assert log_prob_of(out, 4) == pytest.approx(expected, rel=1e-6)


def test_top_p_decay_and_reset():
    seq = make_seq(top_p=0.8, top_p_decay=0.5, top_p_min=0.1, top_p_reset_id=7)
    state = new_sampling_state(seq, VOCAB, torch.device("cpu"))
    after_token(seq, state, 1)
    assert state.top_p == pytest.approx(0.4)
    after_token(seq, state, 1)
    after_token(seq, state, 1)
    assert state.top_p == pytest.approx(0.1)  # floored at top_p_min
    after_token(seq, state, 7)
    assert state.top_p == pytest.approx(0.8)
