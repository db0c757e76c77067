"""Several training seeds of one configuration, and what they say together.

``python train.py ... --seeds 0-4 --out runs/sweep [--backend ray]`` trains each seed as its own run (one
task on the backend of :mod:`evaluation.backends`) and writes beside them:

| path | what |
|---|---|
| ``seed_<s>/`` | the run of training seed ``s`` (every file of a single ``train.py`` run) |
| ``seeds.csv`` | one row per seed (:data:`SEED_COLUMNS`): its final and best validation figures, its wall time |
| ``seeds_summary.yaml`` | across seeds: the mean of the final validation ratio to the hindsight optimum and its |
| | 95% percentile-bootstrap interval (and the same for the mean return), the seeds, the command |

Both files are rewritten whole (atomically) each time a seed finishes, so they always describe the
seeds that are done; a rerun with ``--resume`` continues each unfinished seed from its checkpoint.
The figures come from each run's own ``eval.csv`` and ``summary.yaml``: the summary is a pure function
of the run directories, whichever machine trained them.
"""

from __future__ import annotations

import csv
import io
import zlib
from pathlib import Path

import numpy as np
import yaml

from envs.files import write_atomic
from evaluation.metrics import bootstrap_mean_ci

SEED_DIR = "seed_{seed}"
SEED_COLUMNS = (
    "seed",
    "timesteps",
    "final_mean_return",
    "final_mean_ratio",
    "best_mean_return",
    "best_timesteps",
    "wall_seconds_last_session",
    "run_dir",
)
CONFIDENCE = 0.95
RESAMPLES = 10_000


def seed_dir(root: Path, seed: int) -> Path:
    return root / SEED_DIR.format(seed=seed)


def _float(text: str) -> float:
    """A CSV cell as a float; an empty cell (no hindsight optimum: ratio off) is NaN."""
    return float(text) if text not in ("", None) else float("nan")


def seed_row(root: Path, seed: int) -> dict:
    """The figures of seed ``seed``'s run under ``root``: the last and the best validation (``eval.csv``) and
    the wall time of its sessions (``summary.yaml``). NaN where a run has no validation (``eval_freq: 0``)."""
    run = seed_dir(root, seed)
    rows = []
    if (run / "eval.csv").is_file():
        with open(run / "eval.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    summary = yaml.safe_load((run / "summary.yaml").read_text()) if (run / "summary.yaml").is_file() else {}
    last = rows[-1] if rows else {}
    best = max(rows, key=lambda r: float(r["mean_return"])) if rows else {}
    return {
        "seed": seed,
        "timesteps": int((summary or {}).get("timesteps", 0)),
        "final_mean_return": _float(last.get("mean_return", "")),
        "final_mean_ratio": _float(last.get("mean_ratio", "")),
        "best_mean_return": _float(best.get("mean_return", "")),
        "best_timesteps": int(best["timesteps"]) if best else 0,
        "wall_seconds_last_session": float((summary or {}).get("wall_seconds_this_session", float("nan"))),
        "run_dir": run.name,
    }


def summarize_seeds(rows: list[dict], command: str) -> dict:
    """Mean and ``CONFIDENCE`` bootstrap interval across seeds of the final validation ratio and return.

    The bootstrap generator is seeded from the seeds themselves, so the same runs give the same interval."""
    seeds = sorted(r["seed"] for r in rows)
    rng = np.random.default_rng(zlib.crc32(",".join(map(str, seeds)).encode()))
    doc: dict = {"seeds": seeds, "n": len(rows), "confidence": CONFIDENCE, "method": "percentile bootstrap of the mean"}
    for key in ("final_mean_ratio", "final_mean_return"):
        values = np.array([r[key] for r in rows], dtype=float)
        finite = values[np.isfinite(values)]
        low, high = bootstrap_mean_ci(finite, rng, RESAMPLES, CONFIDENCE)
        doc[key] = {
            "mean": float(finite.mean()) if finite.size else None,
            "low": None if np.isnan(low) else low,
            "high": None if np.isnan(high) else high,
            "seeds_with_value": int(finite.size),
        }
    doc["command"] = command
    return doc


def write_sweep_files(root: Path, seeds: list[int], command: str) -> dict:
    """``seeds.csv`` and ``seeds_summary.yaml`` for the seeds of ``seeds`` whose run has finished
    (``summary.yaml`` written); returns the summary."""
    rows = [seed_row(root, s) for s in seeds if (seed_dir(root, s) / "summary.yaml").is_file()]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SEED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(root / "seeds.csv", buffer.getvalue())
    summary = summarize_seeds(rows, command)
    write_atomic(root / "seeds_summary.yaml", yaml.safe_dump(summary, sort_keys=False))
    return summary
