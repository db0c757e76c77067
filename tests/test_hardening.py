"""Bad input, hostile files and interruptions (issue 14): one clear error each, before anything is written;
no code run from a file we load; no silent wrong result."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from conftest import run_evaluate as evaluate_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from agents import load_agent
from agents.checkpoint import CheckpointError, UntrustedCheckpointError
from envs.scenario import Scenario, ScenarioError, load_scenario
from evaluation.cache import CacheWarning, cached_hindsight

ROOT = Path(__file__).resolve().parents[1]


def run_evaluate(args: list[str]) -> tuple[int, str, str]:
    """``evaluate.main`` in this process, its stderr on one line (messages wrap)."""
    code, out, err = evaluate_main(args)
    return code, out, " ".join(err.split())


def run_train(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


class _Exploit:
    """Unpickling this creates a marker file: what a crafted checkpoint could do with a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_legacy_agent(directory: Path, marker: Path, template: Path) -> Path:
    """An agent folder of the old format whose model.zip and vecnormalize.pkl run code when unpickled."""
    directory.mkdir(parents=True)
    meta = json.loads((template / "agent.json").read_text())
    meta.pop("format"), meta.pop("files")
    (directory / "agent.json").write_text(json.dumps(meta))
    shutil.copy(template / "config.yaml", directory / "config.yaml")
    shutil.copy(template / "scenario.yaml", directory / "scenario.yaml")
    payload = {":type:": "<class 'x'>", ":serialized:": base64.b64encode(pickle.dumps(_Exploit(marker))).decode()}
    with zipfile.ZipFile(directory / "model.zip", "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": payload}))
    (directory / "vecnormalize.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    return directory


# ------------------------------------------------------------------ 1. loading a checkpoint runs no code
def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tiny_agent, tmp_path):
    marker = tmp_path / "pwned"
    crafted = crafted_legacy_agent(tmp_path / "crafted", marker, tiny_agent)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        load_agent(crafted)
    code, _, err = run_evaluate([
        "--scenario", "tiny", "--policies", f"ppo={crafted},greedy", "--seeds", "0", "--out", str(tmp_path / "out"),
        "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
    ])  # fmt: skip
    assert code == 2 and "pickle-based format" in err and "--trust-checkpoint" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # the unpickling really is the danger: with the user's explicit trust, the payload runs
    with contextlib.suppress(Exception):
        load_agent(crafted, trust=True)
    assert marker.exists()


def test_agent_files_are_checksummed(tiny_agent, tmp_path):
    copy = Path(shutil.copytree(tiny_agent, tmp_path / "agent"))
    data = bytearray((copy / "policy.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight
    (copy / "policy.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"policy.safetensors does not match its checksum"):
        load_agent(copy)
    shutil.copy(tiny_agent / "policy.safetensors", copy / "policy.safetensors")
    load_agent(copy)  # restored: loads again
    meta = json.loads((copy / "agent.json").read_text())
    meta["files"]["run.sh"] = "0" * 64
    (copy / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="'run.sh', which is not an agent file"):
        load_agent(copy)


def test_missing_normalization_is_an_error(tiny_agent, tmp_path):
    copy = Path(shutil.copytree(tiny_agent, tmp_path / "agent"))
    (copy / "normalization.json").unlink()
    with pytest.raises(CheckpointError, match="normalization.json is missing"):
        load_agent(copy)
    meta = json.loads((copy / "agent.json").read_text())
    del meta["files"]["normalization.json"]  # even unlisted: the config says the agent was normalized
    (copy / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="normalization.json is missing.*normalized observations"):
        load_agent(copy)


def test_shipped_agents_are_data_only():
    for directory in sorted((ROOT / "agents" / "checkpoints").iterdir()):
        assert not (directory / "model.zip").exists() and not (directory / "vecnormalize.pkl").exists()
        agent = load_agent(directory)  # verifies every checksum, without trust
        assert agent.normalizer is not None and agent.meta.num_timesteps > 0


# ------------------------------------------------------------------ 2. names used in paths are plain
def test_a_scenario_name_cannot_steer_paths(tmp_path):
    data = load_scenario("tiny").to_dict() | {"name": "x/../../../tmp/escaped"}
    with pytest.raises(ScenarioError, match=r"name: String should match pattern"):
        Scenario.from_dict(data)
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_train("--scenario", str(path), "--timesteps", "48", "--n-envs", "2", "--n-steps", "24",
                     "--batch-size", "16", "--no-progress-bar")  # fmt: skip
    assert proc.returncode == 2 and "name: String should match pattern" in proc.stderr
    assert not Path("/tmp/escaped").exists() and not (ROOT / "runs" / "CrossBorderDispatch-v0__x").exists()


# ------------------------------------------------------------------ 3. numbers are finite and sane
def _mutate(path: tuple, value):
    def apply(data: dict) -> dict:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    return apply


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("skus", 0, "unit_profit"), float("inf"), ["skus.0.unit_profit", "less than or equal", "got inf"]),
        (("skus", 0, "lost_sale_penalty"), float("inf"), ["skus.0.lost_sale_penalty", "got inf"]),
        (("delay_penalty_alpha",), float("inf"), ["delay_penalty_alpha", "got inf"]),
        (("delivery_lanes", 0, "distance_km"), float("inf"), ["delivery_lanes.0.distance_km", "got inf"]),
        (("skus", 0, "unit_profit"), float("nan"), ["skus.0.unit_profit", "got nan"]),
        (("regions", 0, "demand", "gadget", "trend"), float("nan"), ["trend", "got nan"]),
        (("regions", 0, "demand", "gadget", "base_rate"), 1e30, ["base_rate", "less than or equal"]),
        (("transfer_lanes", 0, "quantity_levels"), [0, 10**30], ["quantity_levels.1", "less than or equal"]),
        (("lots_per_batch",), 10**9, ["lots_per_batch", "less than or equal to 100"]),
        (("horizon_days",), 10**7, ["horizon_days", "less than or equal to 3650"]),
        (("horizon_days",), True, ["horizon_days", "valid integer"]),
        (("skus", 0, "unit_profit"), True, ["unit_profit", "must be a number"]),
        (("skus", 0, "unit_profit"), "12", ["unit_profit", "must be a number"]),
        (("deterministic",), "yes", ["deterministic", "valid boolean"]),
    ],
)
def test_numbers_are_finite_and_bounded(path, value, words):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(_mutate(path, value)(load_scenario("tiny").to_dict()))
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_scenario_sizes_are_capped():
    data = load_scenario("tiny").to_dict()
    data |= {"horizon_days": 3650, "lots_per_batch": 100}
    data["skus"] += [dict(data["skus"][0], name=f"sku{i}") for i in range(60)]
    with pytest.raises(ScenarioError, match=r"horizon_days \* regions \* skus \* lots_per_batch .* at most"):
        Scenario.from_dict(data)
    data = load_scenario("tiny").to_dict() | {"horizon_days": 3000}
    data["regions"][0]["demand"]["gadget"] |= {"base_rate": 1000.0, "trend": 1.0}
    with pytest.raises(ScenarioError, match=r"reaches .* units on day .* at most 1,000,000 units/day"):
        Scenario.from_dict(data)


def test_duplicate_keys_and_undecodable_files_are_errors(tmp_path):
    text = (envs.scenario.PRESET_DIR / "tiny.yaml").read_text()
    (tmp_path / "dup.yaml").write_text(text + "lots_per_batch: 3\n")
    with pytest.raises(ScenarioError, match="duplicate key 'lots_per_batch'"):
        Scenario.from_file(tmp_path / "dup.yaml")
    (tmp_path / "dup.json").write_text('{"name": "a", "name": "b"}')
    with pytest.raises(ScenarioError, match=r"duplicate keys \['name'\]"):
        Scenario.from_file(tmp_path / "dup.json")
    (tmp_path / "bytes.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        Scenario.from_file(tmp_path / "bytes.yaml")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ScenarioError, match="nested too deeply|not valid JSON"):
        Scenario.from_file(tmp_path / "deep.json")


MUTATIONS = st.sampled_from([0, -1, 1, 10**12, 1e300, float("inf"), float("nan"), True, None, "x", [], {}, 0.5])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_scenarios_are_valid_and_run_or_fail_with_one_scenario_error(data):
    """Random mutations of valid presets: either a valid scenario whose env runs with finite rewards, or one
    ScenarioError (never another exception, never a NaN)."""
    preset = data.draw(st.sampled_from(["tiny", "table1"]))
    doc = load_scenario(preset).to_dict()
    for _ in range(data.draw(st.integers(1, 3))):
        node, path = doc, []
        while isinstance(node, dict | list) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if path:
            _mutate(tuple(path), data.draw(MUTATIONS))(doc)
    try:
        scenario = Scenario.from_dict(doc)
    except ScenarioError:
        return
    env = gym.make("CrossBorderDispatch-v0", scenario=scenario)
    env.reset(seed=0)
    for _ in range(min(scenario.horizon_days, 5)):
        _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
        assert np.isfinite(reward) and all(np.isfinite(v) for v in info["reward_terms"].values())
        if terminated:
            break


# ------------------------------------------------------------------ 4. the hindsight cache is checked
@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda doc: doc["result"].__setitem__("bound", doc["result"]["bound"] + 50.0), "does not match its checksum"),
        (lambda doc: doc["result"].__setitem__("status", "time_limit"), "does not match its checksum"),
        (lambda doc: doc["result"].__setitem__("objective", 1e9), "does not match its checksum"),
        (lambda doc: doc.__setitem__("sha256", "0" * 64), "does not match its checksum"),
        (lambda doc: doc.__setitem__("spec", {**doc["spec"], "seed": 9}), "answers another question"),
        (lambda doc: doc.pop("sha256"), "not a cache entry"),
    ],
)
def test_an_edited_cache_entry_is_named_discarded_and_solved_again(tmp_path, edit, words):
    first = cached_hindsight("tiny", 1, cache_dir=tmp_path)
    [path] = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.warns(CacheWarning, match=words) as caught:
        again = cached_hindsight("tiny", 1, cache_dir=tmp_path)
    assert str(path) in str(caught[0].message)
    assert (again.objective, again.bound, again.status) == (first.objective, first.bound, first.status)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the entry was rewritten whole: no warning the next time
        cached_hindsight("tiny", 1, cache_dir=tmp_path)


def test_a_cache_entry_of_the_wrong_shape_is_refused(tmp_path):
    cached_hindsight("tiny", 1, cache_dir=tmp_path)
    [path] = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    doc["result"]["plan"] = doc["result"]["plan"][:-1]
    from evaluation.cache import _digest

    doc["sha256"] = _digest(doc["result"])  # a consistent forgery: the shape check still catches it
    path.write_text(json.dumps(doc))
    with pytest.warns(CacheWarning, match="plan is not 3 daily actions"):
        cached_hindsight("tiny", 1, cache_dir=tmp_path)


# ------------------------------------------------------------------ 6. resuming training keeps the run whole
TRAIN = ["--env", "CrossBorderDispatch-v0", "--scenario", "tiny", "--seed", "1", "--n-envs", "2", "--n-steps", "24",
         "--batch-size", "16", "--n-epochs", "2", "--net-arch", "16", "--eval-freq", "48", "--checkpoint-freq", "48",
         "--no-hindsight", "--no-progress-bar"]  # fmt: skip


def _timesteps(path: Path) -> list[int]:
    import csv

    with open(path, newline="") as fh:
        return [int(row["timesteps"]) for row in csv.DictReader(fh)]


def test_a_killed_training_resumes_with_every_timestep_logged_once(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *TRAIN, "--timesteps", "960", "--out", str(out)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    # kill it at a point drawn between checkpoints (seeded: the test is reproducible), while episodes are logged
    kill_after = int(np.random.default_rng(14).integers(100, 700))
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            logged = _timesteps(out / "episodes.csv") if (out / "episodes.csv").is_file() else []
            if (out / "checkpoints").is_dir() and logged and max(logged) > kill_after:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0, "the run must be killed midway"
    done = run_train("--out", str(out), "--resume", "--timesteps", "960")
    assert done.returncode == 0, done.stderr[-2000:]
    episodes = _timesteps(out / "episodes.csv")
    assert len(episodes) == 960 // 3 and episodes == sorted(episodes)  # every episode once, in order
    evals = _timesteps(out / "eval.csv")
    assert evals == sorted(set(evals)) and evals[-1] == 960


def test_a_damaged_run_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "run"
    assert run_train(*TRAIN, "--timesteps", "96", "--out", str(out)).returncode == 0
    latest = sorted((out / "checkpoints").glob("step_*"))[-1]
    (latest / "normalization.json").unlink()  # a half-written checkpoint
    proc = run_train("--out", str(out), "--resume", "--timesteps", "144")
    assert proc.returncode == 2 and "normalization.json is missing" in proc.stderr
    shutil.rmtree(latest)
    config = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text("\n".join(config.splitlines()[:5]))  # a truncated config
    proc = run_train("--out", str(out), "--resume", "--timesteps", "144")
    assert proc.returncode == 2 and "config.yaml is incomplete" in proc.stderr and "n_steps" in proc.stderr
    assert (out / "config.yaml").read_text() == "\n".join(config.splitlines()[:5])  # not rewritten


def test_a_new_run_into_a_used_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "episodes.csv").write_text("timesteps\n1\n")
    proc = run_train(*TRAIN, "--timesteps", "48", "--out", str(out))
    assert proc.returncode == 2 and "already holds" in proc.stderr
    assert (out / "episodes.csv").read_text() == "timesteps\n1\n" and sorted(os.listdir(out)) == ["episodes.csv"]
    (tmp_path / "file").write_text("x")
    proc = run_train(*TRAIN, "--timesteps", "48", "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


# ------------------------------------------------------------------ 7. one clear message each
def _eval_args(tmp_path: Path, **change: str) -> list[str]:
    options = {"--scenario": "tiny", "--policies": "greedy", "--seeds": "0-1", "--out": str(tmp_path / "out"),
               "--cache-dir": str(tmp_path / "cache"), "--workers": "1"} | change  # fmt: skip
    return [x for kv in options.items() for x in kv]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"--bootstrap-seed": "-1"}, ["--bootstrap-seed", ">= 0"]),
        ({"--seeds": "99999999999999999999"}, ["--seeds", "largest seed"]),
        ({"--seeds": "١٢"}, ["--seeds", "malformed"]),
        ({"--seeds": "0-999999999"}, ["--seeds", "more than 100,000 seeds"]),
    ],
)
def test_bad_evaluate_options_stop_before_anything_is_written(tmp_path, change, words):
    code, _, err = run_evaluate(_eval_args(tmp_path, **{k: v for k, v in change.items()}))
    assert code == 2 and all(w in err for w in words), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_unwritable_folders_are_refused_first(tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_evaluate(_eval_args(tmp_path, **{"--out": str(tmp_path / "file" / "out")}))
    assert code == 2 and "--out" in err and "is a file" in err
    code, _, err = run_evaluate(_eval_args(tmp_path, **{"--cache-dir": str(tmp_path / "file")}))
    assert code == 2 and "--cache-dir" in err and "not a folder" in err
    code, _, err = run_evaluate(_eval_args(tmp_path, **{"--out": "/proc/self/nope"}))
    assert code == 2 and "--out" in err and "not writable" in err
    assert not (tmp_path / "out").exists()


def test_a_damaged_row_file_is_named_and_computed_again(tmp_path):
    code, _, _ = run_evaluate(_eval_args(tmp_path))
    assert code == 0
    row = tmp_path / "out" / "rows" / "greedy__1.json"
    good = json.loads(row.read_text())
    row.write_text(row.read_text()[:40])  # truncated on disk
    code, _, err = run_evaluate(_eval_args(tmp_path))
    assert code == 0 and str(row) in err and "damaged" in err
    again = json.loads(row.read_text())
    assert {k: v for k, v in again.items() if k != "decision_seconds_per_step"} == {
        k: v for k, v in good.items() if k != "decision_seconds_per_step"
    }


def test_env_argument_errors_are_clear():
    with pytest.raises(ScenarioError, match="scenario=None must be a preset name"):
        gym.make("CrossBorderDispatch-v0", scenario=None)
    with pytest.raises(ValueError, match=r"forecast_days=1000000000 must be an integer in 0..365"):
        gym.make("CrossBorderDispatch-v0", scenario="tiny", forecast_days=10**9)
    env = gym.make("CrossBorderDispatch-v0", scenario="tiny")
    with pytest.raises(RuntimeError, match=r"call reset\(\) before view\(\)"):
        env.unwrapped.view()
    with pytest.raises(ValueError, match="seed=True must be an integer"):
        env.reset(seed=True)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--learning-rate", "inf"], "learning_rate=inf must be a finite number"),
        (["--forecast-days", "1000000000"], "forecast_days=1000000000 must be at most 365"),
    ],
)
def test_bad_train_flags_fail_up_front(tmp_path, args, words):
    proc = run_train(*TRAIN, "--timesteps", "48", "--out", str(tmp_path / "run"), *args)
    assert proc.returncode == 2 and words in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_config_file_with_a_syntax_error_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("learning_rate: [1e-3\n")
    proc = run_train("--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "bad.yaml' is not valid YAML" in proc.stderr


# ------------------------------------------------------------------ 8. workers: capped, and gone with their parent
def test_workers_are_capped_at_the_cores(tmp_path):
    code, _, err = run_evaluate(_eval_args(tmp_path, **{"--workers": "1000"}))
    assert code == 0 and f"--workers 1000 capped at {os.cpu_count()}" in err


def test_pool_workers_end_with_a_killed_parent(tmp_path):
    command = [sys.executable, str(ROOT / "evaluate.py"), *_eval_args(tmp_path, **{
        "--scenario": "table1", "--policies": "rolling-milp", "--seeds": "0-3", "--workers": "2",
        "--time-limit": "60"})]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, children = time.monotonic() + 120, []
        while time.monotonic() < deadline and len(children) < 2:
            children = _children(proc.pid)
            time.sleep(0.1)
        assert len(children) >= 2, "the pool did not start"
        time.sleep(3)  # workers busy in their first rows
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
