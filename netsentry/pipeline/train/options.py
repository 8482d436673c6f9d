"""What training takes: the options of one run and the per-kind recipe of supervised training."""

from __future__ import annotations

from dataclasses import dataclass

from netsentry.pipeline.core.errors import ConfigError

KINDS = ("compromise", "faults")
MODELS = ("auto", "iforest", "autoencoder", "boosted")

TRANSPLANT_KEEP = {"compromise": 0.6, "faults": 0.5}
"""Per kind, the chance each piece of evidence is kept in a transplant
(:func:`~netsentry.pipeline.train.transplants.context_transplants`); see docs/experiments.md#context-transplants."""
CONTEXT_NEGATIVES = {"compromise": 2, "faults": 0}
"""Per kind, context negatives per positive training row: an attacked VM's own context is not the attack; a scope's
fault-free windows are no context of a fault. See docs/experiments.md#context-negatives."""
ANCHORED = {"compromise": True, "faults": False}
"""Per kind, whether transplants are anchored on the positive's strongest evidence, so an attack's side effect is
never a transplant's only evidence; see docs/experiments.md#anchored-transplants."""
QUALIFIED: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "compromise": ((("sensitive_out_per_min", "sensitive_out_vs_baseline"), ("short_sensitive_out_per_min",)),),
    "faults": (),
}
"""Per kind, (counts, qualifiers) column groups for unqualified negatives: connections to remote-login ports are
evidence of guessing only when they are short. See docs/experiments.md#unqualified-negatives."""
OOF_FOLDS = {"compromise": 8, "faults": 4}
"""Per kind, contiguous time blocks for the boosted trees' out-of-fold threshold: fewer blocks leave a fold model
without too much of the benign behaviour. See docs/experiments.md#out-of-fold-calibration."""


@dataclass
class TrainOptions:
    """How to train: kind of verdict, detector, false-positive target, split, seed, torch device."""

    kind: str = "compromise"
    model: str = "auto"
    target_fpr: float = 0.01
    test_fraction: float = 0.4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not 0 < self.target_fpr < 0.5:
            raise ConfigError(f"--target-fpr must be in (0, 0.5), got {self.target_fpr}")
        if not 0 < self.test_fraction < 0.9:
            raise ConfigError(f"--test-fraction must be in (0, 0.9), got {self.test_fraction}")
