"""train.py as users run it: a subprocess with a tiny budget on the ``tiny`` scenario."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import envs  # noqa: F401
from agents import ConfigError, PPOConfig, load_agent
from baselines import make_policy
from evaluation.episode import run_episode

REPO = Path(__file__).resolve().parent.parent
# rollout = 24 * 2 = 48 steps = 16 episodes of 3 days
BASE = ["--env", "CrossBorderDispatch-v0", "--scenario", "tiny", "--algo", "maskable-ppo", "--seed", "1",
        "--n-envs", "2", "--n-steps", "24", "--batch-size", "16", "--n-epochs", "2", "--net-arch", "16",
        "--eval-freq", "48", "--checkpoint-freq", "48"]  # fmt: skip
AGENT_FILES = (
    "policy.safetensors", "optimizer.safetensors", "normalization.json", "agent.json", "config.yaml", "scenario.yaml"
)  # fmt: skip


def train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    train(*BASE, "--timesteps", "96", "--out", str(out))  # with the progress bar, as users run it
    return out


def test_train_writes_every_promised_file(run_dir):
    for name in (*AGENT_FILES, "versions.yaml", "TRAIN_COMMAND.txt", "episodes.csv", "eval.csv", "summary.yaml"):
        assert (run_dir / name).is_file(), name
    for name in AGENT_FILES:
        assert (run_dir / "best" / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_0000000048", "step_0000000096"]
    events = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    config = PPOConfig.from_file(run_dir / "config.yaml")
    assert (config.scenario, config.n_envs, config.n_steps, config.net_arch, config.total_timesteps) == (
        "tiny", 2, 24, [16], 96,
    )  # fmt: skip
    versions = yaml.safe_load((run_dir / "versions.yaml").read_text())
    packages = versions["packages"]
    assert packages["torch"].startswith("2.13.0") and packages["stable-baselines3"] and packages["sb3-contrib"]
    assert (run_dir / "TRAIN_COMMAND.txt").read_text().startswith("python train.py --env CrossBorderDispatch-v0")
    meta = json.loads((run_dir / "agent.json").read_text())
    assert meta["num_timesteps"] == 96 and meta["scenario_name"] == "tiny"


def test_training_curve_rows_really_appear(run_dir):
    # every finished episode is logged (the cleanrl final_info trap would log none): 96 steps / 3 days
    rows = read_csv(run_dir / "episodes.csv")
    assert len(rows) == 96 // 3
    assert sorted({r["env_rank"] for r in rows}) == ["0", "1"]
    assert {r["length"] for r in rows} == {"3"}
    for row in rows:
        terms = [float(row[k]) for k in ("eq2_allocation_revenue", "eq1_route_cost", "eq4_delay_penalty",
                                          "eq5_imbalance", "lost_sales")]  # fmt: skip
        assert float(row["return"]) == pytest.approx(terms[0] - sum(terms[1:]), abs=1e-4)
    timesteps = [int(r["timesteps"]) for r in rows]
    assert timesteps == sorted(timesteps) and timesteps[-1] == 96

    evals = read_csv(run_dir / "eval.csv")
    assert [int(r["timesteps"]) for r in evals] == [0, 48, 96]
    assert all(np.isfinite(float(r["mean_return"])) for r in evals)
    summary = yaml.safe_load((run_dir / "summary.yaml").read_text())
    assert summary["episodes_logged"] == 32 and 0 < summary["env_share_of_wall_time"] < 1


def test_trained_agent_loads_and_plays(run_dir):
    agent = load_agent(run_dir, env=gym.make("CrossBorderDispatch-v0", scenario="tiny"))
    result = run_episode(gym.make("CrossBorderDispatch-v0", scenario="tiny"), agent, 1000)
    assert result.steps == 3 and np.isfinite(result.episode_return)


def test_resume_continues_from_the_checkpoint(run_dir, tmp_path):
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(run_dir, out)
    proc = train("--out", str(out), "--resume", "--timesteps", "192", "--no-progress-bar")
    assert "resuming" in proc.stdout and "at 96 timesteps" in proc.stdout
    assert json.loads((out / "agent.json").read_text())["num_timesteps"] == 192
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-2:] == ["step_0000000144", "step_0000000192"]
    rows = read_csv(out / "episodes.csv")
    timesteps = [int(r["timesteps"]) for r in rows]
    assert len(rows) == 192 // 3 and timesteps == sorted(timesteps) and timesteps[-1] == 192
    assert min(t for t in timesteps[32:]) > 96  # the new rows carry on from the checkpoint's timesteps
    assert [int(r["timesteps"]) for r in read_csv(out / "eval.csv")] == [0, 48, 96, 144, 192]
    assert len((out / "TRAIN_COMMAND.txt").read_text().splitlines()) == 2
    # best/ holds the agent of the best validation row over both sessions
    evals = read_csv(out / "eval.csv")
    best_row = max(evals, key=lambda r: float(r["mean_return"]))
    assert json.loads((out / "best" / "agent.json").read_text())["num_timesteps"] == int(best_row["timesteps"])
    # the restored normalization statistics kept counting
    before = json.loads((run_dir / "normalization.json").read_text())["obs_count"]
    after = json.loads((out / "normalization.json").read_text())["obs_count"]
    assert after > before


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """train.main in this process (no interpreter start-up) for the paths that fail before training."""
    sys.path.insert(0, str(REPO))  # train.py is a script at the repository root, not a package module
    from train import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_resume_refuses_to_change_the_config(run_dir, capsys):
    code, err = run_main(["--out", str(run_dir), "--resume", "--n-steps", "30"], capsys)
    assert code == 2 and "only ['total_timesteps'" in err and "n_steps" in err


def test_existing_run_is_not_overwritten_without_resume(run_dir, capsys):
    code, err = run_main([*BASE, "--timesteps", "96", "--out", str(run_dir)], capsys)
    assert code == 2 and "--resume" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "7"], "batch_size=7 must divide the rollout size n_steps*n_envs=24*2=48"),
        (["--n-steps", "2", "--batch-size", "4"], "n_steps=2 is shorter than one episode"),
        (["--algo", "a2c"], "algo='a2c' is not allowed; allowed: ['maskable-ppo', 'ppo']"),
    ],
)
def test_invalid_flags_fail_up_front(tmp_path, capsys, extra, message):
    code, err = run_main([*BASE, "--timesteps", "96", "--out", str(tmp_path / "bad"), *extra], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "bad").exists()  # failed before writing anything


def test_invalid_flags_fail_up_front_from_the_command_line(tmp_path):
    proc = train(*BASE, "--timesteps", "96", "--out", str(tmp_path / "bad"), "--batch-size", "7", check=False)
    assert proc.returncode == 2 and "batch_size=7 must divide the rollout size" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_config_file_then_flags_override(tmp_path):
    sys.path.insert(0, str(REPO))
    from train import resolve

    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"scenario": "tiny", "n_steps": 30, "n_envs": 2, "batch_size": 20, "ent_coef": 0.01})
    )
    argv = ["--config", str(path), "--n-steps", "60", "--timesteps", "120", "--out", str(tmp_path / "r")]
    _, [run], _ = resolve(argv)
    config, out = run.config, run.out
    assert (config.n_steps, config.ent_coef, config.batch_size, config.total_timesteps) == (60, 0.01, 20, 120)
    assert out == tmp_path / "r"
    _, [run], _ = resolve(["--config", str(path), "--timesteps", "60"])
    out = run.out
    assert out.parent == Path("runs") and out.name.startswith("CrossBorderDispatch-v0__tiny__maskable-ppo__s0__")
    path.write_text("n_env: 2\n")
    with pytest.raises(ConfigError, match="unknown config field"):
        resolve(["--config", str(path)])


def test_validation_ratio_to_hindsight_optimum(tmp_path):
    out = tmp_path / "run"
    proc = train(*BASE, "--timesteps", "48", "--out", str(out), "--no-progress-bar")
    assert "hindsight optimum of validation seeds" in proc.stdout
    from evaluation.cache import DEFAULT_CACHE_DIR, cached_hindsight

    limit = PPOConfig().hindsight_time_limit
    results = [cached_hindsight("tiny", s, cache_dir=DEFAULT_CACHE_DIR, time_limit=limit) for s in range(900, 910)]
    assert {r.status for r in results} == {"optimal"}  # tiny solves to proven optimality well within the limit
    optima = [r.objective for r in results]
    rows = read_csv(out / "eval.csv")
    assert rows and all(r["mean_ratio"] != "" for r in rows)
    for row in rows:
        # the ratio is the mean per-seed 1 - gap: at most 1 (the optimum bounds every policy)
        assert float(row["mean_ratio"]) <= 1.0 + 1e-9
        assert float(row["hindsight_mean_return"]) == pytest.approx(np.mean(optima))
        assert float(row["hindsight_mean_return"]) >= float(row["mean_return"]) - 1e-6
    # the last row is the saved final agent: replaying it gives the same per-seed ratios
    from evaluation.metrics import ratio_to_optimum

    agent, env = load_agent(out), gym.make("CrossBorderDispatch-v0", scenario="tiny")
    ratios = [
        ratio_to_optimum(run_episode(env, agent, s).episode_return, g)
        for s, g in zip(range(900, 910), optima, strict=True)
    ]
    assert float(rows[-1]["mean_ratio"]) == pytest.approx(np.mean(ratios), abs=1e-9)


def test_plain_ppo_trains_and_loads(tmp_path, capsys):
    out = tmp_path / "ppo"
    code, err = run_main(
        [*BASE, "--algo", "ppo", "--timesteps", "48", "--no-hindsight", "--no-progress-bar", "--out", str(out)], capsys
    )
    assert code == 0, err
    agent = load_agent(out, env=gym.make("CrossBorderDispatch-v0", scenario="tiny"))
    assert agent.meta.algo == "ppo" and not agent.masked
    assert run_episode(gym.make("CrossBorderDispatch-v0", scenario="tiny"), agent, 1000).steps == 3


def test_rolling_milp_teacher_warm_start_from_the_command_line(tmp_path):
    out = tmp_path / "bc"
    proc = train(
        *BASE, "--timesteps", "48", "--no-hindsight", "--no-progress-bar", "--out", str(out),
        "--pretrain-teacher", "rolling-milp", "--pretrain-teacher-window", "3", "--pretrain-teacher-time-limit", "5",
        "--pretrain-episodes", "30", "--pretrain-epochs", "20",
    )  # fmt: skip
    assert "imitation warm start" in proc.stdout
    config = PPOConfig.from_file(out / "config.yaml")
    assert (config.pretrain_teacher, config.pretrain_teacher_window, config.pretrain_teacher_time_limit) == (
        "rolling-milp", 3, 5.0,
    )  # fmt: skip
    figures = yaml.safe_load((out / "summary.yaml").read_text())["pretrain"]
    assert figures["teacher"] == "rolling-milp" and figures["env_steps"] == 90 and figures["daily_solves"] == 90
    assert figures["slot_agreement"] >= 0.8  # the cloned policy's mode is the MILP's choice on most slots
    # validation row at 0 timesteps is the cloned policy before any PPO update; it is no random policy
    first = read_csv(out / "eval.csv")[0]
    assert first["timesteps"] == "0"
    random_policy = make_policy("random", "tiny")
    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    random_mean = np.mean([run_episode(env, random_policy, s).episode_return for s in range(900, 910)])
    assert float(first["mean_return"]) > random_mean
    # a resumed session does no warm start; its summary keeps the first session's figures
    train("--out", str(out), "--resume", "--timesteps", "96", "--no-progress-bar")
    assert yaml.safe_load((out / "summary.yaml").read_text())["pretrain"] == figures


def test_unknown_teacher_option_fails_up_front_naming_the_field(tmp_path):
    proc = train(
        *BASE, "--timesteps", "48", "--out", str(tmp_path / "bad"), "--pretrain-teacher", "rolling-milp",
        "--pretrain-teacher-window", "0", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "pretrain_teacher_window=0 must be an integer >= 1" in proc.stderr
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ several seeds (agents/sweep.py)
SWEEP = [a for a in BASE if a not in ("--seed", "1")]  # BASE without its single seed


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    train(*SWEEP, "--timesteps", "96", "--seeds", "1,3", "--workers", "2", "--out", str(out))
    return out


def test_seeds_train_one_run_each_and_a_summary_across_them(sweep_dir, run_dir):
    from agents.sweep import SEED_COLUMNS

    rows = read_csv(sweep_dir / "seeds.csv")
    assert tuple(rows[0]) == SEED_COLUMNS and [r["seed"] for r in rows] == ["1", "3"]
    for row in rows:
        run = sweep_dir / row["run_dir"]
        assert all((run / name).is_file() for name in AGENT_FILES)
        assert load_agent(run) is not None and PPOConfig.from_file(run / "config.yaml").seed == int(row["seed"])
        last = read_csv(run / "eval.csv")[-1]  # the row is the run's own last validation
        assert (row["timesteps"], row["final_mean_ratio"]) == ("96", last["mean_ratio"])
    # seed 1 of the sweep is the same run as the single-seed run with --seed 1: same validation curve
    curve = [(r["timesteps"], r["mean_return"]) for r in read_csv(sweep_dir / "seed_1" / "eval.csv")]
    assert curve == [(r["timesteps"], r["mean_return"]) for r in read_csv(run_dir / "eval.csv")]
    summary = yaml.safe_load((sweep_dir / "seeds_summary.yaml").read_text())
    ratios = [float(r["final_mean_ratio"]) for r in rows]
    assert summary["seeds"] == [1, 3] and summary["n"] == 2
    assert summary["final_mean_ratio"]["mean"] == pytest.approx(np.mean(ratios), abs=1e-12)
    assert min(ratios) <= summary["final_mean_ratio"]["low"] <= summary["final_mean_ratio"]["high"] <= max(ratios)
    assert "--seeds 1,3" in summary["command"]


def test_a_finished_sweep_resumed_trains_nothing_and_changes_nothing(sweep_dir):
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*.safetensors")}
    proc = train("--seeds", "1,3", "--resume", "--out", str(sweep_dir), "--no-progress-bar")
    assert proc.stdout.count("nothing to do") == 2
    assert before == {p: p.read_bytes() for p in sweep_dir.rglob("*.safetensors")}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0-1", "--seed", "3"], "--seed and --seeds: give one of them"),
        (["--seeds", "2-1"], "--seeds: range '2-1' is empty"),
        (["--seeds", "0-1", "--backend", "dask"], "--backend: 'dask' is not allowed; allowed: ['local', 'ray']"),
        (["--backend", "ray"], "--backend: only with --seeds"),
        (["--seeds", "0-1", "--ray-address", "auto"], "--ray-address: given, but --backend is 'local'"),
        (["--seeds", "0-1", "--workers", "0"], "--workers: 0 must be an integer >= 1"),
    ],
)
def test_bad_sweep_flags_fail_up_front(tmp_path, capsys, extra, message):
    code, err = run_main([*SWEEP, "--timesteps", "96", "--out", str(tmp_path / "bad"), *extra], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad").exists()
