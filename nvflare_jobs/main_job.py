"""The main job: every strategy on the same federation in the NVFlare simulator, then a report.

    python -m nvflare_jobs.main_job                      # the fixed task on the phantom, with references (README)
    python -m nvflare_jobs.main_job --scenario cross_modality_hard     # each site its own label space
    python -m nvflare_jobs.main_job --federation-data ../shared/data/medmnist --clients 10 --image-size 28
    python -m nvflare_jobs.main_job --task segmentation --out runs/main_segmentation

Each strategy runs as its own simulator process (its log in ``<out>/<strategy>/simulator.log``);
progress is read from the server's persisted round history. A run counts only if every site
returned its final evaluation and no site logged a traceback: the simulator can exit 0 while a
client crashed. The runs and the report are :mod:`omnifm_monai.jobs.comparison`'s.

By default a classification run on the phantom is the fixed task (``cross_modality_shared``: every site the
question normal or calcification, one modality per site, two large and four small sites). There two references
follow the strategies: each site alone and all sites pooled, trained centrally to convergence (early stopping
on their own validation split after ``--patience`` epochs, at most ``--reference-epochs``, by default 100);
``--reference-epochs 0`` leaves them out.

Beside the strategies run their variants (``--variants``: a JSON file or text, ``{label: [strategy, job
options...]}``, :mod:`omnifm_monai.jobs.variants`). By default that is FedBN with OmniFM's BatchNorm
recalibration (``"fedbn + recalibrated norms"``), the best baseline measured on the demo's federation, so the
table compares OmniFM with its fairest peer; ``--variants '{}'`` leaves it out.

``--cross-site`` adds, per strategy, every site's final model scored on every site's test split (a table and a
heatmap in ``report.md``; :mod:`omnifm_monai.jobs.cross_site`, simulation only).
"""

from __future__ import annotations

import argparse
import sys

from omnifm_monai.jobs import DEFAULT_STRATEGIES, JobSettings, comparison_job_args, run_comparison
from omnifm_monai.jobs.comparison import FIXED_TASK_REFERENCE_EPOCHS, REFERENCE_PATIENCE
from omnifm_monai.jobs.variants import DEFAULT_VARIANTS, load_variants, strategy_runs


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], JobSettings]:
    """The main job's own options, and the job options forwarded to ``nvflare_jobs.omnifm_job``.

    Job options (``--clients``, ``--rounds``, ``--federation-data``, ...) are those of
    ``python -m nvflare_jobs.omnifm_job``; the main job's defaults
    (:data:`omnifm_monai.jobs.MAIN_JOB_DEFAULTS`) come first, so any given on the command line win.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Other options: see omnifm_job.")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument(
        "--variants",
        type=load_variants,
        default=DEFAULT_VARIANTS,
        help="JSON file or text, {label: [strategy, job options...]}, run after the strategies "
        "(default: fedbn + recalibrated norms; '{}': none)",
    )
    parser.add_argument("--out", default="runs/main_job")
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=None,
        help=f"epoch cap of both references (default: {FIXED_TASK_REFERENCE_EPOCHS} on the fixed task, else 0)",
    )
    parser.add_argument(
        "--patience", type=int, default=REFERENCE_PATIENCE, help="early stopping of the references (epochs)"
    )
    parser.add_argument(
        "--cross-site",
        action="store_true",
        help="score every site's final model on every site's test split (a heatmap per strategy in report.md)",
    )
    args, forwarded = parser.parse_known_args(argv)
    try:
        strategy_runs(args.strategies, args.variants)  # two runs into one folder: refused before any runs
    except ValueError as e:
        parser.error(str(e))
    job_args, settings = comparison_job_args(forwarded)
    if args.reference_epochs is None:
        fixed_task = settings.scenario == "cross_modality_shared"
        args.reference_epochs = FIXED_TASK_REFERENCE_EPOCHS if fixed_task else 0
    return args, job_args, settings


def main(argv: list[str] | None = None) -> int:
    args, job_args, settings = parse_args(argv)
    options = {"variants": args.variants, "reference_epochs": args.reference_epochs, "patience": args.patience}
    options["cross_site"] = args.cross_site
    return run_comparison(args.strategies, job_args, settings, args.out, **options)


if __name__ == "__main__":
    sys.exit(main())
