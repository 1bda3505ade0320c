"""Strategy variants: one registered strategy run with extra job options under a label of its own.

A variant is how a comparison gives a baseline the step that carries OmniFM (``"fedbn + recalibrated
norms"``: FedBN with the same BatchNorm recalibration) or tries a candidate setting, without a new entry
in :data:`omnifm_monai.strategies.STRATEGIES`. The main job (``--variants``) and
``benchmarks/federated_accuracy.py`` read the same JSON: ``{label: [strategy, job options...]}``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_VARIANTS", "RECALIBRATED_FEDBN", "Variant", "load_variants", "run_folder", "strategy_runs"]

RECALIBRATED = '{"recalibrate_norms":true}'
RECALIBRATED_FEDBN = "fedbn + recalibrated norms"
# the main job's default: the best baseline measured on the demo's federation (docs/benchmarks.md, "The
# fixed-task phantom at 8 rounds" and "at 24 rounds"), FedBN given OmniFM's BatchNorm recalibration, so the
# table compares OmniFM with its fairest peer
DEFAULT_VARIANTS: dict[str, list[str]] = {RECALIBRATED_FEDBN: ["fedbn", "--strategy-options", RECALIBRATED]}


@dataclass(frozen=True)
class Variant:
    """One run of a comparison: its row label, the registered strategy, and the job options it adds."""

    label: str
    strategy: str
    job_args: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return run_folder(self.label)


def run_folder(label: str) -> str:
    """The run's folder name: the label with every character but letters, digits and ``-_.`` as ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def load_variants(value: str) -> dict[str, list[str]]:
    """``--variants``: a JSON file, or JSON text, mapping a label to ``[strategy, job options...]``.

    Raises:
        argparse.ArgumentTypeError: the text is not JSON, or not such a mapping (argparse prints it in one line).
    """
    is_file = Path(value).is_file()
    where = f"--variants file {value}" if is_file else "--variants"
    try:
        variants = json.loads(Path(value).read_text() if is_file else value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{where}: not JSON ({e}); expected {{label: [strategy, options...]}}") from e
    if not isinstance(variants, dict):
        raise argparse.ArgumentTypeError(f"{where}: expected {{label: [strategy, options...]}}, got {variants!r}")
    for label, spec in variants.items():
        if not (isinstance(spec, list) and spec and all(isinstance(a, str) for a in spec)):
            raise argparse.ArgumentTypeError(f"variant {label!r}: expected [strategy, job options...], got {spec!r}")
    return variants


def strategy_runs(strategies: list[str], variants: dict[str, list[str]] | None = None) -> list[Variant]:
    """The runs of a comparison in order: each strategy as registered, then each variant.

    Raises:
        ValueError: two runs share a label or a folder (the second would overwrite the first's results).
    """
    runs = [Variant(s, s) for s in strategies]
    runs += [Variant(label, strategy, tuple(extra)) for label, (strategy, *extra) in (variants or {}).items()]
    folders = [run.folder for run in runs]
    repeated = sorted({f for f in folders if folders.count(f) > 1})
    if repeated:
        raise ValueError(f"two runs of the comparison would share the folder(s) {repeated}: give each its own label.")
    return runs
