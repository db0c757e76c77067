"""The answer key: certified hindsight optima shipped as data, so evaluating the standard seeds costs no solver time.

One CSV file per (scenario, env id) in ``evaluation/keys/`` (``<scenario>__<env id>.csv``), one row per seed:

| column | meaning |
|---|---|
| ``scenario``, ``content_hash`` | the scenario's name and :meth:`Scenario.content_hash` (the content it answers) |
| ``env_id``, ``seed`` | the env id and realization seed |
| ``objective``, ``bound``, ``gap`` | USD return of the plan, the solver's bound on the optimum, their relative gap |
| ``status``, ``mip_gap`` | ``optimal`` within the requested ``mip_gap`` (certified: gap <= :data:`CERTIFIED_GAP`) |
| ``solver``, ``solver_version``, ``model_version`` | what proved it (``model_version``: the MILP's, see the cache) |
| ``seconds`` | build + solve wall time on the machine that made the row |
| ``days``, ``action_size``, ``plan`` | the plan: ``days`` actions of ``action_size`` integers, space-separated |
| ``sha256`` | checksum of the other columns (an edit that does not recompute it is refused) |

:func:`lookup` returns a row as a :class:`baselines.hindsight.HindsightResult` only after replaying its plan through
the env to its objective (1e-6 relative); a row whose hash, checksum, shape, status, gap or replay does not hold is
refused with a :class:`AnswerKeyWarning` naming the file and the seed, and the caller solves that seed instead.
Regenerate a key with ``python scripts/make_answer_key.py`` (its ``--help`` gives the standard sets).

A key still being made (fewer rows than the standard seeds; ``make_answer_key.py --out evaluation/keys/partial``
resumes it) lives in the key folder's ``partial/`` subfolder: its rows answer like any other, and the file moves
up a folder once it holds every standard seed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from baselines.hindsight import HindsightResult, replay_plan
from baselines.milp_model import MODEL_VERSION
from envs.files import write_atomic
from envs.layout import action_layout, decisions_of
from envs.scenario import Scenario
from evaluation.metrics import relative_gap

KEY_DIR = Path(__file__).resolve().parent / "keys"
PARTIAL = "partial"  # the key folder's subfolder of keys still being made (they answer too)
CERTIFIED_GAP = 1e-4  # "certified": a replayed plan and a bound within this relative gap (HiGHS's default)
REPLAY_RTOL = 1e-6
COLUMNS = ["scenario", "content_hash", "env_id", "seed", "objective", "bound", "gap", "status", "mip_gap", "solver",
           "solver_version", "model_version", "seconds", "days", "action_size", "plan", "sha256"]  # fmt: skip


class AnswerKeyWarning(UserWarning):
    """A key row was refused (the message names the file, the seed and why); that seed is solved instead."""


def key_path(scenario_name: str, env_id: str, folder: Path | None = None) -> Path:
    return (KEY_DIR if folder is None else Path(folder)) / f"{scenario_name}__{env_id}.csv"


def row_digest(row: dict) -> str:
    fields = [f"{name}={row[name]!r}" for name in COLUMNS if name != "sha256"]
    return hashlib.sha256("\n".join(fields).encode()).hexdigest()


def key_row(scenario: Scenario, env_id: str, result: HindsightResult, mip_gap: float) -> dict:
    """The row of one solved seed (checksummed)."""
    plan = np.asarray(result.plan, dtype=np.int64)
    row = {
        "scenario": scenario.name, "content_hash": scenario.content_hash(), "env_id": env_id,
        "seed": int(result.seed), "objective": float(result.objective), "bound": float(result.bound),
        "gap": float(result.gap), "status": str(result.status), "mip_gap": float(mip_gap),
        "solver": str(result.extra.get("solver", "highs")), "solver_version": str(result.extra.get("solver_version")),
        "model_version": int(MODEL_VERSION), "seconds": round(float(result.seconds), 3), "days": int(plan.shape[0]),
        "action_size": int(plan.shape[1]), "plan": " ".join(map(str, plan.ravel().tolist())),
    }  # fmt: skip
    row["sha256"] = row_digest(row)
    return row


def write_key(path: Path, rows: list[dict]) -> None:
    """Write the key file whole (sorted by seed), or not at all."""
    frame = pd.DataFrame(sorted(rows, key=lambda r: r["seed"]), columns=COLUMNS)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.17g")  # round-trips every float exactly
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


@functools.lru_cache(maxsize=64)
def _read(path: str, mtime_ns: int) -> dict[int, dict]:
    """The file's rows by seed, as written (strings parsed back to the written types); cached per file version."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != COLUMNS:
        raise ValueError(f"its columns are {list(frame.columns)}, not {COLUMNS}")
    rows = {}
    for raw in frame.to_dict("records"):
        row = dict(raw)
        for name in ("objective", "bound", "gap", "mip_gap", "seconds"):
            row[name] = float(row[name])
        for name in ("seed", "model_version", "days", "action_size"):
            row[name] = int(row[name])
        rows[row["seed"]] = row
    return rows


def read_key(path: Path) -> dict[int, dict]:
    """Rows by seed of a key file ({} when there is none); a file that cannot be read is one warning, no rows."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return _read(str(path), path.stat().st_mtime_ns)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, pd.errors.ParserError) as err:
        warnings.warn(f"answer key {path} refused: unreadable ({err}); its seeds are solved instead",
                      AnswerKeyWarning, stacklevel=2)  # fmt: skip
        return {}


def row_problem(row: dict, scenario: Scenario, env_id: str) -> tuple[str | None, dict | None]:
    """``(why row cannot answer (scenario, env id, its seed), None)``, or ``(None, the replayed plan's terms)``
    when it can: the checks, then the replay through the env."""
    problem = _static_problem(row, scenario, env_id)
    if problem is not None:
        return problem, None
    size = action_layout(scenario.network, decisions_of(env_id)).size
    plan = np.array(row["plan"].split(), dtype=np.int64).reshape(row["days"], size)
    try:
        total, terms = replay_plan(scenario, row["seed"], env_id, list(plan))
    except ValueError as err:  # an action out of the action space
        return f"its plan is not playable ({err})", None
    if abs(total - row["objective"]) > REPLAY_RTOL * max(1.0, abs(row["objective"])):
        return f"its plan replays to {total!r}, not to its objective {row['objective']!r}", None
    return None, terms


def _static_problem(row: dict, scenario: Scenario, env_id: str) -> str | None:
    if row["sha256"] != row_digest(row):
        return "its content does not match its checksum (edited or damaged)"
    if row["content_hash"] != scenario.content_hash() or row["scenario"] != scenario.name:
        return f"it was made for another version of scenario {row['scenario']!r} (content hash differs): stale"
    if row["env_id"] != env_id or row["model_version"] != MODEL_VERSION:
        return f"it answers env id {row['env_id']!r} with MILP model version {row['model_version']}"
    if row["status"] != "optimal" or not row["bound"] >= row["objective"]:
        return f"its status is {row['status']!r} with bound {row['bound']!r} < objective {row['objective']!r}"
    if abs(relative_gap(row["bound"], row["objective"]) - row["gap"]) > 1e-12 or row["gap"] > CERTIFIED_GAP:
        return f"its gap {row['gap']!r} is not certified (<= {CERTIFIED_GAP:g}) or not its bound's and objective's"
    size = action_layout(scenario.network, decisions_of(env_id)).size
    try:
        plan = np.array(row["plan"].split(), dtype=np.int64)
    except ValueError:
        return "its plan is not integers"
    if row["days"] != scenario.horizon_days or row["action_size"] != size or plan.size != row["days"] * size:
        return f"its plan is not {scenario.horizon_days} actions of {size} slots"
    return None


def lookup(scenario: Scenario, env_id: str, seed: int, folder: Path | None = None) -> HindsightResult | None:
    """The key's certified optimum of (scenario, env id, seed) after a replay check, else None (no row, or a refused
    row: an :class:`AnswerKeyWarning` names the file and the seed). The folder's ``partial/`` keys answer too."""
    base = KEY_DIR if folder is None else Path(folder)
    for path in (key_path(scenario.name, env_id, base), key_path(scenario.name, env_id, base / PARTIAL)):
        row = read_key(path).get(int(seed))
        if row is not None:
            break
    else:
        return None
    problem, terms = row_problem(row, scenario, env_id)
    if problem is not None:
        warnings.warn(f"answer key {path}, seed {seed} refused: {problem}; solving seed {seed} instead",
                      AnswerKeyWarning, stacklevel=2)  # fmt: skip
        return None
    plan = np.array(row["plan"].split(), dtype=np.int64).reshape(row["days"], row["action_size"])
    return HindsightResult(
        status="optimal", objective=row["objective"], bound=row["bound"], gap=row["gap"], seconds=0.0,
        rows=0, cols=0, integers=0, plan=list(plan), terms=terms, seed=row["seed"], env_id=env_id,
        extra={"answer_key": str(path), "solver": row["solver"], "solver_version": row["solver_version"],
               "key_seconds": row["seconds"]},
    )  # fmt: skip
