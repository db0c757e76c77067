"""Train a PPO / masked PPO dispatch agent.

    python train.py --env CrossBorderDispatch-v0 --scenario table1 --algo maskable-ppo \\
        --timesteps 200000 --seed 0 --n-envs 8 --out runs/table1-mppo
    python train.py --config my.yaml --out runs/x          # YAML of PPOConfig fields; flags override it
    python train.py --out runs/table1-mppo --resume --timesteps 400000   # continue up to 400k in total

Every PPOConfig field (agents/config.py) is a flag (``--n-steps``, ``--ent-coef``, ``--net-arch 256 256``,
``--no-norm-reward``, ...); ``python train.py --help`` lists them with their help text.

The run directory holds:

| path | what |
|---|---|
| ``policy.safetensors``, ``optimizer.safetensors``, ``normalization.json``, ``agent.json`` | the final agent |
| ``config.yaml``, ``scenario.yaml`` | the resolved config, the scenario (with the above: ``load_agent(dir)``) |
| ``versions.yaml`` | Python, package versions and git commit |
| ``TRAIN_COMMAND.txt`` | the command line(s) that produced the run |
| ``episodes.csv`` | training curve: one row per finished training episode |
| ``eval.csv`` | validation curve: mean return on seeds 900-909 and its ratio to the hindsight optimum |
| ``tb/`` | TensorBoard logs (``tensorboard --logdir runs``) |
| ``checkpoints/step_<timesteps>/`` | periodic checkpoints (loadable agents; ``--resume`` restarts from the latest) |
| ``best/`` | the agent with the best validation mean return |
| ``summary.yaml`` | wall time, timesteps per second, the env's share of the time, last validation |

Several seeds at once: ``--seeds 0-4`` trains one run per seed in ``<out>/seed_<s>/`` (``--workers`` at a
time, on this machine's processes or, with ``--backend ray [--ray-address ADDR]``, on a Ray cluster) and
writes ``seeds.csv`` and ``seeds_summary.yaml`` (mean and bootstrap interval across seeds of the validation
ratio) beside them; see :mod:`agents.sweep`. ``--resume`` continues every unfinished seed.

Seeds: training episodes draw their realization seeds in [10**6, 2*10**6) from streams seeded by
``--seed`` + env rank; validation uses seeds 900-909; evaluation uses 1000 and up. They never meet.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import shlex
import sys
import time
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import yaml
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed

from agents.callbacks import (
    CheckpointCallback,
    EpisodeLogCallback,
    ValidationCallback,
    latest_checkpoint,
    validation_optima,
)
from agents.checkpoint import CONFIG_FILE, AgentFiles, CheckpointError, read_agent
from agents.config import ConfigError, PPOConfig
from agents.factory import build_model, make_normalized_vec_env
from agents.policy import save_agent
from agents.pretrain import pretrain
from agents.sweep import CONFIDENCE, seed_dir, write_sweep_files
from envs.files import read_yaml, write_atomic
from envs.scenario import load_scenario
from evaluation.backends import BACKENDS, BackendError, LocalBackend, backend_for, capped_workers
from evaluation.policies import EvaluateError
from evaluation.provenance import package_versions
from evaluation.runner import format_seeds, parse_seeds

RESUMABLE_FIELDS = ("total_timesteps", "eval_freq", "checkpoint_freq")  # what --resume may change


@dataclass
class Args:
    """Run-level options (the learning problem and PPO itself are PPOConfig fields)."""

    config: str | None = field(default=None, metadata={"help": "YAML file of PPOConfig fields; flags override it"})
    out: str | None = field(
        default=None, metadata={"help": "run directory (default: runs/<env>__<scenario>__<algo>__s<seed>__<UTC time>)"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue the run in --out from its latest checkpoint up to --timesteps"}
    )
    progress_bar: bool = field(default=True, metadata={"help": "show a progress bar"})
    seeds: str | None = field(
        default=None,
        metadata={"help": "train several seeds (e.g. 0-4 or 0,3,7), one run each in --out/seed_<s>; not with --seed"},
    )
    backend: str = field(
        default="local", metadata={"help": f"with --seeds: where the runs train, one of {list(BACKENDS)}"}
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "with --backend ray: 'auto' (the cluster `ray start` runs here) or HOST:PORT; "
            "default: a local cluster"
        },  # fmt: skip
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": "with --seeds: runs trained at once (default: the cores here; Ray: the cluster's CPUs); "
            "one run: processes that play the teacher's episodes of the warm start (default 1; the "
            "same data on any number)"
        },  # fmt: skip
    )


def build_parser() -> argparse.ArgumentParser:
    """Flags from the fields of Args and PPOConfig; defaults are SUPPRESSed so we know what was given."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    for cls in (Args, PPOConfig):
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(cls.__name__)
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            kind = hints[f.name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{f.metadata['help']} (default: {default})"}
            if kind is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif kind == list[int]:
                group.add_argument(flag, type=int, nargs="+", **kw)
            elif kind == float | None:
                group.add_argument(flag, type=lambda s: None if s.lower() == "none" else float(s), **kw)
            elif kind == str | None and f.name in {fld.name for fld in dataclasses.fields(PPOConfig)}:
                group.add_argument(flag, type=lambda s: None if s.lower() == "none" else s, **kw)
            else:
                group.add_argument(
                    flag, type=next(t for t in typing.get_args(kind) or (kind,) if t is not type(None)), **kw
                )
    return parser


@dataclass(frozen=True)
class Run:
    """One training run to do: its validated config, its directory, and whether it continues a checkpoint."""

    config: PPOConfig
    out: Path
    resume: bool


def resolve(argv: list[str]) -> tuple[Args, list[Run], Path | None]:
    """Args, the runs to train (one, or one per ``--seeds`` seed) and, with ``--seeds``, the sweep folder.

    Each run's config: defaults < ``--config`` file < flags (its own ``config.yaml`` on ``--resume``)."""
    given = vars(build_parser().parse_args(argv))
    arg_names = {f.name for f in dataclasses.fields(Args)}
    args = Args(**{k: v for k, v in given.items() if k in arg_names})
    overrides = {k: v for k, v in given.items() if k not in arg_names}
    if args.backend not in BACKENDS:
        raise ConfigError(f"--backend: {args.backend!r} is not allowed; allowed: {list(BACKENDS)}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: {args.workers} must be an integer >= 1")
    if args.seeds is None:
        unused = [flag for flag, v in (("--backend", args.backend != "local"), ("--ray-address", args.ray_address))
                  if v]  # fmt: skip
        if unused:
            raise ConfigError(f"{unused[0]}: only with --seeds (several runs); one run trains in this process")
        return args, [resolve_run(args, overrides, args.out, args.resume)], None
    if "seed" in overrides:
        raise ConfigError("--seed and --seeds: give one of them (--seeds 0-4 trains seeds 0 to 4, one run each)")
    try:
        seeds = parse_seeds(args.seeds)
    except EvaluateError as err:
        raise ConfigError(str(err)) from None
    if args.ray_address is not None and args.backend != "ray":
        raise ConfigError(f"--ray-address: given, but --backend is {args.backend!r}; add --backend ray or drop it")
    if args.out is None:
        base = PPOConfig.from_dict({**(PPOConfig.from_file(args.config).to_dict() if args.config else {}), **overrides})
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = load_scenario(base.validate().scenario).name
        args.out = f"runs/{base.env_id}__{name}__{base.algo}__seeds{format_seeds(seeds)}__{stamp}"
    root = Path(args.out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out: {str(root)!r} exists and is not a folder; choose a folder path")
    runs = []
    for seed in seeds:
        out = seed_dir(root, seed)
        resume = args.resume and (out / CONFIG_FILE).is_file()  # --resume: continue the started seeds, start the rest
        runs.append(resolve_run(args, overrides if resume else {**overrides, "seed": seed}, str(out), resume))
    return args, runs, root


def resolve_run(args: Args, overrides: dict, out_arg: str | None, resume: bool) -> Run:
    """The validated config and directory of one run (raises ConfigError naming the flag at fault)."""
    if resume:
        if out_arg is None:
            raise ConfigError("--resume needs --out, the run directory to continue")
        out = Path(out_arg)
        if not (out / CONFIG_FILE).is_file():
            raise ConfigError(f"--resume: {out / CONFIG_FILE} does not exist; is {str(out)!r} a run directory?")
        fixed = sorted(set(overrides) - set(RESUMABLE_FIELDS))
        if fixed or args.config:
            raise ConfigError(
                f"--resume continues the run with its own {CONFIG_FILE}; only {list(RESUMABLE_FIELDS)} may be "
                f"given, not {fixed or ['--config']}; start a new run (another --out) to change them"
            )
        written = read_yaml((out / CONFIG_FILE).read_text(encoding="utf-8", errors="replace")) or {}
        missing = sorted(
            {f.name for f in dataclasses.fields(PPOConfig)} - set(written if isinstance(written, dict) else {})
        )
        if missing:
            raise ConfigError(
                f"--resume: {out / CONFIG_FILE} is incomplete (no {missing}): the run is damaged; start a new run"
            )
        data = PPOConfig.from_file(out / CONFIG_FILE).to_dict()
    else:
        data = PPOConfig.from_file(args.config).to_dict() if args.config else {}
    data.update(overrides)
    config = PPOConfig.from_dict(data).validate()
    if out_arg is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        scenario = load_scenario(config.scenario).name
        out_arg = f"runs/{config.env_id}__{scenario}__{config.algo}__s{config.seed}__{stamp}"
    out = Path(out_arg)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} exists and is not a folder; choose a folder path")
    if not resume and out.is_dir() and any(out.iterdir()):
        what = "a run; add --resume to continue it" if (out / CONFIG_FILE).is_file() else "other files"
        raise ConfigError(f"--out: {str(out)!r} already holds {what}, or choose another --out (a new or empty folder)")
    return Run(config, out, resume)


def resume_point(out: Path, config: PPOConfig) -> AgentFiles:
    """The latest checkpoint of ``out``, read and checked against the run's config (raises ConfigError)."""
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        raise ConfigError(f"--resume: no checkpoint under {out / 'checkpoints'}; nothing to resume")
    try:
        files = read_agent(checkpoint)
    except CheckpointError as err:
        raise ConfigError(f"--resume: the latest checkpoint is damaged: {err}") from None
    if files.optimizer_state is None:
        raise ConfigError(f"--resume: {checkpoint} holds no optimizer state; it cannot be resumed")
    mine = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_FIELDS}
    theirs = {k: v for k, v in files.config.to_dict().items() if k not in RESUMABLE_FIELDS}
    differ = sorted(k for k in mine if mine[k] != theirs.get(k))
    if differ:
        raise ConfigError(
            f"--resume: {out / CONFIG_FILE} differs from the checkpoint's own config in {differ}: the run is damaged "
            "or was edited; start a new run"
        )
    return files


def truncate_logs(out: Path, timesteps: int) -> None:
    """Drop the log rows written after the checkpoint being resumed (they are trained again), so every
    timestep appears once; each file is rewritten whole."""
    for name in ("episodes.csv", "eval.csv"):
        path = out / name
        if not path.is_file():
            continue
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = [row for row in reader if int(row["timesteps"]) <= timesteps]
            columns = reader.fieldnames or []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buffer.getvalue(), if_changed=True)


def write_yaml(path: Path, data: dict) -> None:
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _earlier_pretrain(out: Path) -> dict | None:
    """The warm start figures of the run's first session (a resumed session's summary keeps them)."""
    path = out / "summary.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("pretrain")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "train.py", *argv])
    try:
        args, runs, root = resolve(argv)
        for run in runs:  # every run checked before any trains
            if run.resume:
                resume_point(run.out, run.config)
    except ConfigError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if root is None:
        return train_run(runs[0], command, args.progress_bar, teacher_workers=args.workers or 1)
    return train_seeds(args, runs, root, command)


def train_seeds(args: Args, runs: list[Run], root: Path, command: str) -> int:
    """``--seeds``: each run as a task on the backend; the sweep files are rewritten as each seed finishes."""
    try:
        backend = backend_for(args.backend, args.workers, args.ray_address)
    except BackendError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    import train as this_module  # the task by its module name (not __main__), so spawn and Ray workers import it

    seeds = [run.config.seed for run in runs]
    root.mkdir(parents=True, exist_ok=True)
    print(f"[train] {len(seeds)} seeds {format_seeds(seeds)}, {backend.workers} at a time ({backend.name}) -> {root}")
    try:
        for seed, _ in backend.map(this_module.train_seed, ({r.config.seed: r for r in runs}, command), seeds):
            summary = write_sweep_files(root, seeds, command)
            print(f"[train] seed {seed} done ({summary['n']} of {len(seeds)})")
    except RuntimeError as err:  # a run that failed: the finished seeds' files are kept; --resume continues
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    ratio = summary["final_mean_ratio"]
    if ratio["mean"] is not None:
        interval = f"{CONFIDENCE:.0%} interval {ratio['low']:.4f}-{ratio['high']:.4f}"
        print(f"[train] validation ratio across seeds: {ratio['mean']:.4f} ({interval}); {root / 'seeds_summary.yaml'}")
    return 0


def train_seed(context: tuple[dict[int, Run], str], seed: int) -> int:
    """One seed of a sweep, wherever it runs (a module-level function: the backends ship it by name)."""
    runs, command = context
    return train_run(runs[seed], f"{command}  # this run: seed {seed}", progress_bar=False)


def train_run(run: Run, command: str, progress_bar: bool = True, teacher_workers: int = 1) -> int:
    """Train one run to its ``total_timesteps`` (from its latest checkpoint when ``run.resume``); the warm start's
    teacher episodes on ``teacher_workers`` processes (the same data on any number)."""
    config, out = run.config, run.out
    resumed = resume_point(out, config) if run.resume else None
    out.mkdir(parents=True, exist_ok=True)

    # --- seeding: torch, numpy's legacy global RNG (used inside SB3) and Python's random
    torch.set_num_threads(config.torch_threads)
    set_random_seed(config.seed)

    # --- record what this run is, before any long work
    config.to_file(out / CONFIG_FILE)
    write_yaml(out / "versions.yaml", package_versions())
    with open(out / "TRAIN_COMMAND.txt", "a") as fh:
        fh.write(command + "\n")

    # --- hindsight optimum of the validation seeds (solved once; cached on disk)
    optima, note = validation_optima(config)
    print(f"[train] {note}")

    # --- env and model (fresh, or the latest checkpoint with its normalization statistics)
    checkpoint = resumed.directory if resumed is not None else None
    if resumed is not None:
        venv = make_normalized_vec_env(config, normalization=resumed.normalization)
        model = build_model(config, venv)
        model.policy.load_state_dict(resumed.policy_state)
        model.policy.optimizer.load_state_dict(resumed.optimizer_state)
        model.num_timesteps = resumed.meta.num_timesteps
        truncate_logs(out, model.num_timesteps)
        venv.seed(config.seed + model.num_timesteps)  # fresh training episodes, not a replay of the first ones
        print(f"[train] resuming {checkpoint} at {model.num_timesteps} timesteps")
    else:
        venv = make_normalized_vec_env(config)
        model = build_model(config, venv)
    pretrained = {}
    if checkpoint is None and config.pretrain_teacher is not None:
        backend = LocalBackend(capped_workers(teacher_workers)) if teacher_workers > 1 else None
        try:
            pretrained = pretrain(model, venv, config, backend=backend)
        finally:
            if backend is not None:
                backend.close()
        print(f"[train] imitation warm start: {pretrained}")
    model.set_logger(configure(str(out / "tb"), ["tensorboard"]))
    start_steps = model.num_timesteps
    remaining = config.total_timesteps - start_steps
    if remaining <= 0:
        print(f"[train] already at {start_steps} >= total_timesteps={config.total_timesteps}; nothing to do")
        return 0

    # --- learn
    callbacks = [
        EpisodeLogCallback(out / "episodes.csv"),
        ValidationCallback(config, out, optima),
        CheckpointCallback(config, out),
    ]
    started = time.perf_counter()
    model.learn(
        total_timesteps=remaining,
        callback=callbacks,
        progress_bar=progress_bar,
        reset_num_timesteps=checkpoint is None,
    )
    wall = time.perf_counter() - started

    # --- the final agent and a summary
    save_agent(out, model, venv, config)
    env_seconds = float(sum(venv.get_attr("env_seconds")))
    trained = model.num_timesteps - start_steps
    last = callbacks[1].history[-1] if callbacks[1].history else {}
    summary = {
        "timesteps": int(model.num_timesteps),
        "timesteps_this_session": int(trained),
        "wall_seconds_this_session": round(wall, 2),
        "timesteps_per_second": round(trained / wall, 1),
        "env_seconds_this_session": round(env_seconds, 2),
        "env_share_of_wall_time": round(env_seconds / wall, 4),
        "episodes_logged": callbacks[0].episodes,
        "pretrain": pretrained or _earlier_pretrain(out),  # its seconds are not in wall_seconds_this_session
        "last_validation": last,
        "hindsight_note": note,
    }
    write_yaml(out / "summary.yaml", summary)
    venv.close()
    rate, share = trained / wall, env_seconds / wall
    print(f"[train] {trained} timesteps in {wall:.1f}s ({rate:.0f}/s, env {share:.0%} of it); agent in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
