"""On-disk cache of hindsight solves (JSON, atomic writes), so reruns of train/evaluate do not re-solve.

The key is the scenario's content hash, the env id, the seed, the solve options and the model
version: change any and it is a different entry. An entry is data that is checked before it is
used: it carries the SHA-256 of its own content and the spec it answers, and its plan must have the
shape of the env's actions. An entry that fails (edited, truncated, of another spec, of the wrong
shape) is named in a :class:`CacheWarning`, discarded and solved again; only then is it trusted as
far as a checksum can (``evaluation.runner`` still replays every plan through the env and compares).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from baselines.hindsight import HindsightResult, solve_hindsight
from baselines.milp_model import MODEL_VERSION
from envs.files import write_atomic
from envs.layout import action_layout, decisions_of
from envs.scenario import Scenario, load_scenario
from evaluation.answer_key import CERTIFIED_GAP, KEY_DIR, lookup

# The one default location, relative to the working directory like every other path a user gives
# (evaluate.py --cache-dir, train.py's validation optima and the benchmarks all default to it).
DEFAULT_CACHE_DIR = Path(".cache") / "hindsight"


def cache_spec(scenario: Scenario, seed: int, env_id: str, time_limit: float | None, mip_gap: float) -> dict:
    """What an entry answers: the solve's inputs and the model version."""
    return {
        "scenario": scenario.content_hash(),
        "env_id": env_id,
        "seed": int(seed),
        "time_limit": time_limit,
        "mip_gap": mip_gap,
        "model_version": MODEL_VERSION,
    }


def cache_key(scenario: Scenario, seed: int, env_id: str, time_limit: float | None, mip_gap: float) -> str:
    spec = cache_spec(scenario, seed, env_id, time_limit, mip_gap)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class CacheWarning(UserWarning):
    """A cache entry was refused and is being solved again (the message names the file and why)."""


def _digest(result: dict) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _entry_problem(doc, spec: dict, scenario: Scenario, env_id: str) -> str | None:
    """Why a cache file's content cannot be used as the answer to ``spec``; None when it can."""
    if not isinstance(doc, dict) or set(doc) != {"spec", "result", "sha256"}:
        return "not a cache entry of this version (keys spec, result, sha256)"
    if doc["spec"] != spec:
        return f"it answers another question ({doc['spec']!r})"
    if doc["sha256"] != _digest(doc["result"]):
        return "its content does not match its checksum (edited or damaged)"
    result = doc["result"]
    nvec = gym_action_size(scenario, env_id)
    plan = result.get("plan")
    if not isinstance(plan, list) or len(plan) != scenario.horizon_days:
        return f"its plan is not {scenario.horizon_days} daily actions"
    if any(not isinstance(a, list) or len(a) != nvec for a in plan):
        return f"its plan's actions are not {nvec} slots long"
    if result.get("status") not in ("optimal", "time_limit"):
        return f"its status {result.get('status')!r} is not 'optimal' or 'time_limit'"
    return None


def gym_action_size(scenario: Scenario, env_id: str) -> int:
    return action_layout(scenario.network, decisions_of(env_id)).size


def cached_hindsight(
    scenario: str | Path | Scenario,
    seed: int,
    env_id: str = "CrossBorderDispatch-v0",
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
    key_dir: str | Path | None = KEY_DIR,
) -> HindsightResult:
    """:func:`baselines.solve_hindsight` through the shipped answer key (:mod:`evaluation.answer_key`) and a JSON
    cache in ``cache_dir`` (one file per key).

    A key row (from ``key_dir``; None: no key) answers when it can do no worse than the request: a time-limited
    solve, or a gap of at least :data:`~evaluation.answer_key.CERTIFIED_GAP` (``mip_gap=0``, an exact proof, is
    always solved). Its result carries ``extra["answer_key"]`` (the file) and took no solver time (``seconds`` 0).
    """
    scen = load_scenario(scenario)
    if key_dir is not None and (time_limit is not None or mip_gap >= CERTIFIED_GAP):
        keyed = lookup(scen, env_id, int(seed), Path(key_dir))
        if keyed is not None:
            return keyed
    key = cache_key(scen, seed, env_id, time_limit, mip_gap)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", scen.name)  # a readable prefix; the key alone identifies the entry
    path = Path(cache_dir) / f"{label}-{env_id}-seed{int(seed)}-{key[:16]}.json"
    spec = cache_spec(scen, seed, env_id, time_limit, mip_gap)
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            problem = _entry_problem(doc, spec, scen, env_id)
            if problem is None:
                result = HindsightResult.from_json(doc["result"])
                result.extra["cache_file"] = str(path)  # for messages; not part of the stored content
                return result
        except (UnicodeDecodeError, ValueError, TypeError, KeyError) as err:  # JSONDecodeError is a ValueError
            problem = f"unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"hindsight cache entry {path} refused: {problem}; solving seed {seed} again", CacheWarning,
                      stacklevel=2)  # fmt: skip
    result = solve_hindsight(scen, int(seed), env_id, time_limit=time_limit, mip_gap=mip_gap)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = result.to_json()
    write_atomic(path, json.dumps({"spec": spec, "result": content, "sha256": _digest(content)}))
    result.extra["cache_file"] = str(path)
    return result
