"""Build, export and simulate an OmniFM-MONAI federated job with NVFlare's Python job API.

Examples::

    # simulate 5 phantom sites (one modality each) for 5 rounds with OmniFM
    python -m nvflare_jobs.omnifm_job --strategy omnifm --clients 5 --rounds 5 --workspace runs/sim

    # the same job as a folder for `nvflare job submit` (POC or a provisioned deployment)
    python -m nvflare_jobs.omnifm_job --strategy fedavg --clients 2 --export runs/jobs

    # real MedMNIST files, one modality per site
    python -m nvflare_jobs.omnifm_job --federation-data ../shared/data/medmnist --clients 10 --image-size 28

At the end of a simulation a summary names every site that did not finish and why (a site that could
not start: its one-line error); the exit status is then 1 (the simulator's own is 0 even after a crash).

The job itself is built by :mod:`omnifm_monai.jobs.builder`; the options are
:func:`omnifm_monai.jobs.parse_job_args`'s.
"""

from __future__ import annotations

import os
import sys

from omnifm_monai.jobs import export_job, parse_job_args, run_simulation


def main(argv: list[str] | None = None) -> int:
    """Returns the exit status: 1 when a site did not finish (see the end-of-run summary), else 0."""
    settings, args = parse_job_args(argv)
    if args.export:
        export_job(settings, args.export)
        print(f"exported {os.path.join(args.export, settings.name)}")
        return 0
    summary = run_simulation(settings, args.workspace or os.path.join("runs", settings.name, "workspace"))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
