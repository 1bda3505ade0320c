"""Benchmark: exact top-k cosine retrieval in SpectralKnowledgeBase against the memory and compute floors.

For each knowledge-base size this measures, in one run on one machine:

- ``retrieve``: median wall time of ``SpectralKnowledgeBase.retrieve(queries, k, count=False)``;
- ``gemm``: median time of the chunked matrix products alone (same chunks, no top-k), the compute
  floor of any exact matmul-based retrieval;
- ``bound``: bytes of the stored vectors / measured memory bandwidth, the floor of any exact method
  that reads every stored vector once. The bandwidth is the median rate of ``arr.sum()`` over a large
  float32 array (a single-threaded streaming read, as numpy's reduction is);
- peak extra memory of one ``retrieve`` call (tracemalloc, which sees numpy's allocations).

Writes ``<out>/results.json``, ``<out>/results.md`` and ``<out>/retrieval_time.png`` and prints the
Markdown table. Usage::

    python benchmarks/knowledge_retrieval.py --sizes 10000 100000 1000000 --queries 256 --dim 64 \\
        --k 8 --repeats 5 --out runs/benchmarks/knowledge
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import benchmark_parser, machine_info, write_report

from omnifm_monai.knowledge import SpectralKnowledgeBase

__all__ = ["build_base", "gemm_only", "main", "numpy_info", "parse_args", "peak_extra_memory", "plot", "run",
           "to_markdown"]  # fmt: skip

SOURCES = ("ct", "mr_t1", "mr_t2", "pet", "xray", "us", "pathology")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build_base(size: int, dim: int, upload: int, seed: int) -> SpectralKnowledgeBase:
    """A base of ``size`` random unit vectors, added through ``add`` in uploads from rotating sources."""
    rng = np.random.default_rng(seed)
    kb = SpectralKnowledgeBase(dim, max_size=size, max_upload=upload)
    for i, start in enumerate(range(0, size, upload)):
        n = min(upload, size - start)
        kb.add(rng.standard_normal((n, dim), dtype=np.float32), SOURCES[i % len(SOURCES)], round_num=i)
    return kb


def gemm_only(queries: np.ndarray, vectors: np.ndarray, chunk_size: int) -> None:
    for start in range(0, vectors.shape[0], chunk_size):
        queries @ vectors[start : start + chunk_size].T


def peak_extra_memory(fn) -> int:
    """Peak bytes allocated (and traced) during ``fn()`` above the level before it."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def numpy_info() -> dict[str, str]:
    """numpy's version and the BLAS it was built with (its matrix products' speed)."""
    blas = "unknown"
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy without mode="dicts"
        pass
    return {"numpy": np.__version__, "blas": blas}


def run(args: argparse.Namespace) -> dict:
    """Time every size side by side: each repeat visits the bandwidth probe and then every size, so
    a change in machine load during the run shifts all numbers of that repeat together."""
    info = machine_info(**numpy_info())
    chunk_size = args.chunk_size or SpectralKnowledgeBase(args.dim).chunk_size
    rng = np.random.default_rng(args.seed)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    bases = {}
    for size in args.sizes:
        bases[size] = build_base(size, args.dim, args.upload, args.seed + size)
        bases[size].chunk_size = chunk_size
    probe = np.random.default_rng(args.seed).random(args.bandwidth_mb * 2**20 // 4, dtype=np.float32)

    def retrieve(size: int) -> None:
        bases[size].retrieve(queries, args.k, count=False)

    def gemm(size: int) -> None:
        gemm_only(unit_queries, bases[size].vectors, chunk_size)

    times = {"probe": [], **{(size, name): [] for size in args.sizes for name in ("retrieve", "gemm")}}
    for rep in range(args.repeats + 1):  # repeat 0 warms up and is discarded
        probe_t = timed(probe.sum)
        step = {
            (size, name): timed(lambda s=size, f=fn: f(s))
            for size in args.sizes
            for name, fn in (("retrieve", retrieve), ("gemm", gemm))
        }
        if rep > 0:
            times["probe"].append(probe_t)
            for key, value in step.items():
                times[key].append(value)
    bandwidth = probe.nbytes / statistics.median(times["probe"])
    del probe

    rows = []
    for size in args.sizes:
        t_retrieve = statistics.median(times[(size, "retrieve")])
        t_gemm = statistics.median(times[(size, "gemm")])
        peak = peak_extra_memory(lambda s=size: retrieve(s))
        stored = bases[size].vectors.nbytes
        bound = stored / bandwidth
        rows.append(
            {
                "size": size,
                "stored_mb": stored / 2**20,
                "retrieve_s": t_retrieve,
                "gemm_s": t_gemm,
                "bound_s": bound,
                "ratio_to_bound": t_retrieve / bound,
                "ratio_to_gemm": t_retrieve / t_gemm,
                "gflops": 2.0 * size * args.dim * args.queries / t_retrieve / 1e9,
                "peak_extra_mb": peak / 2**20,
                "retrieve_all_s": times[(size, "retrieve")],
                "gemm_all_s": times[(size, "gemm")],
            }
        )
        print(f"size {size}: retrieve {t_retrieve:.4f} s, gemm {t_gemm:.4f} s, bound {bound:.4f} s", flush=True)
    if hasattr(os, "getloadavg"):
        info["loadavg_1min_after"] = os.getloadavg()[0]
    return {
        "machine": info,
        "config": {
            "queries": args.queries,
            "dim": args.dim,
            "k": args.k,
            "repeats": args.repeats,
            "chunk_size": chunk_size,
            "bandwidth_array_mb": args.bandwidth_mb,
        },
        "bandwidth_gb_s": bandwidth / 1e9,
        "results": rows,
    }


def to_markdown(report: dict) -> str:
    m, c = report["machine"], report["config"]
    loads = [m.get("loadavg_1min_before"), m.get("loadavg_1min_after")]
    load = "/".join("n/a" if x is None else f"{x:.2f}" for x in loads)
    lines = [
        "# SpectralKnowledgeBase top-k retrieval",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs; numpy {m['numpy']} ({m['blas']}); "
        f"Python {m['python']}; {m['date']}.",
        f"Queries {c['queries']}, dim {c['dim']}, k {c['k']}, chunk_size {c['chunk_size']}, "
        f"median of {c['repeats']} repeats (interleaved over sizes). "
        "Memory bandwidth (median `arr.sum()` over "
        f"{c['bandwidth_array_mb']} MiB float32): {report['bandwidth_gb_s']:.2f} GB/s. "
        f"1-min load average before/after: {load}.",
        "",
        f"Exact retrieval does 2 x {c['queries']} flops per float32 it reads "
        f"({c['queries'] // 2} flop/byte), so with many queries the matrix product, not memory "
        "bandwidth, is its floor: compare `retrieve / GEMM`; `retrieve / bound` shows how far the "
        "bandwidth bound is out of reach.",
        "",
        "| stored vectors | stored MiB | retrieve (s) | GEMM only (s) | bandwidth bound (s) "
        "| retrieve / bound | retrieve / GEMM | GFLOP/s | peak extra MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['size']:,} | {r['stored_mb']:.1f} | {r['retrieve_s']:.4f} | {r['gemm_s']:.4f} "
            f"| {r['bound_s']:.4f} | {r['ratio_to_bound']:.1f} | {r['ratio_to_gemm']:.2f} "
            f"| {r['gflops']:.1f} | {r['peak_extra_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    sizes = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.loglog(sizes, [r["retrieve_s"] for r in rows], "o-", label="retrieve (top-k, chunked)")
    ax.loglog(sizes, [r["gemm_s"] for r in rows], "s--", label="matrix products only")
    ax.loglog(sizes, [r["bound_s"] for r in rows], "k:", label="bandwidth bound (bytes / GB/s)")
    c = report["config"]
    ax.set_xlabel("stored vectors")
    ax.set_ylabel("median time (s)")
    ax.set_title(f"Top-{c['k']} cosine, {c['queries']} queries x {c['dim']}-d")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--chunk-size", type=int, default=0, help="0: the SpectralKnowledgeBase default")
    p.add_argument("--upload", type=int, default=65536, help="vectors per add() call when building")
    p.add_argument("--bandwidth-mb", type=int, default=512, help="MiB of the bandwidth-probe array")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/knowledge"))
    args = p.parse_args(argv)
    if args.bandwidth_mb < 256:
        p.error(f"--bandwidth-mb must be >= 256 (a smaller array may sit in cache), got {args.bandwidth_mb}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    write_report(args.out, report, to_markdown(report), indent=2, plots={"retrieval_time.png": plot}, announce=True)


if __name__ == "__main__":
    main()
