"""The main job: every strategy on the same federation in the NVFlare simulator, then a report.

    python -m nvflare_jobs.main_job                      # phantom, cross-modality hard (README)
    python -m nvflare_jobs.main_job --federation-data ../shared/data/medmnist --clients 10 --image-size 28

Each strategy runs as its own simulator process (its log in ``<out>/<strategy>/simulator.log``);
progress is read from the server's persisted round history. A run counts only if every site
returned its final evaluation and no site logged a traceback: the simulator can exit 0 while a
client crashed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

from nvflare_jobs.omnifm_job import JobSettings, federation_for
from omnifm_monai.reporting import RunResult, comparison_rows, load_run, markdown_table, write_report

DEFAULT_STRATEGIES = ("local", "fedavg", "fedper", "fedbn", "omnifm")


def run_logged_errors(workspace: str) -> list[str]:
    """Lines with a traceback or an ERROR in any log of a simulator workspace."""
    bad = []
    for path in glob.glob(os.path.join(workspace, "**", "log*.txt"), recursive=True):
        with open(path, errors="replace") as f:
            for line in f:
                if "Traceback (most recent call last)" in line or " - ERROR - " in line:
                    bad.append(f"{path}: {line.strip()}")
    return bad


def _progress(state_root: str) -> tuple[int, float]:
    path = os.path.join(state_root, "server", "server_state.json")
    try:
        with open(path) as f:
            history = json.load(f)["history"]
    except (OSError, ValueError, KeyError):
        return 0, float("nan")
    if not history:
        return 0, float("nan")
    values = [m.get("restricted_accuracy") for m in history[-1]["metrics"].values()]
    values = [v for v in values if v is not None]
    return len(history), (sum(values) / len(values) if values else float("nan"))


def run_strategy(strategy: str, args: argparse.Namespace, out_dir: str) -> tuple[RunResult | None, list[str]]:
    """Simulate one strategy in a subprocess; returns its result (None if it failed) and the problems seen."""
    root = os.path.join(out_dir, strategy)
    state_root, workspace = os.path.join(root, "state"), os.path.join(root, "workspace")
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job",
        "--strategy", strategy,
        "--clients", str(args.clients),
        "--rounds", str(args.rounds),
        "--participation", str(args.participation),
        "--local-epochs", str(args.local_epochs),
        "--scenario", args.scenario,
        "--image-size", str(args.image_size),
        "--seed", str(args.seed),
        "--threads", str(args.threads or args.clients),
        "--state-root", state_root,
        "--workspace", workspace,
        "--bundle-overrides", args.bundle_overrides,
    ]  # fmt: skip
    if args.federation_data:
        command += ["--federation-data", args.federation_data]
    if args.samples_per_client:
        command += ["--samples-per-client", str(args.samples_per_client)]
    os.makedirs(root, exist_ok=True)
    start = time.perf_counter()
    shown = -1
    with open(os.path.join(root, "simulator.log"), "w") as log:
        # own process group, so an interrupted main job also stops the simulator's workers
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                time.sleep(2)
                done, accuracy = _progress(state_root)
                if done != shown and done > 0:
                    shown = done
                    print(
                        f"  {strategy:>7}: round {done}/{args.rounds} done, {time.perf_counter() - start:5.0f} s,"
                        f" mean accuracy of the received model {100 * accuracy:.1f}%",
                        flush=True,
                    )
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            raise
    wall = time.perf_counter() - start
    problems = run_logged_errors(workspace)
    if process.returncode:
        problems.append(f"simulator exited with code {process.returncode}")
    try:
        result = load_run(state_root, strategy, wall)
    except FileNotFoundError as e:
        return None, [*problems, str(e)]
    missing = args.clients - len(result.final_metrics)
    if missing:
        problems.append(f"{missing} site(s) returned no final evaluation")
    return (result if not problems else None), problems


def federation_summary(args: argparse.Namespace) -> str:
    """The sites' modalities, label spaces and split sizes (the same partition every run used)."""
    settings = JobSettings(
        num_clients=args.clients,
        scenario=args.scenario,
        federation_data=args.federation_data,
        samples_per_client=args.samples_per_client,
        image_size=args.image_size,
        seed=args.seed,
    )
    return federation_for(settings).summary()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--participation", type=float, default=1.0)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--scenario", default="cross_modality_hard")
    parser.add_argument("--federation-data", default="", help="folder of MedMNIST .npz files (default: phantom)")
    parser.add_argument("--samples-per-client", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="simulator threads (default: one per site)")
    parser.add_argument("--bundle-overrides", default="{}", help="JSON: bundle config id -> value")
    parser.add_argument("--out", default="runs/main_job")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.federation_data or "embedded phantom"
    print(
        f"OmniFM-MONAI main job: {args.clients} sites, {args.scenario} on {data}, {args.rounds} rounds x "
        f"{args.local_epochs} local epoch(s), participation {args.participation}; strategies {args.strategies}",
        flush=True,
    )
    results, failures = [], {}
    for index, strategy in enumerate(args.strategies, 1):
        print(f"[{index}/{len(args.strategies)}] {strategy}", flush=True)
        result, problems = run_strategy(strategy, args, args.out)
        if result is None:
            failures[strategy] = problems
            print(f"  {strategy} FAILED:\n    " + "\n    ".join(problems[:10]), flush=True)
        else:
            results.append(result)
    if results:
        title = f"OmniFM-MONAI comparison: {args.scenario} on {data}, {args.clients} sites"
        notes = (
            f"{args.rounds} rounds x {args.local_epochs} local epoch(s), participation {args.participation}, "
            f"image size {args.image_size}, seed {args.seed}. Accuracy and macro-F1 are the final model's, "
            "per site on its own test split, averaged over sites; 'own labels' restricts the argmax to the "
            "site's label space, 'all labels' takes it over the union. `local` is each site training alone.\n\n"
            + federation_summary(args)
        )
        paths = write_report(results, args.out, title, notes)
        print("\n" + markdown_table(comparison_rows(results)))
        print(f"\nreport: {paths['markdown']}\nplot:   {paths['plot']}\njson:   {paths['json']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
