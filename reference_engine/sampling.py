"""Logits processing and token choice with TensorRT-LLM's semantics, in PyTorch.

Order (TensorRT-LLM's penalty kernel, then its bad-word kernel, then the sampler):
1. embedding_bias is added;
2. temperature: logits * 1 / (temperature + 1e-6), only when temperature != 1;
3. for every token that occurs in prompt + generated tokens (n times):
   repetition (logit < 0: logit * p, else logit / p), presence (- p), frequency (- p * n);
4. min_tokens: end_id is masked while fewer than min_tokens tokens were generated;
5. bad words: banned tokens are masked;
6. greedy -> argmax; else top-k (k > 0), then top-p over what is left (p > 0), then a
   draw from the renormalised distribution with the sequence's own torch.Generator.
The log probability reported is log-softmax of the processed logits (after step 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference_engine.types import LiveSequence, SamplingParams
from reference_engine.words import banned_next_tokens

_TEMPERATURE_EPSILON = 1e-6  # TensorRT-LLM: invTemperature = 1 / (temperature + 1e-6)


@dataclass
class SamplingState:
    """Per-sequence state the logits processing needs between steps."""

    generator: torch.Generator | None
    # How often each token id occurs in prompt + generated (only when penalties are on).
    counts: torch.Tensor | None
    bias: torch.Tensor | None
    top_p: float  # current top-p (decays per step when runtime_top_p_decay < 1)


def new_sampling_state(seq: LiveSequence, vocab_size: int, device: torch.device) -> SamplingState:
    params = seq.sampling
    generator = None
    if not params.greedy:
        # Sampling draws on the CPU generator: the same seed gives the same tokens on
        # any device (CUDA generators produce a different stream).
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seq.seed)
    counts = None
    if params.has_penalties:
        counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)
        if seq.spec.prompt:
            prompt = torch.tensor(seq.spec.prompt, dtype=torch.int64, device=device)
            counts += torch.bincount(prompt, minlength=vocab_size)[:vocab_size]
    bias = None
    if seq.spec.embedding_bias is not None:
        bias = torch.from_numpy(seq.spec.embedding_bias).to(device=device, dtype=torch.float32)
    return SamplingState(generator=generator, counts=counts, bias=bias, top_p=params.top_p)


def process_logits(logits: torch.Tensor, seq: LiveSequence, state: SamplingState) -> torch.Tensor:
    """Steps 1-5 on one sequence's float32 [vocab] logits (returns a new tensor)."""
    params = seq.sampling
    out = logits.to(torch.float32).clone()
    if state.bias is not None:
        out += state.bias
    if params.temperature != 1.0:
        out *= 1.0 / (params.temperature + _TEMPERATURE_EPSILON)
    if state.counts is not None:
        apply_penalties(out, state.counts, params)
    end_id = seq.spec.end_id
    if end_id is not None and len(seq.generated) < params.min_length and end_id < out.numel():
        out[end_id] = float("-inf")
    banned = [t for t in banned_next_tokens(seq, seq.spec.bad_words) if 0 <= t < out.numel()]
    if banned:
        out[torch.tensor(banned, dtype=torch.int64, device=out.device)] = float("-inf")
    return out


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor, params: SamplingParams) -> None:
    """Repetition, presence and frequency penalties, in place, for tokens with count > 0."""
    seen = counts > 0
    if params.repetition_penalty != 1.0:
        penalty = params.repetition_penalty
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        logits.copy_(torch.where(seen, penalised, logits))
    if params.presence_penalty != 0.0:
        logits -= seen.to(logits.dtype) * params.presence_penalty
    if params.frequency_penalty != 0.0:
        logits -= counts.to(logits.dtype) * params.frequency_penalty


def choose_token(processed: torch.Tensor, seq: LiveSequence, state: SamplingState) -> int:
    """Step 6: the next token from processed logits."""
    params = seq.sampling
    if params.greedy or state.generator is None:
        return int(torch.argmax(processed).item())
    filtered = top_k_top_p_filter(processed, params.top_k, state.top_p)
    probs = torch.softmax(filtered, dim=-1).to("cpu")
    return int(torch.multinomial(probs, 1, generator=state.generator).item())


def top_k_top_p_filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (-inf) every token outside the top-k, then outside the top-p nucleus.

    top_p keeps the most likely tokens until their probability reaches top_p (the token
    that crosses the threshold is kept); top_k = 0 / top_p = 0 disable the filter.
    """
    out = logits.clone()
    vocab = out.numel()
    if 0 < top_k < vocab:
        kth = torch.topk(out, top_k).values[-1]
        out[out < kth] = float("-inf")
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted)
        drop[order] = drop_sorted
        out[drop] = float("-inf")
    return out


def log_prob_of(processed: torch.Tensor, token: int) -> float:
    return float(torch.log_softmax(processed, dim=-1)[token].item())


def after_token(seq: LiveSequence, state: SamplingState, token: int) -> None:
    """Update counts and the decaying top-p once `token` joined the sequence."""
    if state.counts is not None and 0 <= token < state.counts.numel():
        state.counts[token] += 1
    params = seq.sampling
    if params.top_p_decay < 1.0 or params.top_p_reset_id >= 0:
        if params.top_p_reset_id >= 0 and token == params.top_p_reset_id:
            state.top_p = params.top_p
        else:
            state.top_p = max(state.top_p * params.top_p_decay, params.top_p_min)
