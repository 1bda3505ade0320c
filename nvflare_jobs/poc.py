"""Export an OmniFM-MONAI job and run it end to end in NVFlare POC mode on this machine.

The POC run itself (prepare, start, submit, wait, stop) is :func:`omnifm_monai.jobs.poc.run_poc`;
``docs/running.md`` gives the same steps by hand.

Examples::

    # export a 2-site FedAvg job (image size 32, 60 samples per site) and run it in POC mode
    python -m nvflare_jobs.poc --strategy fedavg --clients 2 --rounds 2 --fresh

    # an already exported job folder
    python -m nvflare_jobs.poc --job-dir runs/poc/jobs/omnifm_classification_fedavg

Every option of ``python -m nvflare_jobs.omnifm_job`` but the simulator's (``--workspace``,
``--threads``) and ``--export`` is accepted. The CLI's settings file
(``~/.nvflare/config.conf``, which ``poc prepare`` rewrites) is kept inside the POC workspace
by pointing ``HOME`` there, so a run never touches the user's own NVFlare configuration.
"""

from __future__ import annotations

import argparse
import sys

from omnifm_monai.jobs.poc import export_poc_job, job_sites, run_poc
from omnifm_monai.jobs.run_summary import summarize_run


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Export an OmniFM-MONAI job and run it in NVFlare POC mode. Other options go to "
        "nvflare_jobs.omnifm_job (defaults here: --image-size 32 --samples-per-client 60 "
        "--state-root runs/poc/state)."
    )
    parser.add_argument("--job-dir", default="", help="run this exported job folder instead of exporting one")
    parser.add_argument("--clients", type=int, default=0, help="number of sites (default: the job's)")
    parser.add_argument("--poc-workspace", default="runs/poc/workspace", help="folder of this POC run (recreated)")
    parser.add_argument("--export-dir", default="runs/poc/jobs", help="where the job folder is exported")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the job may run")
    parser.add_argument("--port", type=int, default=0, help="server port on localhost (0: a free one)")
    parser.add_argument("--fresh", action="store_true", help="delete the state root before exporting (else resume)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, job_argv = parse_args(argv)
    if args.job_dir:
        if job_argv or args.fresh:
            raise SystemExit(f"{job_argv or '--fresh'}: options of the export, not of an exported --job-dir.")
        job_dir, clients = args.job_dir, args.clients or len(job_sites(args.job_dir))
    else:
        if args.clients:
            job_argv += ["--clients", str(args.clients)]
        job_dir, clients = export_poc_job(job_argv, args.export_dir, fresh=args.fresh)
        print(f"[poc] exported {job_dir}", flush=True)
    result = run_poc(job_dir, clients, args.poc_workspace, args.timeout, port=args.port)
    print(f"[poc] job {result.job_id or '-'}: {result.status} in {result.seconds:.0f} s", flush=True)
    print(f"[poc] results (server_state.json, final_metrics.json): {result.state_dir}", flush=True)
    if result.result_dir:
        print(f"[poc] server job workspace (log.txt, tb_events): {result.result_dir}", flush=True)
    for site, log in result.site_logs.items():
        print(f"[poc] {site} log: {log}", flush=True)
    for problem in result.problems:
        print(f"[poc] problem: {problem}", flush=True)
    summary = summarize_run(result.state_dir, job_sites(job_dir), site_logs=result.site_logs)
    print(summary.text(), flush=True)
    return 0 if result.ok and summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
