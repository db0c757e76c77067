"""evaluate.py end to end on `tiny`: every promised file and column, the hindsight optimum bounds every
policy, an interrupted run resumes to the same episodes, a rerun changes nothing, the worker count changes
nothing, bad input stops before any work, and the `make demo` command runs."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_evaluate

from envs.dynamics import KPI_NAMES
from envs.reward import TERM_NAMES
from evaluation import metrics, report
from evaluation.policies import HINDSIGHT, EvaluateError
from evaluation.runner import TIMING_COLUMNS, format_seeds, parse_seeds

ROOT = Path(__file__).resolve().parents[1]
run_main = run_evaluate  # evaluate.main in this process: (exit code, stdout, stderr)
SEEDS = "0-5"
N_SEEDS = 6
BUILTIN = "rolling-milp,greedy,base-stock,random,home"
REPORT_FILES = (
    "episodes.csv",
    "episodes.parquet",
    "summary.csv",
    "ratio_to_optimum.png",
    "return_decomposition.png",
    "table3_greedy_vs_ppo.csv",
    "table3_greedy_vs_ppo.png",
    "config.json",
    "scenario.yaml",
)
EPISODE_COLUMNS = {
    "policy", "seed", "return", *TERM_NAMES, *KPI_NAMES, "hindsight_return", "ratio_to_optimum", "ratio_to_bound",
    "steps", "decision_seconds_per_step", "milp_status", "milp_objective", "milp_bound", "milp_gap", "milp_seconds",
}  # fmt: skip


def snapshot(folder: Path, pattern: str = "*") -> dict[str, tuple[bytes, int]]:
    files = (p for p in folder.rglob(pattern) if p.is_file())
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def without_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in (*TIMING_COLUMNS, "decision_ms_per_step") if c in df.columns])


@pytest.fixture(scope="module")
def agent(tiny_agent) -> Path:
    return tiny_agent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hindsight-cache")


def eval_args(out: Path, agent: Path, cache_dir: Path, workers: int = 1, seeds: str = SEEDS) -> list[str]:
    return [
        "--scenario", "tiny", "--policies", f"ppo={agent},{BUILTIN}", "--seeds", seeds, "--out", str(out),
        "--workers", str(workers), "--cache-dir", str(cache_dir), "--compare", "greedy,ppo",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory, agent, cache_dir) -> Path:
    """One complete run in this process (one worker)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    code, stdout, stderr = run_main(eval_args(out, agent, cache_dir))
    assert code == 0, stderr
    assert "Mean over 6 seeds" in stdout and "Table 3 form: ppo against greedy" in stdout
    return out


# --------------------------------------------------------------- the outputs
def test_every_promised_file_and_column(finished):
    for name in REPORT_FILES:
        assert (finished / name).is_file() and (finished / name).stat().st_size > 0, name
    for name in ("ratio_to_optimum.png", "return_decomposition.png", "table3_greedy_vs_ppo.png"):
        assert (finished / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    episodes = pd.read_csv(finished / "episodes.csv")
    assert set(episodes.columns) == EPISODE_COLUMNS
    labels = [HINDSIGHT, "ppo", *BUILTIN.split(",")]
    assert list(dict.fromkeys(episodes["policy"])) == labels
    for label in labels:  # one row per policy x seed
        assert sorted(episodes.loc[episodes["policy"] == label, "seed"]) == list(range(N_SEEDS))
    parquet = pd.read_parquet(finished / "episodes.parquet")
    pd.testing.assert_frame_equal(parquet.drop(columns="milp_status"), episodes.drop(columns="milp_status"))
    # MILP rows carry status, bound and gap; the others do not
    h = episodes.loc[episodes["policy"] == HINDSIGHT]
    assert set(h["milp_status"]) == {"optimal"} and h["milp_bound"].notna().all() and (h["milp_gap"] < 1e-6).all()
    assert episodes.loc[episodes["policy"] == "greedy", ["milp_status", "milp_bound", "milp_gap"]].isna().all().all()
    rolling = episodes.loc[episodes["policy"] == "rolling-milp"]
    assert rolling["milp_status"].notna().all()
    # the reward terms sum to the return on every row
    signed = sum(report.TERM_SIGN[name] * episodes[name] for name in TERM_NAMES)
    np.testing.assert_allclose(signed, episodes["return"], rtol=1e-9, atol=1e-9)

    summary = pd.read_csv(finished / "summary.csv")
    assert list(summary["policy"]) == labels
    for column in ("mean_return", "return_ci_low", "return_ci_high", "iqm_return", "mean_ratio_to_optimum",
                   "ratio_ci_low", "ratio_ci_high", *(f"win_rate_vs_{label}" for label in labels)):  # fmt: skip
        assert column in summary.columns, column
    table = pd.read_csv(finished / "table3_greedy_vs_ppo.csv")
    assert list(table.columns) == ["indicator", "baseline", "policy", "baseline_value", "policy_value", "change_pct",
                                   "paper_before", "paper_after", "paper_change_pct"]  # fmt: skip
    assert table["indicator"].iloc[0] == "Transport cost per unit (USD)"
    # the paper's figures stand beside the indicators it reports, and only those
    paper = table.set_index("indicator")[["paper_before", "paper_after", "paper_change_pct"]]
    assert paper.loc["Transport cost per unit (USD)"].tolist() == [25.4, 20.7, -18.5]
    assert paper.loc["On-time rate (%)"].tolist() == [78.4, 89.1, 13.6]
    assert paper.notna().all(axis=1).sum() == len(report.PAPER_TABLE3)
    config = json.loads((finished / "config.json").read_text())
    assert config["run"]["seeds"] == list(range(N_SEEDS)) and config["run"]["env_id"] == "CrossBorderDispatch-v0"
    assert config["versions"]["packages"]["numpy"] == np.__version__
    assert config["report"]["compare"] == [["greedy", "ppo"]]


def test_hindsight_optimum_bounds_every_policy_on_every_seed(finished):
    episodes = pd.read_csv(finished / "episodes.csv")
    optimum = episodes.loc[episodes["policy"] == HINDSIGHT].set_index("seed")["return"]
    others = episodes.loc[episodes["policy"] != HINDSIGHT]
    limit = others["seed"].map(optimum)
    assert (others["return"] <= limit + 1e-6 * np.maximum(1.0, limit.abs())).all()
    assert (others["ratio_to_optimum"] <= 1.0 + 1e-9).all()
    expected = 1.0 - (limit - others["return"]) / limit.abs()
    np.testing.assert_allclose(others["ratio_to_optimum"], expected, rtol=1e-12)
    np.testing.assert_allclose(others["ratio_to_bound"], others["ratio_to_optimum"], rtol=1e-6)  # proven optima
    assert report.bound_violations(episodes) == []


def test_summary_statistics_match_the_episodes(finished):
    episodes = pd.read_csv(finished / "episodes.csv")
    summary = pd.read_csv(finished / "summary.csv").set_index("policy")
    for label, rows in episodes.groupby("policy"):
        s = summary.loc[label]
        assert s["episodes"] == N_SEEDS
        assert s["mean_return"] == pytest.approx(rows["return"].mean())
        assert s["return_ci_low"] <= s["mean_return"] <= s["return_ci_high"]
        assert rows["return"].min() <= s["iqm_return"] <= rows["return"].max()
        assert s["mean_ratio_to_optimum"] == pytest.approx(rows["ratio_to_optimum"].mean())
        assert np.isnan(s[f"win_rate_vs_{label}"])
    assert summary.loc[HINDSIGHT, "mean_ratio_to_optimum"] == pytest.approx(1.0)
    # win rates of a pair add up to one (ties count half)
    assert summary.loc["ppo", "win_rate_vs_greedy"] + summary.loc["greedy", "win_rate_vs_ppo"] == pytest.approx(1.0)
    assert summary.loc[HINDSIGHT, "win_rate_vs_random"] >= 0.5


@pytest.mark.parametrize("env_id", ["CrossBorderRouting-v0", "CrossBorderTransfer-v0"])
def test_scenario_file_and_other_env_ids(env_id, cache_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--scenario", str(ROOT / "envs/scenarios/tiny.yaml"), "--env", env_id, "--policies", "rolling-milp,random",
            "--seeds", "0-2", "--out", str(out), "--workers", "1", "--cache-dir", str(cache_dir)]  # fmt: skip
    code, stdout, stderr = run_main(args)
    assert code == 0, stderr
    assert "Table 3 form: rolling-milp against random" in stdout
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 9 and report.bound_violations(episodes) == []
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["env_id"] == env_id and config["run"]["scenario"]["name"] == "tiny"


def test_rolling_options_reach_the_policy_and_the_run_identity(cache_dir, tmp_path):
    """--rolling-window changes what rolling-milp plays and is part of the run: a resume with another is refused."""

    def run(window: str, out: Path) -> tuple[int, str]:
        args = ["--scenario", "tiny", "--policies", "rolling-milp", "--seeds", "0-3", "--out", str(out),
                "--workers", "1", "--cache-dir", str(cache_dir), "--rolling-window", window]  # fmt: skip
        code, _, stderr = run_main(args)
        return code, " ".join(stderr.split())

    assert run("1", tmp_path / "w1")[0] == 0 and run("3", tmp_path / "w3")[0] == 0
    configs = [json.loads((tmp_path / w / "config.json").read_text()) for w in ("w1", "w3")]
    [opts1, opts3] = [[p for p in c["run"]["policies"] if p["label"] == "rolling-milp"][0]["options"] for c in configs]
    assert dict(opts1) == {"window": 1, "time_limit": None, "mip_gap": 0.01, "node_limit": 1000}
    assert dict(opts3)["window"] == 3
    returns = [pd.read_csv(tmp_path / w / "episodes.csv").query("policy == 'rolling-milp'")["return"].to_numpy()
               for w in ("w1", "w3")]  # fmt: skip
    assert not np.allclose(returns[0], returns[1])  # a 1-day window cannot see transfers pay off
    before = snapshot(tmp_path / "w1")
    code, message = run("3", tmp_path / "w1")
    assert code == 2 and "--out" in message and "policies" in message
    assert snapshot(tmp_path / "w1") == before


def test_paper_table3_changes_follow_from_its_before_and_after():
    # the paper states each change rounded to 0.1 point; a typo in a figure would break the identity
    for column, (before, after, stated) in report.PAPER_TABLE3.items():
        assert abs(100.0 * (after - before) / abs(before) - stated) <= 0.05 + 1e-9, column
    assert set(report.PAPER_TABLE3) <= {column for _, column, _, _ in report.TABLE3_INDICATORS}


def test_statistics_helpers():
    assert metrics.interquartile_mean(np.array([100.0, 1.0, 2.0, 3.0, 4.0, -50.0, 5.0, 6.0])) == pytest.approx(3.5)
    assert report.win_rate(np.array([2.0, 1.0, 3.0, 0.0]), np.array([1.0, 1.0, 4.0, 0.0])) == pytest.approx(0.5)
    values = np.arange(20.0)
    a = metrics.bootstrap_mean_ci(values, np.random.default_rng(1), 2000, 0.95)
    b = metrics.bootstrap_mean_ci(values, np.random.default_rng(1), 2000, 0.95)
    assert a == b and a[0] < values.mean() < a[1]
    np.testing.assert_array_equal(report.ratio_to_optimum(np.array([90.0, -110.0]), np.array([100.0, -100.0])),
                                  np.array([0.9, 0.9]))  # fmt: skip


# ------------------------------------------------ determinism and resumption
def test_rerun_into_the_same_folder_changes_nothing(finished, agent, cache_dir):
    before = snapshot(finished)
    code, stdout, stderr = run_main(eval_args(finished, agent, cache_dir))
    assert code == 0, stderr
    assert f"0 of {7 * N_SEEDS} episodes to run" in stdout
    assert snapshot(finished) == before  # same bytes and same mtimes


def test_worker_count_does_not_change_results(finished, agent, cache_dir, tmp_path):
    out = tmp_path / "two-workers"
    code, _, stderr = run_main(eval_args(out, agent, cache_dir, workers=2))
    assert code == 0, stderr
    for name in ("episodes.csv", "summary.csv"):
        pd.testing.assert_frame_equal(
            without_timing(pd.read_csv(out / name)), without_timing(pd.read_csv(finished / name))
        )
    assert (out / "table3_greedy_vs_ppo.csv").read_bytes() == (finished / "table3_greedy_vs_ppo.csv").read_bytes()


def test_killed_run_resumes_to_the_same_episodes_without_redoing_rows(finished, agent, tmp_path):
    out = tmp_path / "killed"
    # two workers: rows must be saved as each finishes, not when the pool is done
    command = [sys.executable, str(ROOT / "evaluate.py"), *eval_args(out, agent, tmp_path / "cache", workers=2)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    rows = out / "rows"
    deadline = time.monotonic() + 120
    try:
        while len(list(rows.glob("*.json"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = snapshot(rows, "*.json")  # finished rows (a kill during a write leaves a hidden temp file)
    assert 5 <= len(saved) < 7 * N_SEEDS, "the run must be killed midway"
    assert not (out / "episodes.csv").exists()

    code, stdout, stderr = run_main(eval_args(out, agent, tmp_path / "cache"))
    assert code == 0, stderr
    assert f"{7 * N_SEEDS - len(saved)} of {7 * N_SEEDS} episodes to run" in stdout
    after = snapshot(rows)
    assert all(after[name] == saved[name] for name in saved)  # finished rows were not redone
    assert not list(out.rglob("*.tmp"))
    pd.testing.assert_frame_equal(
        without_timing(pd.read_csv(out / "episodes.csv")), without_timing(pd.read_csv(finished / "episodes.csv"))
    )


def test_pool_saves_each_row_as_it_finishes(tmp_path):
    """With workers, a quick row is on disk while a slow one (a `large` hindsight solve) is still running."""
    out = tmp_path / "large"
    options = ["--scenario", "large", "--policies", "greedy", "--seeds", "0", "--workers", "2", "--time-limit", "300",
               "--out", str(out), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.Popen([sys.executable, str(ROOT / "evaluate.py"), *options], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while not (out / "rows" / "greedy__0.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        still_running = proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "rows" / "greedy__0.json").exists() and still_running
    assert not (out / "rows" / f"{HINDSIGHT}__0.json").exists()


# ------------------------------------------------------------------ bad input
def test_seed_ranges_parse_and_print_back():
    assert parse_seeds("1000-1003") == (1000, 1001, 1002, 1003)
    assert parse_seeds("1, 5,9-11") == (1, 5, 9, 10, 11)
    assert format_seeds(parse_seeds("1,5,9-11,2")) == "1,5,9-11,2"
    for bad, words in (("5-2", "empty"), ("a-b", "malformed"), ("", "malformed"), ("1-3,2", "more than once"),
                       ("-1", "malformed"), ("1.5", "malformed")):  # fmt: skip
        with pytest.raises(EvaluateError, match=f"--seeds: .*{words}"):
            parse_seeds(bad)


@pytest.fixture(scope="module")
def routing_agent(tmp_path_factory) -> Path:
    from conftest import train_tiny_agent

    return train_tiny_agent(tmp_path_factory.mktemp("agent") / "routing-ppo", env_id="CrossBorderRouting-v0")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"--policies": "greedy,best-policy"}, ["--policies", "unknown policy 'best-policy'", "rolling-milp"]),
        ({"--policies": "greedy,greedy"}, ["--policies", "more than once"]),
        ({"--policies": "ppo=does/not/exist"}, ["--policies ppo=does/not/exist", "does not exist"]),
        ({"--seeds": "5-2"}, ["--seeds", "'5-2' is empty", "A-B with A <= B"]),
        ({"--seeds": "a-b"}, ["--seeds", "'a-b' is malformed", "1000-1099"]),
        ({"--scenario": "atlantis"}, ["--scenario", "'atlantis'", "tiny"]),
        ({"--env": "CrossBorder-v9"}, ["--env", "'CrossBorder-v9'", "CrossBorderDispatch-v0"]),
        ({"--compare": "greedy,nobody"}, ["--compare", "'nobody' is not a policy"]),
        ({"--workers": "0"}, ["--workers", ">= 1"]),
        ({"--time-limit": "-1"}, ["--time-limit", "> 0"]),
        ({"--rolling-window": "3"}, ["--rolling-window", "rolling-milp is not in --policies"]),
        ({"--policies": "rolling-milp", "--rolling-window": "0"}, ["--rolling-window", "window=0", "integer >= 1"]),
        ({"--policies": "rolling-milp", "--rolling-mip-gap": "1.5"}, ["--rolling-mip-gap", "in [0, 1)"]),
        ({"--policies": "rolling-milp", "--rolling-time-limit": "0"}, ["--rolling-time-limit", "> 0"]),
        ({"--policies": "rolling-milp", "--rolling-node-limit": "0"}, ["--rolling-node-limit", "integer >= 1"]),
        ({"--rolling-node-limit": "5"}, ["--rolling-node-limit", "rolling-milp is not in --policies"]),
        ({"agent": "routing"}, ["ppo=", "env id 'CrossBorderRouting-v0'", "--env is 'CrossBorderDispatch-v0'"]),
        ({"agent": "tiny", "--scenario": "table1"}, ["ppo=", "scenario 'tiny'", "does not fit scenario 'table1'"]),
    ],
)  # fmt: skip
def test_bad_input_stops_before_any_work(change, words, agent, routing_agent, tmp_path):
    options = {"--scenario": "tiny", "--policies": "greedy", "--seeds": "0-1", "--out": str(tmp_path / "out"),
               "--cache-dir": str(tmp_path / "cache"), "--workers": "1"}  # fmt: skip
    if "agent" in change:
        options["--policies"] = f"ppo={routing_agent if change['agent'] == 'routing' else agent},greedy"
    options.update({k: v for k, v in change.items() if k.startswith("--")})
    code, _, stderr = run_main([x for kv in options.items() for x in kv])
    assert code == 2
    message = " ".join(stderr.split())
    for word in words:
        assert word in message, (word, message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_an_out_folder_holding_another_run_is_refused_untouched(finished, agent, cache_dir):
    before = snapshot(finished)
    code, _, stderr = run_main(eval_args(finished, agent, cache_dir, seeds="0-6"))
    assert code == 2 and "--out" in stderr and "seeds: was 0-5, now 0-6" in " ".join(stderr.split())
    assert snapshot(finished) == before


# ---------------------------------------------------------------- make demo
def test_make_demo_runs_evaluate_and_prints_the_table(tmp_path):
    """The README's main job: the exact evaluate.py command of `make demo`, on one seed with a shorter MILP limit."""
    variables = ["DEMO_SEEDS=1000", "DEMO_TIME_LIMIT=5", f"DEMO_OUT={tmp_path / 'demo'}"]  # one seed, short solve
    dry = subprocess.run(["make", "-n", "demo", *variables], cwd=ROOT, capture_output=True, text=True, check=True)
    dry = dry.stdout
    [line] = [line for line in dry.splitlines() if "evaluate.py" in line]
    argv = shlex.split(line)
    assert argv[0].endswith("python") and "--workers" in argv
    shipped = (ROOT / "agents/checkpoints/table1__CrossBorderDispatch-v0/policy.safetensors").is_file()
    if shipped:
        assert "ppo=agents/checkpoints/table1__CrossBorderDispatch-v0" in line
    argv[0] = sys.executable
    done = subprocess.run([*argv, "--cache-dir", str(tmp_path / "cache")], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Mean over 1 seed " in done.stdout
    for label in ("hindsight-milp", "rolling-milp", "greedy", "base-stock", "random", *(["ppo"] * shipped)):
        assert label in done.stdout
    assert f"Table 3 form: {'ppo' if shipped else 'rolling-milp'} against greedy" in done.stdout
    assert (tmp_path / "demo" / "summary.csv").is_file()


def test_timelines_of_chosen_seeds_agree_with_the_episodes(cache_dir, tmp_path):
    out = tmp_path / "timeline-run"
    args = ["--scenario", "table1-det", "--policies", "greedy,base-stock", "--seeds", "0-2", "--out", str(out),
            "--workers", "1", "--cache-dir", str(cache_dir), "--time-limit", "5", "--timeline", "0,2"]  # fmt: skip
    code, stdout, stderr = run_main(args)
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "timeline").iterdir()) == [
        "seed_0.csv",
        "seed_0.png",
        "seed_2.csv",
        "seed_2.png",
    ]
    episodes = pd.read_csv(out / "episodes.csv").set_index(["policy", "seed"])
    for seed in (0, 2):
        frame = pd.read_csv(out / "timeline" / f"seed_{seed}.csv")
        assert list(frame["policy"].unique()) == [HINDSIGHT, "greedy", "base-stock"]
        for policy, part in frame.groupby("policy"):
            row = episodes.loc[(policy, seed)]
            assert list(part["day"]) == list(range(30))
            # the day-by-day figures add up to what the episode row reports
            assert part["reward"].sum() == pytest.approx(row["return"], rel=1e-9, abs=1e-6)
            assert part["units_shipped"].sum() == row["units_shipped"]
            assert part["units_transferred"].sum() == row["units_transferred"]
            shipped = part[[c for c in part.columns if c.startswith("shipped:")]].sum(axis=1)
            assert (shipped == part["units_shipped"]).all()
            assert (part[[c for c in part.columns if c.startswith("on_hand:")]] >= 0).all().all()
        image = plt_image(out / "timeline" / f"seed_{seed}.png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0


def plt_image(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


@pytest.mark.parametrize(
    ("timeline", "words"),
    [("7", ["--timeline", "seeds [7] are not in --seeds"]), ("x", ["--timeline", "'x' is malformed"])],
)
def test_bad_timeline_seeds_stop_before_anything_is_written(timeline, words, tmp_path):
    out = tmp_path / "bad"
    args = ["--scenario", "tiny", "--policies", "greedy", "--seeds", "0-1", "--out", str(out), "--workers", "1",
            "--timeline", timeline]  # fmt: skip
    code, _, stderr = run_main(args)
    assert code == 2 and all(w in " ".join(stderr.split()) for w in words), stderr
    assert not out.exists()
