"""Evaluate policies against the hindsight optimum, on the same realizations.

    python evaluate.py --scenario table1 --seeds 1000-1099 --out results/table1 \\
        --policies ppo=agents/checkpoints/table1__CrossBorderDispatch-v0,rolling-milp,greedy,base-stock,random

Every policy plays the same seeds (realization ``scenario.sample(seed)``), and the hindsight
MILP of each seed is solved once and cached on disk (``--cache-dir``), so reruns do not re-solve.
Written into ``--out``:

* ``episodes.csv`` and ``episodes.parquet``: one row per policy x seed (``hindsight-milp`` rows
  too): return, reward terms, KPIs, ratio to the optimum, decision time, MILP status/bound/gap;
* ``summary.csv``: per policy, the mean return with a 95% bootstrap CI, the IQM, the ratio to
  the optimum, mean terms and KPIs, the win rate against every other policy;
* ``ratio_to_optimum.png``, ``return_decomposition.png``: the plots;
* ``table3_<baseline>_vs_<policy>.csv`` and ``.png``: the paper's Table 3 form per ``--compare``;
* ``config.json``, ``scenario.yaml``: the resolved configuration, package versions, the scenario;
* ``rows/``: one file per finished episode, what makes an interrupted run resumable;
* with ``--timeline SEEDS``: ``timeline/seed_<s>.csv`` and ``.png``, each policy's day by day (stock per
  warehouse, units shipped per mode, transfers) beside the hindsight optimum's.

Rerunning the same command resumes an interrupted run (finished rows are not redone) and,
on a finished run, changes no file. Results do not depend on ``--workers``; only the
timing columns vary between runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

import envs
from baselines import RollingHorizonPolicy
from evaluation import report, runner
from evaluation.backends import BACKENDS, BackendError, backend_for
from evaluation.cache import DEFAULT_CACHE_DIR
from evaluation.policies import HINDSIGHT, ROLLING_FLAGS, EvaluateError, builtin_policy_names
from evaluation.timeline import write_timelines

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenario", required=True, help=f"preset {envs.preset_names()} or a YAML/JSON scenario file")
    p.add_argument("--env", default="CrossBorderDispatch-v0", help=f"env id, one of {list(envs.ENV_IDS)}")
    p.add_argument(
        "--policies",
        required=True,
        help=f"comma-separated: built-in {builtin_policy_names()} or LABEL=CHECKPOINT for a trained agent "
        f"(e.g. ppo=agents/checkpoints/table1__CrossBorderDispatch-v0); {HINDSIGHT!r} is always included",
    )
    p.add_argument("--seeds", required=True, help="realization seeds: N, A-B (inclusive) or a list like 1000-1099,2000")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; an earlier run there is resumed)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="episodes computed at once (default: the cores here; with --backend ray, the cluster's CPUs)",
    )
    p.add_argument("--backend", default="local", help=f"where episodes run, one of {list(BACKENDS)} (default: local)")
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: 'auto' (the cluster `ray start` runs here) or HOST:PORT; default: a local cluster",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds per hindsight MILP solve, trading the certificate for speed (default: none: every optimum is "
        "certified, gap <= 1e-4, from the shipped answer key when it has the seed, else solved)",
    )
    p.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="hindsight MILP cache folder (default: %(default)s)"
    )
    p.add_argument(
        "--compare",
        action="append",
        metavar="BASELINE,POLICY",
        help="write the paper's Table 3 form for these two policies (repeatable); default: the first listed policy "
        "against greedy (or against the second listed policy when greedy is first or absent)",
    )
    rolling = RollingHorizonPolicy.DEFAULTS
    what = {"window": (int, "look-ahead in days"),
            "time_limit": (float, "seconds per daily solve; decisions then depend on machine speed when it binds"),
            "mip_gap": (float, "relative MIP gap"),
            "node_limit": (int, "branch-and-bound nodes per daily solve")}  # fmt: skip
    for key, flag in ROLLING_FLAGS.items():
        p.add_argument(flag, type=what[key][0], help=f"rolling-milp {what[key][1]} (default: {rolling[key]})")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow agents in the old pickle-based format (model.zip, vecnormalize.pkl): reading them can run code "
        "they hold, so only for checkpoints whose origin you trust (README, 'Trust model')",
    )
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    p.add_argument(
        "--timeline",
        metavar="SEEDS",
        help=f"for these seeds (some of --seeds, at most {MAX_TIMELINE_SEEDS}) write timeline/seed_<s>.csv and .png: "
        "each policy's stock per warehouse, units shipped per mode and transfers, day by day, beside the optimum",
    )
    return p


def parse_compare(values: list[str] | None, labels: list[str]) -> list[tuple[str, str]]:
    """``["greedy,ppo"]`` -> ``[("greedy", "ppo")]``, each name checked against the run's policies."""
    listed = [label for label in labels if label != HINDSIGHT]
    if not values:
        if len(listed) < 2:
            return []
        baseline = "greedy" if "greedy" in listed[1:] else listed[1]
        return [(baseline, listed[0])]
    pairs = []
    for value in values:
        names = [v.strip() for v in value.split(",")]
        if len(names) != 2 or names[0] == names[1]:
            raise EvaluateError(f"--compare: {value!r} must name two different policies: BASELINE,POLICY (greedy,ppo)")
        for name in names:
            if name not in labels:
                raise EvaluateError(f"--compare: {name!r} is not a policy of this run; allowed: {labels}")
        pairs.append((names[0], names[1]))
    return pairs


MAX_TIMELINE_SEEDS = 20


def parse_timeline(text: str | None, run: runner.EvalRun) -> tuple[int, ...]:
    """The ``--timeline`` seeds: each one of the run's ``--seeds``."""
    if text is None:
        return ()
    seeds = runner.parse_seeds(text, flag="--timeline")
    outside = [s for s in seeds if s not in run.seeds]
    if outside:
        raise EvaluateError(f"--timeline: seeds {outside[:10]} are not in --seeds; give seeds this run plays")
    if len(seeds) > MAX_TIMELINE_SEEDS:
        raise EvaluateError(f"--timeline: {len(seeds)} seeds; at most {MAX_TIMELINE_SEEDS} (a picture each)")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # 1. validate everything before touching the disk
    try:
        rolling = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in ROLLING_FLAGS.items()}
        run = runner.resolve_run(
            args.scenario,
            args.env,
            args.policies,
            args.seeds,
            args.time_limit,
            args.cache_dir,
            rolling,
            trust_checkpoint=args.trust_checkpoint,
        )
        compares = parse_compare(args.compare, run.labels)
        if args.workers is not None and args.workers < 1:
            raise EvaluateError(f"--workers: {args.workers} must be an integer >= 1")
        if args.bootstrap_seed < 0:
            raise EvaluateError(f"--bootstrap-seed: {args.bootstrap_seed} must be an integer >= 0")
        timeline_seeds = parse_timeline(args.timeline, run)
        runner.check_out(args.out, run)
        backend = backend_for(args.backend, args.workers, args.ray_address)
    except (EvaluateError, BackendError) as err:
        parser.error(str(err))
    # 2. record the configuration, then compute the rows that are not on disk yet
    report_config = {
        "compare": [list(pair) for pair in compares],
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "confidence": CONFIDENCE, "seed": args.bootstrap_seed},
    }
    for warning in (*run.warnings, *runner.init_out(args.out, run, report_config)):
        print(f"warning: {warning}", file=sys.stderr)
    if args.workers is not None and backend.workers < args.workers:
        print(f"note: --workers {args.workers} capped at {backend.workers} (the cores here)", file=sys.stderr)
    tasks = runner.missing_tasks(args.out, run)
    total = len(run.tasks())
    print(f"{args.scenario} / {args.env}: {len(run.labels)} policies x {len(run.seeds)} seeds; "
          f"{len(tasks)} of {total} episodes to run, {backend.workers} workers ({backend.name})")  # fmt: skip
    try:
        with tqdm(total=len(tasks), unit="episode", desc="evaluating", disable=not tasks) as bar:
            runner.compute_rows(args.out, runner.shippable(run, backend), tasks, backend, lambda row: bar.update())
    except BaseException as stop:  # Ctrl-C, or a row that failed: say what is kept, then stop
        done = total - len(runner.missing_tasks(args.out, run))
        print(f"stopped: {done} of {total} episodes are saved in {args.out}; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        if isinstance(stop, KeyboardInterrupt):
            return 130
        raise
    finally:
        backend.close()
    # 3. statistics, tables and plots from the rows on disk
    episodes = report.assemble_episodes(runner.read_rows(args.out, run))
    summary = report.summarize(episodes, BOOTSTRAP_RESAMPLES, CONFIDENCE, args.bootstrap_seed)
    tables = [report.compare_table(summary, baseline, policy) for baseline, policy in compares]
    report.write_report(args.out, episodes, summary, tables)
    for problem in report.bound_violations(episodes):
        print(f"warning: {problem}", file=sys.stderr)
    if report.time_limit_note(episodes):
        print(f"note: {report.time_limit_note(episodes)}", file=sys.stderr)
    report.print_report(summary, tables)
    if timeline_seeds:
        write_timelines(args.out / "timeline", runner.timelines(run, timeline_seeds))
        print(f"timelines of seeds {runner.format_seeds(timeline_seeds)} in {args.out / 'timeline'}/")
    print(f"results in {args.out}/ (episodes.csv, summary.csv, plots, config.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
