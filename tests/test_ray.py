"""The Ray backend (evaluation/backends.py) on real clusters started here: the same files as the local
backend (evaluate.py and train.py --seeds), retried tasks, a node removed mid-run, and clear errors for
bad options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray
from conftest import run_evaluate
from ray.cluster_utils import Cluster

from evaluation.backends import BackendError, RayBackend, make_backend
from evaluation.runner import TIMING_COLUMNS

pytestmark = pytest.mark.xdist_group("ray")  # one cluster at a time on this machine (--dist loadgroup)

ROOT = Path(__file__).resolve().parents[1]
POLICIES = "greedy,base-stock,random,rolling-milp"


def evaluate_args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--scenario", "tiny", "--policies", POLICIES, "--seeds", "0-5", "--out", str(out),
            "--cache-dir", str(cache), "--workers", "2", *extra]  # fmt: skip


def episodes(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "episodes.csv").drop(columns=list(TIMING_COLUMNS))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    code, _, err = run_evaluate(evaluate_args(out, out.parent / "cache"))
    assert code == 0, err
    return out


@pytest.fixture
def no_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_the_ray_backend_writes_the_same_files(local_run, tmp_path, no_ray):
    out = tmp_path / "out"
    code, stdout, err = run_evaluate(evaluate_args(out, tmp_path / "cache", "--backend", "ray"))
    assert code == 0, err
    assert "2 workers (ray)" in stdout
    pd.testing.assert_frame_equal(episodes(out), episodes(local_run))
    assert sorted(p.name for p in (out / "rows").iterdir()) == sorted(p.name for p in (local_run / "rows").iterdir())
    assert not ray.is_initialized()  # the local cluster it started is stopped again


def test_a_task_whose_worker_dies_is_retried(tmp_path, no_ray):
    def crash_once(marker_dir: str, item: int) -> int:  # nested: Ray ships it by value to its workers
        """Kills its own worker process the first time it sees item 2 (a worker dying mid-task)."""
        marker = Path(marker_dir) / f"{item}.seen"
        if item == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return item * item

    backend = make_backend("ray", 2)
    results = dict(backend.map(crash_once, str(tmp_path), range(5)))
    backend.close()
    assert results == {i: i * i for i in range(5)}  # every item once, the crashed one too
    assert (tmp_path / "2.seen").is_file()  # it really crashed once


def test_a_node_removed_mid_run_loses_and_duplicates_nothing(local_run, tmp_path, no_ray):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head schedules no task
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        backend = RayBackend(2, address=cluster.address)
        from evaluation import runner

        run = runner.resolve_run("tiny", "CrossBorderDispatch-v0", POLICIES, "0-5", None, str(tmp_path / "cache"))
        out = tmp_path / "out"
        runner.check_out(out, run)
        runner.init_out(out, run, {"compare": [["greedy", "base-stock"]], "bootstrap": {}})
        tasks = runner.missing_tasks(out, run)
        done = []

        def on_row(row: dict) -> None:
            done.append((row["policy"], row["seed"]))
            if len(done) == 4:  # mid-run: a worker node goes away with whatever it was computing
                cluster.remove_node(nodes[0])
                cluster.add_node(num_cpus=1)

        runner.compute_rows(out, run, tasks, backend, on_row)
        backend.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert sorted(done) == sorted(tasks) and len(done) == len(set(done))  # each row exactly once
    rows = pd.DataFrame(runner.read_rows(out, run)).drop(columns=list(TIMING_COLUMNS))
    local = pd.DataFrame(runner.read_rows(local_run, run)).drop(columns=list(TIMING_COLUMNS))
    pd.testing.assert_frame_equal(rows, local)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--backend", "spark"], ["--backend", "'spark' is not allowed", "'local', 'ray'"]),
        (["--ray-address", "auto"], ["--ray-address", "--backend is 'local'"]),
        (["--backend", "ray", "--ray-address", "127.0.0.1:1"], ["--ray-address", "cannot connect", "ray start"]),
        (["--backend", "ray", "--ray-address", "head-node"], ["--ray-address", "'head-node'", "HOST:PORT"]),
    ],
)
def test_bad_backend_options_stop_before_anything_is_written(tmp_path, extra, words, no_ray):
    code, _, err = run_evaluate(evaluate_args(tmp_path / "out", tmp_path / "cache", *extra))
    message = " ".join(err.split())
    assert code == 2 and all(w in message for w in words), message
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_train_seeds_on_ray_give_the_runs_of_the_local_backend(tmp_path):
    """train.py --seeds on a local Ray cluster: the same runs (validation curves, sweep summary) as on the
    process pool, apart from wall times."""
    base = ["--scenario", "tiny", "--n-envs", "2", "--n-steps", "24", "--batch-size", "16", "--n-epochs", "2",
            "--net-arch", "16", "--eval-freq", "48", "--timesteps", "96", "--seeds", "1,3", "--workers", "2",
            "--no-progress-bar"]  # fmt: skip
    for backend in ("local", "ray"):
        command = [sys.executable, str(ROOT / "train.py"), *base, "--backend", backend]
        command += ["--out", str(tmp_path / backend)]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("seed_1/eval.csv", "seed_3/eval.csv", "seeds.csv"):
        local, remote = (pd.read_csv(tmp_path / b / name) for b in ("local", "ray"))
        timing = [c for c in local.columns if c.startswith("wall_")]
        pd.testing.assert_frame_equal(local.drop(columns=timing), remote.drop(columns=timing))
    assert (tmp_path / "ray" / "seed_3" / "policy.safetensors").read_bytes() == (
        tmp_path / "local" / "seed_3" / "policy.safetensors"
    ).read_bytes()  # the same weights, trained on another worker


def test_make_backend_names_the_flag():
    with pytest.raises(BackendError, match="--backend"):
        make_backend("threads", 2)
