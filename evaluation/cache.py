"""On-disk cache of hindsight solves (JSON, atomic writes), so reruns of train/evaluate do not re-solve.

The key is the scenario's content hash, the env id, the seed, the solve options and the model
version: change any and it is a different entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from baselines.hindsight import HindsightResult, solve_hindsight
from envs.files import write_atomic
from envs.scenario import Scenario, load_scenario

MODEL_VERSION = 1  # bump when the MILP changes what it returns
# The one default location, relative to the working directory like every other path a user gives
# (evaluate.py --cache-dir, train.py's validation optima and the benchmarks all default to it).
DEFAULT_CACHE_DIR = Path(".cache") / "hindsight"


def cache_key(scenario: Scenario, seed: int, env_id: str, time_limit: float | None, mip_gap: float) -> str:
    spec = {
        "scenario": scenario.content_hash(),
        "env_id": env_id,
        "seed": int(seed),
        "time_limit": time_limit,
        "mip_gap": mip_gap,
        "model_version": MODEL_VERSION,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def cached_hindsight(
    scenario: str | Path | Scenario,
    seed: int,
    env_id: str = "CrossBorderDispatch-v0",
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    time_limit: float | None = None,
    mip_gap: float = 0.0,
) -> HindsightResult:
    """:func:`baselines.solve_hindsight` through a JSON cache in ``cache_dir`` (one file per key)."""
    scen = load_scenario(scenario)
    key = cache_key(scen, seed, env_id, time_limit, mip_gap)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", scen.name)  # a readable prefix; the key alone identifies the entry
    path = Path(cache_dir) / f"{label}-{env_id}-seed{int(seed)}-{key[:16]}.json"
    if path.exists():
        try:
            return HindsightResult.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError):
            pass  # a corrupt or outdated entry is re-solved and overwritten
    result = solve_hindsight(scen, int(seed), env_id, time_limit=time_limit, mip_gap=mip_gap)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result.to_json()))
    return result
