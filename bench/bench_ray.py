"""Benchmark of the Ray backend (evaluation/backends.py) against the local process pool.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_ray.py [--demo-seeds 1000-1005] [--solve-seeds 1000-1019]
[--sections demo,solves] [--threads 1]``
on an otherwise idle machine. Two measurements, each a ratio within this run:

1. **Overhead on the ``make demo`` workload**: ``python evaluate.py`` with the demo's policies and seeds,
   2 workers, ``--backend local`` then ``--backend ray`` (a local Ray cluster started by the command),
   alternated ``--repeats`` times, the hindsight optima already cached (so the runs time the episodes and
   the backend, not HiGHS); overhead = median(ray) / median(local) - 1.
2. **Hindsight solves of ``table1`` seeds** as Ray tasks with 1 and 2 workers (a local cluster of 1, then
   2 CPUs): speed-up = t1 / t2. Each solve stops at ``--mip-gap`` (a deterministic criterion, not a
   wall-clock limit, so both runs do the same work; the gap is HiGHS's relative gap). Each task reports
   its seconds and its worker's peak memory, from which the script says how a larger cluster would run.

Prints Markdown for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_evaluate import CACHE, evaluate  # noqa: E402

from evaluation.backends import RayBackend  # noqa: E402
from evaluation.runner import parse_seeds  # noqa: E402


def solve_task(options: tuple[float, int | None], seed: int) -> dict:
    """One hindsight solve of ``table1`` (a Ray task): objective, seconds, the worker's peak RSS in MiB."""
    from baselines.hindsight import solve_hindsight

    mip_gap, threads = options
    t0 = time.perf_counter()
    result = solve_hindsight("table1", seed, mip_gap=mip_gap, threads=threads)
    return {
        "seed": seed,
        "status": result.status,
        "objective": result.objective,
        "seconds": time.perf_counter() - t0,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def solves(seeds: tuple[int, ...], workers: int, mip_gap: float, threads: int | None) -> tuple[float, list[dict]]:
    """Wall seconds (cluster start included) and the task records of all ``seeds`` on ``workers`` CPUs."""
    t0 = time.perf_counter()
    backend = RayBackend(workers)
    try:
        records = [record for _, record in backend.map(solve_task, (mip_gap, threads), seeds)]
    finally:
        backend.close()
    return time.perf_counter() - t0, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-seeds", default="1000-1005")
    parser.add_argument("--solve-seeds", default="1000-1019")
    parser.add_argument("--mip-gap", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="HiGHS threads per solve (default: its own)")
    parser.add_argument("--sections", default="demo,solves", help="demo, solves or both (default: both)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if not sections <= {"demo", "solves"}:
        parser.error(f"--sections: {args.sections!r}; allowed: demo, solves, or demo,solves")
    if "demo" in sections:
        demo(args)
    if "solves" in sections:
        solve_speedup(args)


def demo(args) -> None:
    """1. Ray's overhead on the make-demo workload (hindsight optima cached by a first, untimed run)."""
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(Path(tmp) / "warm", args.demo_seeds, 2)
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for r in range(args.repeats):
            for backend in ("local", "ray"):
                times[backend].append(evaluate(Path(tmp) / f"{backend}{r}", args.demo_seeds, 2, backend))
    local, ray_ = statistics.median(times["local"]), statistics.median(times["ray"])
    print(f"\n### make-demo workload ({args.demo_seeds}, 2 workers, hindsight cached in {CACHE})\n")
    print("| backend | wall s (each run) | median s |\n|---|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    print(f"\nRay overhead: {ray_ / local - 1:+.1%} (target: within 10%)")


def solve_speedup(args) -> None:
    """2. Hindsight solves as Ray tasks, 1 and 2 workers."""
    seeds = parse_seeds(args.solve_seeds)
    t1, one = solves(seeds, 1, args.mip_gap, args.threads)
    t2, two = solves(seeds, 2, args.mip_gap, args.threads)
    same = all(math.isclose(a["objective"], b["objective"], rel_tol=1e-9) for a, b in zip(
        sorted(one, key=lambda r: r["seed"]), sorted(two, key=lambda r: r["seed"]), strict=True))  # fmt: skip
    per_task = statistics.median(r["seconds"] for r in one)
    peak = max(r["peak_mib"] for r in one + two)
    threads = "HiGHS default threads" if args.threads is None else f"threads={args.threads}"
    print(f"\n### {len(seeds)} table1 hindsight solves as Ray tasks (mip_gap {args.mip_gap:g}, {threads})\n")
    print("| workers | wall s | speed-up |\n|---:|---:|---:|")
    print(f"| 1 | {t1:.1f} | 1.00 |\n| 2 | {t2:.1f} | {t1 / t2:.2f} |")
    print(f"\nSame objectives with 1 and 2 workers: {same}. Median solve {per_task:.1f} s; peak worker memory "
          f"{peak:.0f} MiB. On a cluster: one task per CPU (`num_cpus=1`), so a node with C CPUs runs C solves "
          f"at once if it has C x {peak:.0f} MiB free; N seeds on K such CPUs take about ceil(N/K) x {per_task:.1f} s "
          f"(100 seeds on 4 nodes x 16 CPUs: about {math.ceil(100 / 64) * per_task:.0f} s).")  # fmt: skip


if __name__ == "__main__":
    main()
