"""Make (or extend) an answer key: certified hindsight optima of one scenario and env id, as shipped data.

    python scripts/make_answer_key.py --scenario table1 --env CrossBorderRouting-v0 --seeds 1000-1099 --workers 2

Each seed is solved with no time limit to ``mip_gap`` 1e-4 (:data:`evaluation.answer_key.CERTIFIED_GAP`), its
plan replayed through the env, and the row written to ``evaluation/keys/<scenario>__<env id>.csv`` (``--out``
for another folder). Seeds already in the file with a valid row are kept, not solved again, so an interrupted
run resumes; the file is rewritten whole after each seed. The standard sets are seeds 1000-1099 of ``table1``,
``table1-det``, ``promo`` and ``scarce`` for each env id, and at least 10 seeds of ``large``. A key that will take
more than one sitting is made in ``--out evaluation/keys/partial`` (its rows answer all the same) and moved up a
folder once it holds every standard seed.
``--backend ray [--ray-address HOST:PORT]`` solves the seeds across a Ray cluster (README, "On a Ray cluster").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import solve_hindsight  # noqa: E402
from baselines.solvers import SOLVERS  # noqa: E402
from envs import ENV_IDS, ScenarioError, load_scenario  # noqa: E402
from evaluation.answer_key import (  # noqa: E402
    CERTIFIED_GAP,
    KEY_DIR,
    key_path,
    key_row,
    read_key,
    row_digest,
    row_problem,
    write_key,
)
from evaluation.backends import BACKENDS, BackendError, backend_for  # noqa: E402
from evaluation.policies import EvaluateError  # noqa: E402
from evaluation.runner import parse_seeds  # noqa: E402


def solve_row(context: tuple, seed: int) -> dict:
    """One certified row (runs in a worker)."""
    scenario, env_id, solver = context
    result = solve_hindsight(scenario, seed, env_id, mip_gap=CERTIFIED_GAP, solver=solver)
    if result.status == "optimal" and result.gap > CERTIFIED_GAP:  # the solver's gap measure is not quite ours
        result = solve_hindsight(scenario, seed, env_id, mip_gap=CERTIFIED_GAP / 10, solver=solver)
    if result.status != "optimal" or result.gap > CERTIFIED_GAP:
        raise RuntimeError(f"seed {seed} was not certified (status {result.status}, gap {result.gap:.2e})")
    return key_row(scenario, env_id, result, CERTIFIED_GAP)


def realization_digest(scenario, seed: int) -> str:
    """What the seed's realization holds (its seed aside): seeds with equal digests have the same optimum."""
    real = scenario.sample(seed)
    digest = hashlib.sha256()
    for f in dataclasses.fields(real):
        if f.name != "seed":
            digest.update(np.ascontiguousarray(getattr(real, f.name)).tobytes())
    return digest.hexdigest()


def as_seed(row: dict, seed: int) -> dict:
    """The row of a seed whose realization equals ``row``'s (a deterministic scenario: every seed alike)."""
    out = {**row, "seed": int(seed)}
    out["sha256"] = row_digest(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True, help="a preset name or a YAML/JSON scenario file")
    parser.add_argument("--env", default="CrossBorderDispatch-v0", help=f"env id, one of {list(ENV_IDS)}")
    parser.add_argument("--seeds", required=True, help="seeds: N, A-B or a list (e.g. 1000-1099)")
    parser.add_argument("--solver", default="highs", help=f"MILP solver, one of {list(SOLVERS)} (default: highs)")
    parser.add_argument("--workers", type=int, default=None, help="parallel solves (default: all cores)")
    parser.add_argument("--backend", default="local", help=f"one of {list(BACKENDS)} (default: local)")
    parser.add_argument("--ray-address", default=None, help="HOST:PORT of a running Ray cluster (--backend ray)")
    parser.add_argument("--out", type=Path, default=KEY_DIR, help=f"key folder (default: {KEY_DIR})")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
        if args.env not in ENV_IDS:
            raise EvaluateError(f"--env: {args.env!r} is not an env id; allowed: {list(ENV_IDS)}")
        if args.solver not in SOLVERS:
            raise EvaluateError(f"--solver: {args.solver!r} is not allowed; allowed: {list(SOLVERS)}")
        seeds = parse_seeds(args.seeds)
        backend = backend_for(args.backend, args.workers, args.ray_address)
    except (ScenarioError, EvaluateError, BackendError) as err:
        parser.error(str(err))
    path = key_path(scenario.name, args.env, args.out)
    rows = {s: r for s, r in read_key(path).items() if row_problem(r, scenario, args.env)[0] is None}
    todo = [s for s in seeds if s not in rows]
    groups: dict[str, list[int]] = {}  # equal realizations are solved once (every seed of a deterministic one)
    for seed in todo:
        groups.setdefault(realization_digest(scenario, seed), []).append(seed)
    print(f"{path}: {len(seeds) - len(todo)} of {len(seeds)} seeds already certified; solving {len(groups)} "
          f"distinct realizations of the {len(todo)} others ({backend.workers} workers, {backend.name}, "
          f"{args.solver})", flush=True)  # fmt: skip
    started = time.perf_counter()
    first = {members[0]: members for members in groups.values()}
    try:
        for seed, row in backend.map(solve_row, (scenario, args.env, args.solver), list(first)):
            for member in first[seed]:
                rows[member] = as_seed(row, member)
            write_key(path, list(rows.values()))
            print(f"seed {seed}: objective {row['objective']:,.2f}, bound {row['bound']:,.2f}, gap {row['gap']:.2e}, "
                  f"{row['seconds']:.1f} s" + (f" (and {len(first[seed]) - 1} seeds alike)" if len(first[seed]) > 1
                  else ""), flush=True)  # fmt: skip
    finally:
        backend.close()
    print(f"{len(todo)} seeds solved in {time.perf_counter() - started:.0f} s; {len(rows)} rows in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
