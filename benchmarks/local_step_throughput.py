"""Benchmark: one site's local training step for each task's bundle network, per device, with and without OmniFM.

For every task (its bundle's own ``network_def``, ``loss`` and ``optimizer`` from ``configs/train.json``),
every device (``cpu``, ``cuda``) and two variants of the same backbone, this measures in one run:

- ``plain``: ``spectral=False, prompt=False`` (what FedAvg/FedProx/FedPer/FedBN/local train);
- ``omnifm``: the spectral path (tokenizer, prototype retrieval, ECA) and the private suffix, with
  ``top_k`` prototypes loaded as after a round of retrieval;

the median wall time of a full training step (forward, the bundle's loss incl. SPAlign, backward,
optimizer step; ``torch.cuda.synchronize`` on the GPU) over ``--steps`` steps after ``--warmup``,
the images per second, the ``omnifm / plain`` time ratio, and on CUDA the peak memory allocated.
With ``--amp`` the CUDA rows are repeated under bfloat16 autocast.

Writes ``<out>/results.json`` and ``<out>/results.md`` and prints the Markdown table. Usage::

    python benchmarks/local_step_throughput.py --devices cpu cuda --batch-size 32 --out runs/benchmarks/local_step
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import benchmark_parser, machine_info, write_report
from monai.bundle import ConfigParser
from monai.data import list_data_collate
from monai.engines.utils import default_prepare_batch

from omnifm_monai.jobs import bundle_root
from omnifm_monai.tasks import TASKS

__all__ = ["VARIANTS", "bundle_parser", "main", "one_batch", "parse_args", "run", "time_steps", "to_markdown"]

VARIANTS = {"plain": {"spectral": False, "prompt": False}, "omnifm": {"spectral": True, "prompt": True}}


def bundle_parser(task: str, device: str, variant: str, image_size: int, batch_size: int) -> ConfigParser:
    """The task bundle's ``train.json`` with this run's device, variant and a small training set."""
    bundle = bundle_root(task)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = f"$torch.device('{device}')"
    parser["image_size"] = image_size
    for key, value in VARIANTS[variant].items():
        parser[key] = value
    if "num_samples" in parser:  # generate only what one batch needs (the phantom splits 60/20/20)
        parser["num_samples"] = max(4 * batch_size, 20)
    return parser


def one_batch(parser: ConfigParser, batch_size: int, device: str) -> tuple:
    """The first ``batch_size`` training items after the bundle's training transforms, through the trainer's
    ``prepare_batch``: ``(image, label, args, kwargs)``; the network is called as ``network(image, *args)``."""
    dataset = parser.get_parsed_content("train#dataset")
    if len(dataset) < batch_size:
        raise ValueError(f"the bundle's training set has {len(dataset)} items, fewer than --batch-size {batch_size}.")
    batch = list_data_collate([dataset[i] for i in range(batch_size)])
    prepare = default_prepare_batch
    if "prepare_batch" in parser.get("train#trainer"):  # e.g. VQA: (image, label, (question,), {})
        prepare = parser.get_parsed_content("train#trainer#prepare_batch")
    prepared = prepare(batch, torch.device(device))
    return (*prepared, (), {}) if len(prepared) == 2 else tuple(prepared)


def time_steps(parser: ConfigParser, batch, device: str, steps: int, warmup: int, amp: bool) -> dict:
    """Median seconds of a full training step, and the CUDA peak memory."""
    network = parser.get_parsed_content("network")
    loss_function, optimizer = parser.get_parsed_content("loss"), parser.get_parsed_content("optimizer")
    if getattr(network, "spectral", False):  # prototypes as retrieved by the server: memory full, top-k used
        capacity = network.spectral_memory.capacity
        prototypes = torch.nn.functional.normalize(torch.randn(capacity, network.token_dim), dim=-1)
        network.set_prototypes(prototypes.numpy())
    network.train()
    images, labels, args, kwargs = batch
    cuda = device.startswith("cuda")

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = loss_function(network(images, *args, **kwargs), labels)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(steps)]
    return {
        "median_s": statistics.median(times),
        "images_per_s": images.shape[0] / statistics.median(times),
        "parameters": sum(p.numel() for p in network.parameters()),
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def run(args: argparse.Namespace) -> dict:
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    skipped = sorted(set(args.devices) - set(devices))
    rows = []
    for task in args.tasks:
        for device in devices:
            for amp in [False, True] if (args.amp and device.startswith("cuda")) else [False]:
                timings = {}
                for variant in VARIANTS:
                    torch.manual_seed(0)
                    parser = bundle_parser(task, device, variant, args.image_size, args.batch_size)
                    batch = one_batch(parser, args.batch_size, device)
                    timings[variant] = time_steps(parser, batch, device, args.steps, args.warmup, amp)
                shape = tuple(batch[0].shape)
                rows.append(
                    {
                        "task": task,
                        "device": device,
                        "amp": amp,
                        "input_shape": shape,
                        **{f"{v}_{k}": t[k] for v, t in timings.items() for k in t},
                        "omnifm_over_plain": timings["omnifm"]["median_s"] / timings["plain"]["median_s"],
                    }
                )
                speed = rows[-1]["omnifm_images_per_s"]
                print(f"{task} {device}{' bf16' if amp else ''}: OmniFM {speed:.0f} images/s", flush=True)
    by_key = {(r["task"], r["device"], r["amp"]): r for r in rows}
    for row in rows:  # speed-up of each GPU row over the CPU row of the same task (same run, same machine)
        cpu_row = by_key.get((row["task"], "cpu", False))
        if cpu_row is not None and row["device"] != "cpu":
            row["omnifm_speedup_over_cpu"] = cpu_row["omnifm_median_s"] / row["omnifm_median_s"]
    info = machine_info(
        torch_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        torch=torch.__version__,
    )
    return {"machine": info, "settings": vars(args) | {"skipped_devices": skipped}, "rows": rows}


def to_markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} torch threads), GPU {m['gpu']}, "
        f"torch {m['torch']}, {m['date']}. Batch {s['batch_size']}, image size {s['image_size']}, median of "
        f"{s['steps']} steps after {s['warmup']} warm-up steps.",
        "",
        "| task | device | input | plain img/s | OmniFM img/s | OmniFM / plain time | OmniFM speed-up vs CPU "
        "| OmniFM peak CUDA MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        speedup = r.get("omnifm_speedup_over_cpu")
        peak = r["omnifm_peak_cuda_mib"]
        lines.append(
            f"| {r['task']} | {r['device']}{' bf16' if r['amp'] else ''} | {'x'.join(map(str, r['input_shape']))} "
            f"| {r['plain_images_per_s']:.0f} | {r['omnifm_images_per_s']:.0f} | {r['omnifm_over_plain']:.2f} "
            f"| {'-' if speedup is None else f'{speedup:.1f}x'} | {'-' if peak is None else f'{peak:.0f}'} |"
        )
    if s["skipped_devices"]:
        lines += ["", f"Skipped (not available): {', '.join(s['skipped_devices'])}."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=[t for t in TASKS if bundle_root(t).is_dir()])
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="also time CUDA under bfloat16 autocast")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/local_step"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    write_report(args.out, report, to_markdown(report), indent=2, announce=True)


if __name__ == "__main__":
    main()
