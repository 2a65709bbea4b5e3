"""The engine's config.pbtxt parameters (string values) as one typed value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reference_engine.faults import FaultPlan

BACKENDS = ("reference", "synthetic")

# Parameters of the official tensorrt_llm config that this engine understands too, so
# that a config written for both does not fail here.
_OFFICIAL_ACCEPTED = ("max_beam_width", "cancellation_check_period_ms")


@dataclass(frozen=True)
class EngineConfig:
    """Parsed model parameters; see triton_model/config.pbtxt for each one's meaning."""

    generation_backend: str = "reference"
    model_dir: Path | None = None
    # The tokenizer guided decoding compiles guides against; None: model_dir's.
    tokenizer_dir: Path | None = None
    max_seq_len: int | None = None  # None: the backend's default (model's positions)
    max_active_sequences: int = 256
    synthetic_step_ms: float = 20.0
    synthetic_vocab_size: int = 32000
    synthetic_end_id: int = -1
    device: str = "auto"
    exclude_input_in_output: bool = True
    random_seed: int = 0
    cancellation_check_period_ms: float = 0.0
    response_sender_threads: int = 8
    # Injected faults (reference_engine/faults.py); all off by default.
    fault_error_at_step: int = 0
    fault_malformed_at_step: int = 0
    fault_stall_at_step: int = 0

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> EngineConfig:
        """From config.pbtxt parameters; empty values take the default.

        Raises ValueError naming the parameter for unknown keys and bad values.
        """
        known = set(cls.__dataclass_fields__) | set(_OFFICIAL_ACCEPTED)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        values = {k: v.strip() for k, v in params.items() if v is not None and v.strip() != ""}
        defaults = cls()
        backend = values.get("generation_backend", defaults.generation_backend)
        if backend not in BACKENDS:
            raise ValueError(f"generation_backend: {backend!r} is not one of {list(BACKENDS)}")
        model_dir = Path(values["model_dir"]) if "model_dir" in values else None
        tokenizer_dir = Path(values["tokenizer_dir"]) if "tokenizer_dir" in values else None
        if backend == "reference" and model_dir is None:
            raise ValueError("model_dir: required when generation_backend is 'reference'")
        beam = _int(values, "max_beam_width", 1, low=1)
        if beam != 1:
            raise ValueError(f"max_beam_width: {beam} is not supported; the engine allows 1")
        max_seq_len = _int(values, "max_seq_len", None, low=2)
        return cls(
            generation_backend=backend,
            model_dir=model_dir,
            tokenizer_dir=tokenizer_dir,
            max_seq_len=max_seq_len,
            max_active_sequences=_int(
                values, "max_active_sequences", defaults.max_active_sequences, low=1
            ),
            synthetic_step_ms=_float(values, "synthetic_step_ms", defaults.synthetic_step_ms),
            synthetic_vocab_size=_int(
                values, "synthetic_vocab_size", defaults.synthetic_vocab_size, low=2
            ),
            synthetic_end_id=_int(values, "synthetic_end_id", defaults.synthetic_end_id, low=-1),
            device=values.get("device", defaults.device),
            exclude_input_in_output=_bool(
                values, "exclude_input_in_output", defaults.exclude_input_in_output
            ),
            random_seed=_int(values, "random_seed", defaults.random_seed, low=0),
            cancellation_check_period_ms=_float(
                values, "cancellation_check_period_ms", defaults.cancellation_check_period_ms
            ),
            response_sender_threads=_int(
                values, "response_sender_threads", defaults.response_sender_threads, low=1
            ),
            **{
                name: _int(values, name, 0, low=0)
                for name in (
                    "fault_error_at_step",
                    "fault_malformed_at_step",
                    "fault_stall_at_step",
                )
            },
        )

    @property
    def faults(self) -> FaultPlan:
        return FaultPlan(
            error_at_step=self.fault_error_at_step,
            malformed_at_step=self.fault_malformed_at_step,
            stall_at_step=self.fault_stall_at_step,
        )


def parameters_from_model_config(model_config: Mapping) -> dict[str, str]:
    """config.pbtxt `parameters` (as Triton's JSON model config) -> {key: string}."""
    params = model_config.get("parameters", {}) or {}
    return {key: str(value.get("string_value", "")) for key, value in params.items()}


def _int(values: Mapping[str, str], key: str, default: int | None, *, low: int) -> int | None:
    if key not in values:
        return default
    try:
        value = int(values[key])
    except ValueError:
        raise ValueError(f"{key}: {values[key]!r} is not an integer") from None
    if value < low:
        raise ValueError(f"{key}: {value} is below the minimum {low}")
    return value


def _float(values: Mapping[str, str], key: str, default: float) -> float:
    if key not in values:
        return default
    try:
        value = float(values[key])
    except ValueError:
        raise ValueError(f"{key}: {values[key]!r} is not a number") from None
    if not value >= 0:
        raise ValueError(f"{key}: {value} must be >= 0")
    return value


def _bool(values: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in values:
        return default
    text = values[key].lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{key}: {values[key]!r} is not true/false")
