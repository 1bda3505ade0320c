"""Benchmark: one large site's start-up time and peak memory, eager loader vs lazy loading (dataset_cache).

Writes ``--images`` small gray PNG files (``--file-size`` pixels square, two classes) in the folder layout
``<data-dir>/<split>/<class>/`` (``val`` and ``test`` get a few images each), then, for every mode of the
classification bundle's ``dataset_cache``, builds the bundle's own ``train#dataloader`` from
``configs/train.json`` in a fresh Python process and measures:

- ``startup_s``: from building the training dataset to the first training batch (what a site waits for
  before its first step);
- ``epoch_s``: the same start, to the end of one pass over every training batch (no network): the first
  epoch's loading, start-up included;
- ``peak_rss_mib``: the process's peak resident memory (``resource.getrusage``) and ``loader_mib``, its
  increase over the resident memory after the imports (what the data costs).

Modes: ``eager`` (today's loader: every image read and preprocessed into memory at start), ``none`` (paths,
each image read when a batch needs it), ``memory`` (``CacheDataset``), ``disk`` twice: ``disk_cold`` (an
empty ``PersistentDataset`` cache, filled during the epoch) and ``disk_warm`` (the cache of the cold run, as
in a site's later runs).

Writes ``--out`` (JSON) and the Markdown table beside it (``.md``) and prints the table. Usage::

    python benchmarks/lazy_loading.py --images 20000 --out runs/benchmarks/lazy_loading.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import benchmark_parser, machine_info

from omnifm_monai.jobs import REPO_ROOT, bundle_root

__all__ = ["MODES", "main", "make_site", "measure", "parse_args", "to_markdown"]

MODES: tuple[str, ...] = ("eager", "none", "memory", "disk_cold", "disk_warm")
"""The measured runs, in order (``disk_warm`` reuses ``disk_cold``'s cache)."""

CLASSES = ("benign", "malignant")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--images", type=int, default=20000, help="training images of the site")
    parser.add_argument("--file-size", type=int, default=64, help="side of each PNG file")
    parser.add_argument("--image-size", type=int, default=64, help="the bundle's image_size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--data-dir", default="runs/benchmarks/lazy_loading_data", help="the site's files (made)")
    parser.add_argument("--keep-data", action="store_true", help="keep the files and the disk cache afterwards")
    parser.add_argument("--out", default="runs/benchmarks/lazy_loading.json")
    parser.add_argument("--in-process", action="store_true", help="measure in this process (tests; memory shared)")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)  # the child process of one mode
    return parser.parse_args(argv)


def make_site(root: Path, images: int, file_size: int, *, seed: int = 0) -> Path:
    """``images`` training PNGs (and 4 per split for val and test) under ``root``; kept if already there."""
    from PIL import Image

    marker = root / f".made_{images}_{file_size}"
    if marker.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", 4), ("test", 4)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (file_size, file_size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / CLASSES[i % 2] / f"{i:06d}.png")
    marker.touch()
    return root


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(mode: str, data_dir: Path, cache_dir: Path, image_size: int, batch_size: int) -> dict:
    """Build the bundle's training loader in ``mode`` and time its first batch and one epoch; memory in MiB."""
    from monai.bundle import ConfigParser

    baseline = _rss_mib()
    parser = ConfigParser()
    bundle = bundle_root("classification")
    parser.read_config(str(bundle / "configs" / "train.json"))
    settings = {
        "bundle_root": str(bundle),
        "dataset_dir": str(data_dir),
        "dataset_cache": "disk" if mode.startswith("disk") else mode,
        "cache_dir": str(cache_dir),
        "image_size": image_size,
        "batch_size": batch_size,
    }
    for key, value in settings.items():
        parser[key] = value
    start = time.perf_counter()
    loader = parser.get_parsed_content("train#dataloader")
    batches = iter(loader)
    first = next(batches)
    startup = time.perf_counter() - start
    seen = len(first["image"])
    for batch in batches:
        seen += len(batch["image"])
    epoch = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "mode": mode,
        "images": len(loader.dataset),
        "images_per_epoch": seen,
        "batch_shape": list(first["image"].shape),
        "startup_s": round(startup, 3),
        "epoch_s": round(epoch, 3),
        "peak_rss_mib": round(peak, 1),
        "baseline_rss_mib": round(baseline, 1),
        "loader_mib": round(peak - baseline, 1),
    }


def _measure_in_child(mode: str, args) -> dict:
    """:func:`measure` in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", mode, "--data-dir", args.data_dir]
    command += ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def to_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"{s['images']} training PNG files of {s['file_size']} x {s['file_size']} px at one site, image_size "
        f"{s['image_size']}, batch {s['batch_size']}; {report['machine']['cpu']}, {report['machine']['date']}.",
        "",
        "| dataset_cache | start-up to first batch (s) | first epoch of loading, start-up incl. (s) "
        "| peak RSS (MiB) | data (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        times = f"{r['startup_s']:.2f} | {r['epoch_s']:.2f}"
        lines.append(f"| {r['mode']} | {times} | {r['peak_rss_mib']:.0f} | {r['loader_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    cache_dir = data_dir.parent / f"{data_dir.name}_cache"
    if args.measure:  # the child process
        print(json.dumps(measure(args.measure, data_dir, cache_dir, args.image_size, args.batch_size)))
        return {}
    machine = machine_info()  # the load average before the run
    start = time.perf_counter()
    make_site(data_dir, args.images, args.file_size)
    made_s = time.perf_counter() - start
    shutil.rmtree(cache_dir, ignore_errors=True)  # disk_cold starts empty
    rows = []
    for mode in args.modes:
        if args.in_process:
            rows.append(measure(mode, data_dir, cache_dir, args.image_size, args.batch_size))
        else:
            rows.append(_measure_in_child(mode, args))
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "settings": {k: v for k, v in vars(args).items() if k != "measure"} | {"files_made_s": round(made_s, 1)},
        "machine": machine,
        "rows": rows,
    }
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    markdown = to_markdown(report)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
