"""Training callbacks: per-episode CSV, periodic validation against the hindsight optimum, checkpoints.

Files (under the run directory):

* ``episodes.csv``: one row per finished training episode: ``timesteps`` (model steps when it
  ended), ``env_rank``, ``return`` (USD, unnormalized), ``length`` (days), the five reward terms summed over the
  episode (USD), ``fill_rate``, ``on_time_rate``. Rows come from SB3's ``infos`` at the step that
  ends an episode (``Monitor``'s ``info["episode"]``), so every finished episode is logged.
* ``eval.csv``: one row per validation: ``timesteps``, ``mean_return`` and ``min_return`` over the
  validation seeds, ``mean_ratio`` (mean over seeds of ``1 - (G* - G)/|G*|``; empty when the
  hindsight optimum is unavailable), ``hindsight_mean_return``.
* ``checkpoints/step_<timesteps>/``: loadable agent directories (see :mod:`agents.checkpoint`), each written
  whole (a folder renamed into place).
* ``best/``: the agent with the highest validation mean return so far.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.checkpoint import META_FILE
from agents.config import VALIDATION_SEEDS, PPOConfig
from agents.factory import make_eval_env
from agents.policy import PPOAgent, agent_meta, save_agent
from envs.reward import TERM_NAMES
from envs.scenario import load_scenario
from evaluation.answer_key import CERTIFIED_GAP
from evaluation.cache import DEFAULT_CACHE_DIR, cached_hindsight
from evaluation.episode import run_episode
from evaluation.metrics import ratio_to_optimum

EPISODE_COLUMNS = ("timesteps", "env_rank", "return", "length", *TERM_NAMES, "fill_rate", "on_time_rate", "wall_s")
EVAL_COLUMNS = ("timesteps", "wall_s", "mean_return", "min_return", "mean_ratio", "hindsight_mean_return")


class _CsvLog:
    """Append-only CSV with a header written once (a resumed run keeps adding to the same file)."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self.file = open(path, "a", newline="")  # noqa: SIM115 - closed by close()
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        if new:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class EpisodeLogCallback(BaseCallback):
    """Writes ``episodes.csv`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.log: _CsvLog | None = None
        self.start = time.perf_counter()
        self.episodes = 0

    def _on_training_start(self) -> None:
        self.log = _CsvLog(self.path, EPISODE_COLUMNS)

    def _on_step(self) -> bool:
        for rank, info in enumerate(self.locals["infos"]):
            if "episode" not in info:
                continue
            kpis = info.get("episode_kpis", {})
            row = {
                "timesteps": self.num_timesteps,
                "env_rank": rank,
                "return": info["episode"]["r"],
                "length": info["episode"]["l"],
                **{name: info.get("episode_terms", {}).get(name, "") for name in TERM_NAMES},
                "fill_rate": kpis.get("fill_rate", ""),
                "on_time_rate": kpis.get("on_time_rate", ""),
                "wall_s": round(time.perf_counter() - self.start, 3),
            }
            self.log.write(row)
            self.episodes += 1
        return True

    def _on_rollout_end(self) -> None:
        self.log.flush()

    def _on_training_end(self) -> None:
        self.log.close()


def validation_optima(config: PPOConfig, seeds=VALIDATION_SEEDS, echo=print) -> tuple[dict[int, float] | None, str]:
    """Hindsight MILP result of each validation seed (solved once, then read from the cache).

    Returns ``(objectives, note)``; ``objectives`` is None, and ``note`` says why, when the config
    turns the ratio off; the ratio column is then left empty. With ``hindsight_time_limit``
    a solve may stop before proving optimality: the objective is then the best plan found, so the
    ratio is an upper bound on the ratio to the true optimum (the note gives the statuses and gap).
    """
    if not config.hindsight:
        return None, "hindsight ratio off (hindsight: false)"
    scenario = load_scenario(config.scenario)
    results = {}
    for seed in seeds:
        results[int(seed)] = result = cached_hindsight(
            scenario, seed, env_id=config.env_id, cache_dir=DEFAULT_CACHE_DIR, time_limit=config.hindsight_time_limit,
            mip_gap=CERTIFIED_GAP,
        )  # fmt: skip
        echo(f"[train] hindsight seed {seed}: {result.status}, objective {result.objective:.2f}, gap {result.gap:.4f}")
    objectives = {s: float(r.objective) for s, r in results.items()}
    statuses = sorted({r.status for r in results.values()})
    gap = max(r.gap for r in results.values())
    return objectives, (
        f"hindsight optimum of validation seeds {list(seeds)}: mean {np.mean(list(objectives.values())):.2f} "
        f"(status {statuses}, max gap {gap:.4f}, time limit {config.hindsight_time_limit})"
    )


class ValidationCallback(BaseCallback):
    """At the start of a fresh run, every ``config.eval_freq`` timesteps and at the end, plays the
    validation seeds with the current deterministic policy, logs ``eval/mean_return`` and
    ``eval/mean_ratio`` (TensorBoard) and a row of ``eval.csv``, and saves ``best/`` when the mean return improves."""

    def __init__(self, config: PPOConfig, out_dir: Path, optima: dict[int, float] | None, echo=print) -> None:
        super().__init__()
        self.config = config
        self.out_dir = out_dir
        self.optima = optima
        self.echo = echo
        self.env = make_eval_env(config)
        self.scenario = load_scenario(config.scenario)
        self.last_eval = None
        self.best = -np.inf
        self.start = time.perf_counter()
        self.log: _CsvLog | None = None
        self.history: list[dict] = []

    def _on_training_start(self) -> None:
        path = self.out_dir / "eval.csv"
        if path.exists() and (self.out_dir / "best").is_dir():  # a resumed run: best/ must beat its earlier rows
            with open(path, newline="") as fh:
                self.best = max((float(row["mean_return"]) for row in csv.DictReader(fh)), default=-np.inf)
        self.log = _CsvLog(path, EVAL_COLUMNS)
        self.last_eval = self.num_timesteps
        if self.num_timesteps == 0:
            self.evaluate()  # the starting point (random, or the imitation warm start)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # here, not in _on_step: the previous rollout's update is applied, so the row is the saved model's
        self.num_timesteps = self.model.num_timesteps
        freq = self.config.eval_freq
        if freq and self.num_timesteps - self.last_eval >= freq:
            self.evaluate()

    def _on_training_end(self) -> None:
        if self.last_eval != self.num_timesteps or not self.history:
            self.evaluate()
        self.log.close()

    def evaluate(self) -> dict:
        self.last_eval = self.num_timesteps
        venv = self.model.get_env()
        normalizer = venv if hasattr(venv, "normalize_obs") else None
        agent = PPOAgent(self.model.policy, normalizer, agent_meta(self.model, self.config), self.scenario)
        returns = {s: run_episode(self.env, agent, s).episode_return for s in VALIDATION_SEEDS}
        row = {
            "timesteps": self.num_timesteps,
            "wall_s": round(time.perf_counter() - self.start, 3),
            "mean_return": float(np.mean(list(returns.values()))),
            "min_return": float(np.min(list(returns.values()))),
            "mean_ratio": "",
            "hindsight_mean_return": "",
        }
        if self.optima is not None:
            row["mean_ratio"] = float(np.mean([ratio_to_optimum(g, self.optima[s]) for s, g in returns.items()]))
            row["hindsight_mean_return"] = float(np.mean([self.optima[s] for s in returns]))
            self.logger.record("eval/mean_ratio", row["mean_ratio"])
        self.logger.record("eval/mean_return", row["mean_return"])
        self.log.write(row)
        self.log.flush()
        self.history.append(row)
        ratio = f", ratio to hindsight {row['mean_ratio']:.4f}" if row["mean_ratio"] != "" else ""
        self.echo(f"[validation] {self.num_timesteps} steps: mean return {row['mean_return']:.1f}{ratio}")
        if row["mean_return"] > self.best:
            self.best = row["mean_return"]
            save_agent(self.out_dir / "best", self.model, normalizer, self.config)
        return row


class CheckpointCallback(BaseCallback):
    """Saves a loadable agent directory ``checkpoints/step_<timesteps>/`` every ``config.checkpoint_freq``
    timesteps and at the end of training (what ``train.py --resume`` restarts from)."""

    def __init__(self, config: PPOConfig, out_dir: Path) -> None:
        super().__init__()
        self.config = config
        self.dir = out_dir / "checkpoints"
        self.last_save = None

    def _on_training_start(self) -> None:
        self.last_save = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # after the previous rollout's update: a checkpoint at N timesteps holds every update up to N
        self.num_timesteps = self.model.num_timesteps
        freq = self.config.checkpoint_freq
        if freq and self.num_timesteps - self.last_save >= freq:
            self.save()

    def _on_training_end(self) -> None:
        if self.last_save != self.num_timesteps:
            self.save()

    def save(self) -> Path:
        self.last_save = self.num_timesteps
        return save_agent(self.dir / f"step_{self.num_timesteps:010d}", self.model, self.model.get_env(), self.config)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint directory with the most timesteps under ``out_dir/checkpoints``, or None."""
    found = sorted(p for p in (out_dir / "checkpoints").glob("step_*") if (p / META_FILE).is_file())
    return found[-1] if found else None
