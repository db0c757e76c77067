"""Benchmark of the MILP baselines; prints the ``## MILP baselines`` section of bench/RESULTS.md.

1. Hindsight MILP on every preset (CrossBorderDispatch-v0, seed 0): model size, build and solve time,
   status, gap; ``large`` and the hard presets under a time limit.
2. How the model grows with days T (table1 cut to fewer days) and across presets (W, R, K).
3. A second open solver (CBC, bundled with PuLP) on the same exported MPS: objectives agree, time ratio.
4. Rolling-horizon decision time per day on table1 (windows 7-28), and its return beside the heuristics.
5. Monolith and SKU decomposition with HiGHS and SCIP on the same model: gap after 10 / 60 s, time to 1e-4.
6. Time to a certified optimum (gap <= 1e-4, no time limit) on many seeds: branch-and-price over the SKUs (the
   default of ``solve_hindsight``) with its SKU solves on ``--pricing-workers`` processes, and the whole model
   on ``--monolith-seeds`` of them in the same run (a reference for the ratio).

Run: ``python bench/bench_milp.py [--time-limit 60] [--large-time-limit 120]``; section 6 alone:
``python bench/bench_milp.py --sections certify --certify-presets table1,promo --certify-seeds 1000-1019``
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import highspy
import numpy as np
import pulp

import envs
from baselines import HEURISTICS, RollingHorizonPolicy, build_hindsight, run_episode, solve_hindsight
from baselines.hindsight import plan_actions, replay_plan
from baselines.milp_solve import solve_model
from envs import Scenario, load_scenario

ENV = "CrossBorderDispatch-v0"
HIGHS_VERSION = getattr(highspy, "__version__", "1.16")


def hindsight_rows(time_limit: float, large_time_limit: float) -> list[str]:
    out = [
        "| preset | W, R, K, T | rows | cols | integers | build s | solve s | status | objective | bound | gap |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for preset in envs.preset_names():
        net = load_scenario(preset).network
        limit = large_time_limit if preset == "large" else (None if preset == "tiny" else time_limit)
        res = solve_hindsight(preset, 0, ENV, time_limit=limit)
        replayed, _ = replay_plan(preset, 0, ENV, res.plan)
        assert abs(replayed - res.objective) <= 1e-6 * max(1.0, abs(res.objective)), (preset, replayed, res.objective)
        out.append(
            f"| {preset} | {net.W}, {net.R}, {net.K}, {net.T} | {res.rows:,} | {res.cols:,} | {res.integers:,} "
            f"| {res.build_seconds:.2f} | {res.solve_seconds:.1f} | {res.status}"
            f"{'' if limit is None else f' (limit {limit:g} s)'} | {res.objective:,.2f} | {res.bound:,.2f} "
            f"| {100 * res.gap:.3f}% |"
        )
        print(out[-1], flush=True)
    return out


def size(m) -> str:
    return f"{m.n_rows:,} | {m.n_cols:,} | {m.n_integers:,} | {m.build_seconds:.2f}"


def growth_rows() -> list[str]:
    out = ["| model | T | rows | cols | integers | build s |", "|---|---:|---:|---:|---:|---:|"]
    base = load_scenario("table1").to_dict()
    for days in (10, 20, 30, 60):
        scen = Scenario.from_dict({**base, "horizon_days": days})
        m = build_hindsight(scen, 0, ENV)
        out.append(
            f"| table1 (W4 R4 K5) | {days} | {m.n_rows:,} | {m.n_cols:,} | {m.n_integers:,} | {m.build_seconds:.2f} |"
        )
    m = build_hindsight("large", 0, ENV)
    out.append(f"| large (W12 R40 K20) | 60 | {size(m)} |")
    m = build_hindsight("table1", 0, ENV, eq5_cuts="all")
    out.append(f"| table1, every Eq.5 cut up front | 30 | {size(m)} |")
    return out


def cbc_path() -> str:
    with warnings.catch_warnings():  # PULP_CBC_CMD is deprecated in PuLP 3; its bundled binary is what we run
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD().path


def run_cbc(mps: Path, time_limit: float) -> tuple[str, float, float]:
    """Solve an MPS file with the bundled CBC binary; return (status line, objective, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [cbc_path(), str(mps), "-sec", str(time_limit), "-ratio", "0", "-allow", "0", "-solve"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    status = next((ln for ln in proc.stdout.splitlines() if ln.startswith("Result - ")), "no result line")
    value = re.search(r"Objective value:\s+(-?[\d.eE+-]+)", proc.stdout)
    return status.removeprefix("Result - "), (float(value.group(1)) if value else float("nan")), seconds


def cbc_rows(time_limit: float) -> list[str]:
    """Export each model after HiGHS proved it optimal (its Eq.5 cuts are then complete at the optimum),
    solve the MPS (a minimization of -return) with CBC, compare."""
    out = [
        "| model | env | HiGHS return | HiGHS s | CBC return | CBC s | CBC status | CBC / HiGHS time |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    cases = [("tiny", e) for e in envs.ENV_IDS] + [
        ("table1", "CrossBorderRouting-v0"),
        ("promo", "CrossBorderRouting-v0"),
    ]
    for preset, env_id in cases:
        model = build_hindsight(preset, 0, env_id)
        sol = solve_model(model, time_limit=time_limit)
        if sol.status != "optimal":
            out.append(f"| {preset} | {env_id} | not proven optimal in {time_limit:g} s | | | | | |")
            continue
        replayed, _ = replay_plan(preset, 0, env_id, plan_actions(model, sol.lot_choice, sol.transfer_choice))
        assert abs(replayed - sol.objective) <= 1e-6 * max(1.0, abs(sol.objective))
        with tempfile.TemporaryDirectory() as tmp:
            mps = Path(tmp) / "model.mps"
            model.write_mps(mps)
            status, value, cbc_s = run_cbc(mps, time_limit)
        agree = "" if abs(-value - sol.objective) <= 1e-6 * max(1.0, abs(sol.objective)) else " **differs**"
        out.append(
            f"| {preset} | {env_id} | {sol.objective:,.4f} | {sol.seconds:.2f} | {-value:,.4f}{agree} | {cbc_s:.2f} "
            f"| {status} | {cbc_s / max(sol.seconds, 1e-3):.1f} |"
        )
        print(out[-1], flush=True)
    return out


def rolling_rows(seeds: tuple[int, ...] = (0, 1, 2)) -> list[str]:
    """The rolling-horizon MILP at several windows (default gap and time limit) beside the heuristics, same seeds."""
    scen = load_scenario("table1")
    env = gym.make(ENV, scenario=scen)
    d = RollingHorizonPolicy.DEFAULTS
    out = [
        f"| policy (table1, seeds {', '.join(map(str, seeds))}) | mean return | decision s/day mean | max "
        "| daily solves ended on the gap |",
        "|---|---:|---:|---:|---|",
    ]
    for window in (7, 14, 21, 28):
        policy = RollingHorizonPolicy(scen, ENV, window=window)
        returns, secs, proven = [], [], 0
        for seed in seeds:
            returns.append(run_episode(env, policy, seed).episode_return)
            secs += policy.solve_seconds
            proven += policy.statuses.count("optimal")
        tag = " (default)" if window == d["window"] else ""
        limit = "no time limit" if d["time_limit"] is None else f"{d['time_limit']:g} s limit"
        out.append(
            f"| rolling-milp, window {window}{tag}, {limit}, {d['node_limit']} nodes, gap {d['mip_gap']:g} "
            f"| {np.mean(returns):,.2f} | {np.mean(secs):.3f} | {np.max(secs):.3f} | {proven}/{len(secs)} |"
        )
        print(out[-1], flush=True)
    for name in ("greedy", "base-stock"):
        results = [run_episode(env, HEURISTICS[name](scen), seed) for seed in seeds]
        per_step = np.mean([r.decision_seconds / r.steps for r in results])
        out.append(f"| {name} | {np.mean([r.episode_return for r in results]):,.2f} | {per_step:.4f} | | |")
    return out


def solver_rows(limits: tuple[float, ...], presets=("table1", "promo"), seed: int = 0) -> list[str]:
    """Monolith and SKU decomposition, HiGHS and SCIP, on the same hindsight model: gap after each time limit
    (mip_gap 1e-4, the certificate), and the time to certify when one of the limits was enough."""
    variants = [("monolith", "highs", False), ("monolith", "scip", False),
                ("decomposition", "highs", True), ("decomposition", "scip", True)]  # fmt: skip
    head = " | ".join(f"gap at {limit:g} s" for limit in limits)
    out = [f"| preset | method | solver | {head} | time to 1e-4 |", "|---|---|---|" + "---:|" * (len(limits) + 1)]
    for preset in presets:
        for method, solver, decompose in variants:
            gaps, certified = [], None
            for limit in limits:
                model = build_hindsight(preset, seed, ENV)
                sol = solve_model(model, time_limit=limit, mip_gap=1e-4, decompose=decompose, solver=solver)
                gaps.append(f"{100 * sol.gap:.3f}%" if sol.found_plan else "no plan")
                if sol.status == "optimal" and certified is None:
                    certified = sol.seconds
                    break  # a longer limit would certify the same way
            gaps += ["(certified)"] * (len(limits) - len(gaps))
            cert = f"{certified:.1f} s" if certified is not None else f"> {max(limits):g} s"
            out.append(f"| {preset} | {method} | {solver} | {' | '.join(gaps)} | {cert} |")
            print(out[-1], flush=True)
    return out


def certify_rows(presets: list[str], seeds: list[int], workers: int, monolith_seeds: int) -> list[str]:
    """Time to certified (gap <= 1e-4, no limit) per seed: branch-and-price (``workers`` processes for the SKU
    solves), and the whole model (HiGHS, its own threads) on the first ``monolith_seeds`` seeds the SKUs alone do
    not certify."""
    from evaluation.backends import LocalBackend

    out = [
        "| preset | seed | method | status | objective | bound | gap | seconds | nodes | SKU bound | root bound |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary = []
    backend = LocalBackend(workers, keep_pool=True) if workers > 1 else None
    try:
        for preset in presets:
            times, compared, uncoupled = [], 0, True
            for seed in seeds:
                runs = [("branch-and-price", True), ("whole model", False)]
                for method, decompose in runs:
                    if not decompose and (compared >= monolith_seeds or uncoupled):
                        continue  # the reference only where the SKUs alone do not settle it (the earlier default
                        # solved the SKUs first, as the first pricing round does, then the whole model)
                    compared += not decompose
                    model = build_hindsight(preset, seed, ENV)
                    sol = solve_model(model, mip_gap=1e-4, decompose=decompose, backend=backend)
                    plan = plan_actions(model, sol.lot_choice, sol.transfer_choice)
                    replayed, _ = replay_plan(preset, seed, ENV, plan)
                    assert abs(replayed - sol.objective) <= 1e-6 * max(1.0, abs(sol.objective)), (preset, seed)
                    st = sol.stats
                    fmt = lambda v: "" if v is None else f"{v:,.2f}"  # noqa: E731
                    out.append(
                        f"| {preset} | {seed} | {method} | {sol.status} | {sol.objective:,.2f} | {sol.bound:,.2f} "
                        f"| {sol.gap:.1e} | {sol.seconds + model.build_seconds:.1f} | {st.get('nodes', '')} "
                        f"| {fmt(st.get('sku_bound'))} | {fmt(st.get('root_bound'))} |"
                    )
                    print(out[-1], flush=True)
                    if decompose:
                        times.append(sol.seconds + model.build_seconds)
                        uncoupled = st.get("master_solves") == 1
            t = np.array(times)
            summary.append(f"| {preset} | {len(t)} | {np.median(t):.1f} | {t.max():.1f} | {t.sum() / 60:.1f} |")
    finally:
        if backend is not None:
            backend.close()
    out += ["", f"Branch-and-price, {workers} worker(s) for the SKU solves:", "",
            "| preset | seeds | median s | max s | total min |", "|---|---:|---:|---:|---:|", *summary]  # fmt: skip
    return out


def _seed_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per hindsight solve (not tiny, large)")
    parser.add_argument("--large-time-limit", type=float, default=120.0, help="seconds for the large preset")
    parser.add_argument("--cbc-time-limit", type=float, default=120.0, help="seconds per solve in the CBC comparison")
    parser.add_argument(
        "--solver-limits", default="10,60", help="time limits (s) of the solver comparison (default: 10,60)"
    )
    parser.add_argument(
        "--sections",
        default="hindsight,growth,cbc,rolling,solvers",
        help="comma-separated subset (default: all but certify, which runs long)",
    )
    parser.add_argument("--certify-presets", default="table1,promo", help="presets of the certify section")
    parser.add_argument("--certify-seeds", default="1000-1019", help="seeds of the certify section, A-B")
    parser.add_argument("--pricing-workers", type=int, default=2, help="processes for the SKU solves (certify)")
    parser.add_argument("--monolith-seeds", type=int, default=0, help="of them, solved whole too (certify)")
    args = parser.parse_args(argv)
    chosen = set(args.sections.split(","))
    allowed = ["hindsight", "growth", "cbc", "rolling", "solvers", "certify"]
    unknown = chosen - set(allowed)
    if unknown:
        parser.error(f"--sections: {sorted(unknown)} not allowed; allowed: {', '.join(allowed)}")
    try:
        solver_limits = tuple(float(x) for x in args.solver_limits.split(","))
    except ValueError:
        parser.error(f"--solver-limits: {args.solver_limits!r} must be comma-separated seconds, e.g. 10,60,600")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"Command: `python bench/bench_milp.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
        f"({stamp}, Python {platform.python_version()}, highspy {HIGHS_VERSION}, "
        f"PuLP {pulp.__version__} CBC, 2 CPUs shared with other jobs).\n"
    )
    sections = [
        ("hindsight", "Hindsight MILP, CrossBorderDispatch-v0, seed 0",
         lambda: hindsight_rows(args.time_limit, args.large_time_limit)),
        ("growth", "Model size against days and network", growth_rows),
        ("cbc", "Second solver on the same MPS (CBC)", lambda: cbc_rows(args.cbc_time_limit)),
        ("rolling", "Rolling-horizon decision time", rolling_rows),
        ("solvers", "Solvers and decomposition side by side (mip_gap 1e-4)", lambda: solver_rows(solver_limits)),
        ("certify", "Time to a certified optimum (gap <= 1e-4)",
         lambda: certify_rows(args.certify_presets.split(","), _seed_range(args.certify_seeds), args.pricing_workers,
                              args.monolith_seeds)),
    ]  # fmt: skip
    for key, title, rows in sections:
        if key in chosen:
            print(f"\n### {title}\n")
            print("\n".join(rows()))


if __name__ == "__main__":
    main()
