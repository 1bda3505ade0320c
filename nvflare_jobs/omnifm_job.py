"""Build, export and simulate an OmniFM-MONAI federated job with NVFlare's Python job API.

Examples::

    # simulate 5 phantom sites (one modality each) for 5 rounds with OmniFM
    python -m nvflare_jobs.omnifm_job --strategy omnifm --clients 5 --rounds 5 --workspace runs/sim

    # the same job as a folder for `nvflare job submit` (POC or a provisioned deployment)
    python -m nvflare_jobs.omnifm_job --strategy fedavg --clients 2 --export runs/jobs

    # real MedMNIST files, one modality per site
    python -m nvflare_jobs.omnifm_job --federation-data ../shared/data/medmnist --clients 10 --image-size 28

The job itself is built by :mod:`omnifm_monai.jobs.builder`; the options are
:func:`omnifm_monai.jobs.parse_job_args`'s.
"""

from __future__ import annotations

import os

from omnifm_monai.jobs import export_job, parse_job_args, run_simulation


def main(argv: list[str] | None = None) -> None:
    settings, args = parse_job_args(argv)
    if args.export:
        export_job(settings, args.export)
        print(f"exported {os.path.join(args.export, settings.name)}")
        return
    run_simulation(settings, args.workspace or os.path.join("runs", settings.name, "workspace"))


if __name__ == "__main__":
    main()
