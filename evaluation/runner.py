"""Parallel, resumable episode runner behind ``evaluate.py``.

A *row* is one policy played on one seed (the realization ``scenario.sample(seed)``),
or the hindsight MILP of that seed: solved once and cached on disk by
:func:`evaluation.cache.cached_hindsight`, then its plan is replayed through the env so that
its KPIs come from the same code as every policy's. A row is a pure function of
(policy, seed): every policy is ``reset(seed)`` before its episode, so the results do
not depend on the number of workers nor on the order rows finish in. Only the
timing columns (:data:`TIMING_COLUMNS`) change from one run to the next, and the
outcome of a solve cut by a time limit (hindsight ``--time-limit``, the rolling
MILP's per-day limit), which depends on machine speed.

The output folder (``--out``) while a run is under way::

    config.json                  identity of the run and package versions, written before any row
    scenario.yaml                the resolved scenario
    rows/<policy>__<seed>.json   one finished row each, written whole (temp file + os.replace)

:mod:`evaluation.report` assembles ``episodes.csv`` and the rest once every row exists.
An interrupted run leaves only whole files; the same command then computes only the
missing rows, and a finished run rerun writes nothing.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import pandas as pd
import yaml

from baselines.rolling import RollingHorizonPolicy
from envs.dynamics import KPI_NAMES
from envs.files import folder_problem, remove_stale, write_atomic
from envs.layout import ENV_IDS
from envs.reward import TERM_NAMES
from envs.scenario import Scenario, ScenarioError, load_scenario
from evaluation.answer_key import CERTIFIED_GAP
from evaluation.backends import LocalBackend, RayBackend, cached
from evaluation.cache import DEFAULT_CACHE_DIR, cached_hindsight
from evaluation.episode import EpisodeResult, PlanReplay, run_episode
from evaluation.policies import (
    HINDSIGHT,
    EvaluateError,
    PolicySpec,
    build_policy,
    check_agent,
    parse_policies,
    rolling_options,
)
from evaluation.provenance import package_versions
from evaluation.timeline import episode_timeline

MILP_COLUMNS = ("milp_status", "milp_objective", "milp_bound", "milp_gap", "milp_seconds")
# one row file holds these keys; report.py adds hindsight_return, ratio_to_optimum and ratio_to_bound
ROW_COLUMNS = ("policy", "seed", "return", *TERM_NAMES, *KPI_NAMES, "steps", "decision_seconds_per_step", *MILP_COLUMNS)
TIMING_COLUMNS = ("decision_seconds_per_step", "milp_seconds")  # wall-clock: the only columns that vary run to run
REPLAY_RTOL = 1e-6  # the exactness contract: the hindsight plan replays to its objective within this
CONFIG_FILE = "config.json"
SCENARIO_FILE = "scenario.yaml"
ROWS_DIR = "rows"
_SEED_ITEM = re.compile(r"^([0-9]+)(?:-([0-9]+))?$", re.ASCII)  # ASCII digits only ("١٢" is not 12)
MAX_SEED = 2**32 - 1  # every library on the way (numpy, gymnasium, the row files) takes these as they are
MAX_SEEDS = 100_000  # seeds per run


# ------------------------------------------------------------------ parsing
def parse_seeds(text: str, flag: str = "--seeds") -> tuple[int, ...]:
    """``"1000-1099"``, ``"1,5,9-12"`` -> seeds in the order given (ranges inclusive, no duplicates)."""
    allowed = "a seed N, a range A-B with A <= B, or a comma-separated list of these (e.g. 1000-1099 or 1,5,9-12)"
    seeds: list[int] = []
    for item in text.split(","):
        m = _SEED_ITEM.match(item.strip())
        if m is None:
            raise EvaluateError(f"{flag}: {item.strip()!r} is malformed; allowed: {allowed}")
        start = int(m[1])
        end = int(m[2]) if m[2] is not None else start
        if end > MAX_SEED:
            raise EvaluateError(f"{flag}: {item.strip()!r} goes past the largest seed, {MAX_SEED}; allowed: {allowed}")
        if end < start:
            raise EvaluateError(
                f"{flag}: range {item.strip()!r} is empty (end {end} < start {start}); allowed: {allowed}"
            )
        if len(seeds) + end - start + 1 > MAX_SEEDS:
            raise EvaluateError(f"{flag}: more than {MAX_SEEDS:,} seeds; split the study into several runs")
        seeds.extend(range(start, end + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1}) if len(seeds) != len(set(seeds)) else []
    if repeated:
        raise EvaluateError(f"{flag}: seeds {repeated[:10]} are listed more than once; list each seed once")
    return tuple(seeds)


# --------------------------------------------------------------- resolution
@dataclass(frozen=True)
class EvalRun:
    """A validated run: everything a worker needs to compute any row (picklable)."""

    scenario: Scenario
    env_id: str
    policies: tuple[PolicySpec, ...]  # the hindsight MILP first
    seeds: tuple[int, ...]
    time_limit: float | None  # seconds per hindsight solve; None = certify (or prove, hindsight_mip_gap 0)
    cache_dir: str  # hindsight cache folder
    scenario_source: str = ""  # the preset name or file the scenario came from, as given
    warnings: tuple[str, ...] = field(default=(), compare=False)  # things worth telling, not errors
    hindsight_mip_gap: float = CERTIFIED_GAP  # the certificate: a replayed plan and a bound within this gap

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.policies]

    def tasks(self) -> list[tuple[str, int]]:
        """Every (policy, seed) row, seed by seed so early rows cover whole seeds."""
        return [(p.label, s) for s in self.seeds for p in self.policies]

    def identity(self) -> dict:
        """The part of ``config.json`` that must match for an output folder to be resumed."""
        return {
            "scenario": {"name": self.scenario.name, "content_hash": self.scenario.content_hash()},
            "env_id": self.env_id,
            "policies": [p.identity() for p in self.policies],
            "seeds": list(self.seeds),
            "hindsight_time_limit": self.time_limit,
            "hindsight_mip_gap": self.hindsight_mip_gap,
        }

    def describe(self) -> dict:
        """The resolved configuration (identity plus where things came from), for ``config.json``."""
        doc = self.identity()
        doc["scenario"]["source"] = self.scenario_source
        doc["policies"] = [
            {k: v for k, v in vars(p).items() if v is not None and k != "payload"} for p in self.policies
        ]  # with paths
        doc["hindsight_cache_dir"] = self.cache_dir
        return doc


def resolve_run(
    scenario: str,
    env_id: str,
    policies: str,
    seeds: str,
    time_limit: float | None = None,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    rolling: dict | None = None,
    trust_checkpoint: bool = False,
) -> EvalRun:
    """Validate every input before any work: raises :class:`EvaluateError` naming the option at fault.

    Agents are loaded here once, to check that each fits the env id, observation and action
    space; an agent trained on another scenario of the same shape is allowed, with a warning.
    ``rolling`` sets the rolling-horizon MILP's ``window``, ``time_limit`` and ``mip_gap`` (``None`` values
    keep its defaults); the resolved values are part of the run's identity. ``trust_checkpoint`` allows agents
    in the old pickle-based format (which can run code when read; see :mod:`agents.checkpoint`).
    """
    if env_id not in ENV_IDS:
        raise EvaluateError(f"--env: {env_id!r} is not an env id; allowed: {list(ENV_IDS)}")
    try:
        resolved = load_scenario(scenario)
    except ScenarioError as err:
        raise EvaluateError(f"--scenario: {err}") from None
    seed_list = parse_seeds(seeds)
    specs = parse_policies(policies)
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise EvaluateError(f"--time-limit: {time_limit!r} must be a number of seconds > 0 (or omitted: no limit)")
    warnings: list[str] = []
    checked: list[PolicySpec] = [PolicySpec(HINDSIGHT, "hindsight")]
    options = rolling_options(rolling or {}, any(spec.label == RollingHorizonPolicy.name for spec in specs))
    for spec in specs:
        if spec.kind == "agent":
            spec, warning = check_agent(replace(spec, trusted=trust_checkpoint), resolved, env_id)
            warnings.extend(warning)
        if spec.label == RollingHorizonPolicy.name:
            spec = replace(spec, options=options)
        if spec.kind != "hindsight":
            checked.append(spec)
    return EvalRun(
        resolved, env_id, tuple(checked), seed_list, time_limit, str(cache_dir), str(scenario), tuple(warnings)
    )


# ------------------------------------------------------------- output folder
def check_out(out: Path, run: EvalRun) -> None:
    """Refuse, before any work, an ``--out`` that holds something else than this run, or cannot be written,
    and a ``--cache-dir`` that cannot be written."""
    for flag, folder in (("--out", out), ("--cache-dir", Path(run.cache_dir))):
        problem = folder_problem(folder)
        if problem is not None:
            raise EvaluateError(f"{flag}: {problem}; choose a folder you can write in")
    if not out.is_dir():
        return
    config = out / CONFIG_FILE
    if not config.is_file():
        if any(out.iterdir()):
            raise EvaluateError(
                f"--out: {str(out)!r} is not empty and holds no {CONFIG_FILE}, so it is not an evaluate.py output "
                "folder; choose a new or empty folder"
            )
        return
    try:
        before = json.loads(config.read_text())["run"]
        before = {
            **before,
            "scenario": {k: before["scenario"].get(k) for k in ("name", "content_hash")},  # not where it came from
            "policies": [PolicySpec(**p).identity() for p in before["policies"]],  # not where checkpoints lie
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise EvaluateError(f"--out: {str(config)!r} is unreadable ({err}); choose a new folder") from None
    now = run.identity()
    differ = [k for k in now if before.get(k) != now[k]]
    if differ:
        details = "; ".join(f"{k}: was {_readable(k, before.get(k))}, now {_readable(k, now[k])}" for k in differ)
        raise EvaluateError(
            f"--out: {str(out)!r} holds another run ({details}); rerun with the same options to resume it, "
            "or choose a new folder"
        )


def init_out(out: Path, run: EvalRun, report_config: dict) -> list[str]:
    """Create ``out`` and write ``config.json`` and ``scenario.yaml`` (unchanged files are not rewritten).

    The package versions recorded are those of the run's first start; a resume under other versions
    keeps them and returns a warning.
    """
    (out / ROWS_DIR).mkdir(parents=True, exist_ok=True)
    for folder in (out, out / ROWS_DIR):
        remove_stale(folder)  # left by a kill in the middle of a write
    versions = package_versions()
    warnings = []
    config = out / CONFIG_FILE
    if config.is_file():
        recorded = json.loads(config.read_text()).get("versions", {})
        if recorded.get("packages") != versions["packages"]:
            warnings.append(f"{config} records other package versions; rows computed before keep them")
        versions = recorded
    doc = {"run": run.describe(), "report": report_config, "versions": versions}
    write_atomic(config, json.dumps(doc, indent=1) + "\n", if_changed=True)
    write_atomic(out / SCENARIO_FILE, yaml.safe_dump(run.scenario.to_dict(), sort_keys=False), if_changed=True)
    return warnings


def _readable(key: str, value) -> str:
    """An identity field in a few words, for the message of a mismatched output folder."""
    if key == "policies" and isinstance(value, list):
        value = ",".join(p["label"] + (f"@{p['checkpoint_sha256']}" if p["checkpoint_sha256"] else "") for p in value)
    elif key == "seeds" and isinstance(value, list):
        value = format_seeds(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 160 else text[:157] + "..."


def format_seeds(seeds: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (the inverse of :func:`parse_seeds`)."""
    parts: list[str] = []
    seeds = list(seeds)
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


# ---------------------------------------------------------------------- rows
def row_path(out: Path, label: str, seed: int) -> Path:
    return out / ROWS_DIR / f"{label}__{seed}.json"


def missing_tasks(out: Path, run: EvalRun) -> list[tuple[str, int]]:
    """The rows still to compute. A row file that is not a whole row (damaged on disk: rows are written whole)
    is named in a warning, removed and computed again."""
    missing = []
    for label, seed in run.tasks():
        path = row_path(out, label, seed)
        if path.is_file() and _row_problem(path, label, seed) is None:
            continue
        if path.is_file():
            print(
                f"warning: {path} is damaged ({_row_problem(path, label, seed)}); computing it again", file=sys.stderr
            )
            path.unlink()
        missing.append((label, seed))
    return missing


def _row_problem(path: Path, label: str, seed: int) -> str | None:
    try:
        row = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        return f"not JSON: {err}"
    if not isinstance(row, dict) or set(row) != set(ROW_COLUMNS):
        return "not a row of this version"
    if row["policy"] != label or row["seed"] != seed:
        return f"holds policy {row['policy']!r} seed {row['seed']!r}"
    return None


def read_rows(out: Path, run: EvalRun) -> list[dict]:
    """Every row of the run, policy by policy in the run's order, seeds in the order given."""
    rows = []
    for label in run.labels:
        for seed in run.seeds:
            path = row_path(out, label, seed)
            problem = _row_problem(path, label, seed) if path.is_file() else "missing"
            if problem is not None:
                raise RuntimeError(f"{path}: {problem}; rerun the same command to compute it again")
            rows.append(json.loads(path.read_text()))
    return rows


def save_row(out: Path, row: dict) -> None:
    write_atomic(row_path(out, row["policy"], row["seed"]), json.dumps(row, allow_nan=False) + "\n", if_changed=True)


def compute_rows(
    out: Path,
    run: EvalRun,
    tasks: list[tuple[str, int]],
    backend: LocalBackend | RayBackend,
    on_row: Callable[[dict], None] = lambda row: None,
) -> None:
    """Compute ``tasks`` on ``backend`` and save each row as soon as it is done (so a kill loses only rows in
    flight; a task retried after a lost worker writes the same bytes). The first failing row stops the run;
    rows saved so far are kept."""
    for _, row in backend.map(row_task, run, tasks):
        save_row(out, row)
        on_row(row)


def row_task(run: EvalRun, task: tuple[str, int]) -> dict:
    """One row, wherever it runs: the envs and policies of ``run`` are built once per worker process."""
    label, seed = task
    return cached(run, _WorkerContext).row(label, seed)


class _WorkerContext:
    """Envs and policies of one process, built on first use and reused across its rows."""

    def __init__(self, run: EvalRun) -> None:
        self.run = run
        self.specs = {p.label: p for p in run.policies}
        self.envs: dict[int | None, gym.Env] = {}
        self.policies: dict[str, object] = {}
        if any(p.kind == "agent" for p in run.policies):
            import torch  # deferred: only runs with an agent need torch

            torch.set_num_threads(1)  # the workers already use the cores; more threads per worker only contend

    def env(self, forecast_days: int | None) -> gym.Env:
        if forecast_days not in self.envs:
            kwargs = {} if forecast_days is None else {"forecast_days": forecast_days}
            self.envs[forecast_days] = gym.make(self.run.env_id, scenario=self.run.scenario, **kwargs)
        return self.envs[forecast_days]

    def policy(self, spec: PolicySpec):
        if spec.label not in self.policies:
            self.policies[spec.label] = build_policy(spec, self.run.scenario, self.run.env_id)
        return self.policies[spec.label]

    def row(self, label: str, seed: int) -> dict:
        spec = self.specs[label]
        if spec.kind == "hindsight":
            return self._hindsight_row(seed)
        env = self.env(spec.forecast_days)
        policy = self.policy(spec)
        result = run_episode(env, policy, seed)
        row = _episode_row(label, seed, result)
        row.update(_milp_stats(policy))
        return row

    def hindsight(self, seed: int):
        """The seed's optimum: the answer key's certified row, else the cache, else a solve."""
        run = self.run
        return cached_hindsight(run.scenario, seed, env_id=run.env_id, cache_dir=run.cache_dir,
                                time_limit=run.time_limit, mip_gap=run.hindsight_mip_gap)  # fmt: skip

    def _hindsight_row(self, seed: int) -> dict:
        solved = self.hindsight(seed)
        result = run_episode(self.env(None), PlanReplay(solved.plan, name=HINDSIGHT), seed)
        if abs(result.episode_return - solved.objective) > REPLAY_RTOL * max(1.0, abs(solved.objective)):
            raise RuntimeError(
                f"the hindsight plan of seed {seed} ({solved.extra.get('cache_file', 'solved now')}) replays to "
                f"{result.episode_return!r} but its MILP objective is {solved.objective!r}: the exactness contract is "
                "broken (a bug in the env or the MILP; the entry's checksum held, so it is not an edit)"
            )
        row = _episode_row(HINDSIGHT, seed, result)
        row.update(
            decision_seconds_per_step=solved.seconds / max(result.steps, 1),
            milp_status=str(solved.status),
            milp_objective=float(solved.objective),
            milp_bound=_finite_or_none(solved.bound),
            milp_gap=_finite_or_none(solved.gap),
            milp_seconds=float(solved.seconds),
        )
        return row


def _episode_row(label: str, seed: int, result: EpisodeResult) -> dict:
    row = dict.fromkeys(ROW_COLUMNS)
    row.update(policy=label, seed=int(seed), steps=result.steps)
    row["return"] = float(result.episode_return)
    row.update({name: float(result.terms[name]) for name in TERM_NAMES})
    row.update({name: float(result.kpis[name]) for name in KPI_NAMES})
    row["decision_seconds_per_step"] = result.decision_seconds / max(result.steps, 1)
    return row


def _milp_stats(policy) -> dict:
    """Status and solve time of a rolling-horizon MILP's episode (its per-day ``statuses`` and ``solve_seconds``).

    The status is ``"optimal"`` when every day's window was solved to optimality, else the first other
    status and on how many days. Bound and gap stay empty: each day solves a different window model,
    so an episode has no bound (the hindsight row of the seed is the bound).
    """
    statuses = getattr(policy, "statuses", None)
    if statuses is None:
        return {}
    other = [str(s) for s in statuses if s != "optimal"]
    status = "optimal" if not other else f"{other[0]} on {len(other)} of {len(statuses)} days"
    return {"milp_status": status, "milp_seconds": float(sum(policy.solve_seconds))}


def _finite_or_none(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def timelines(run: EvalRun, seeds: Iterable[int]) -> dict[int, pd.DataFrame]:
    """Per seed, every policy's day-by-day :func:`evaluation.timeline.episode_timeline` (the hindsight optimum's
    plan from the cache the run filled), played here in this process."""
    context = _WorkerContext(run)
    out = {}
    for seed in seeds:
        frames = []
        for spec in run.policies:
            if spec.kind == "hindsight":
                env, policy = context.env(None), PlanReplay(context.hindsight(seed).plan, name=HINDSIGHT)
            else:
                env, policy = context.env(spec.forecast_days), context.policy(spec)
            frames.append(episode_timeline(env, policy, seed, label=spec.label))
        out[int(seed)] = pd.concat(frames, ignore_index=True)
    return out


def shippable(run: EvalRun, backend) -> EvalRun:
    """The run as tasks on ``backend`` need it: on Ray, each agent travels with its files' bytes (data only:
    weights, statistics, YAML), so a worker on another machine loads the same checkpoint without its path."""
    if backend.name != "ray":
        return run
    return replace(run, policies=tuple(p.with_payload() if p.kind == "agent" else p for p in run.policies))
