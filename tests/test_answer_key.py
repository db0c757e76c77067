"""The answer key: every shipped row replays to its objective; edited rows are refused by file and seed and the
seed is solved instead; evaluate.py uses key rows without solving; the maker resumes and checks its flags."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_evaluate

from baselines import solve_hindsight
from envs import load_scenario
from evaluation.answer_key import (
    CERTIFIED_GAP,
    KEY_DIR,
    PARTIAL,
    AnswerKeyWarning,
    key_path,
    key_row,
    lookup,
    read_key,
    row_digest,
    row_problem,
    write_key,
)
from evaluation.cache import cached_hindsight
from evaluation.policies import HINDSIGHT

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(KEY_DIR.glob("*.csv"))
# keys still being made (resumable; lookup reads them too): their rows are shipped data all the same
BEING_MADE = sorted((KEY_DIR / PARTIAL).glob("*.csv"))


def test_keys_are_shipped_for_the_standard_seeds():
    names = {p.stem for p in SHIPPED}
    assert {f"{s}__CrossBorderRouting-v0" for s in ("table1", "table1-det", "promo", "scarce")} <= names
    assert {"table1-det__CrossBorderDispatch-v0", "table1__CrossBorderDispatch-v0"} <= names
    for path in SHIPPED:
        assert set(read_key(path)) >= set(range(1000, 1100)), path.name


@pytest.mark.parametrize("path", SHIPPED + BEING_MADE, ids=[f"{p.parent.name}/{p.stem}" for p in SHIPPED + BEING_MADE])
def test_every_shipped_row_replays_to_its_objective(path):
    rows = read_key(path)
    assert rows
    for seed, row in rows.items():
        scenario = load_scenario(row["scenario"])
        assert key_path(scenario.name, row["env_id"], path.parent) == path
        problem, terms = row_problem(row, scenario, row["env_id"])
        assert problem is None, (path.name, seed, problem)
        assert row["status"] == "optimal" and row["gap"] <= CERTIFIED_GAP and row["bound"] >= row["objective"]


@pytest.fixture
def tiny_key(tmp_path) -> Path:
    scenario = load_scenario("tiny")
    rows = [key_row(scenario, "CrossBorderDispatch-v0", solve_hindsight(scenario, s, mip_gap=CERTIFIED_GAP),
                    CERTIFIED_GAP) for s in range(4)]  # fmt: skip
    write_key(key_path("tiny", "CrossBorderDispatch-v0", tmp_path), rows)
    return tmp_path


def test_a_key_row_answers_without_solving(tiny_key, tmp_path):
    scenario = load_scenario("tiny")
    exact = solve_hindsight(scenario, 2)
    keyed = cached_hindsight(scenario, 2, cache_dir=tmp_path / "cache", mip_gap=CERTIFIED_GAP, key_dir=tiny_key)
    assert keyed.extra["answer_key"] == str(key_path("tiny", "CrossBorderDispatch-v0", tiny_key))
    assert keyed.objective == pytest.approx(exact.objective, rel=1e-9) and keyed.seconds == 0.0
    assert keyed.terms == pytest.approx(exact.terms, rel=1e-9, abs=1e-9)
    assert not (tmp_path / "cache").exists()  # nothing solved, nothing cached
    # an exact proof (mip_gap 0) is never answered by a certificate
    proof = cached_hindsight(scenario, 2, cache_dir=tmp_path / "cache", mip_gap=0.0, key_dir=tiny_key)
    assert "answer_key" not in proof.extra


def test_a_key_in_the_partial_folder_answers_too(tiny_key, tmp_path):
    path = key_path("tiny", "CrossBorderDispatch-v0", tiny_key)
    moved = key_path("tiny", "CrossBorderDispatch-v0", tiny_key / PARTIAL)
    moved.parent.mkdir()
    path.rename(moved)
    scenario = load_scenario("tiny")
    keyed = cached_hindsight(scenario, 1, cache_dir=tmp_path / "cache", mip_gap=CERTIFIED_GAP, key_dir=tiny_key)
    assert keyed.extra["answer_key"] == str(moved) and keyed.seconds == 0.0
    assert keyed.objective == pytest.approx(solve_hindsight(scenario, 1).objective, rel=1e-9)
    assert not (tmp_path / "cache").exists()


def _edit(path: Path, seed: int, change: dict, rehash: bool) -> None:
    rows = read_key(path)
    row = {**rows[seed], **change}
    if rehash:
        row["sha256"] = row_digest(row)
    rows = {**rows, seed: row}
    write_key(path, list(rows.values()))


@pytest.mark.parametrize(
    ("change", "rehash", "reason"),
    [
        ({"objective": 40.0}, False, "does not match its checksum"),
        ({"bound": 99.0}, False, "does not match its checksum"),
        ({"objective": 30.0, "bound": 30.0}, True, "replays to"),
        ({"bound": 99.0}, True, "is not certified"),
        ({"plan": "0 0 0 0 0 0 0 0 0"}, True, "replays to"),
        ({"plan": "9 9 9 9 9 9 9 9 9"}, True, "not playable"),
        ({"plan": "0 0 0"}, True, "is not 3 actions of 3 slots"),
        ({"content_hash": "0000000000000000"}, True, "stale"),
        ({"status": "time_limit"}, True, "its status is 'time_limit'"),
    ],
)
def test_an_edited_row_is_refused_by_file_and_seed_and_solved_instead(tiny_key, tmp_path, change, rehash, reason):
    path = key_path("tiny", "CrossBorderDispatch-v0", tiny_key)
    _edit(path, 1, change, rehash)
    scenario = load_scenario("tiny")
    with pytest.warns(AnswerKeyWarning) as caught:
        assert lookup(scenario, "CrossBorderDispatch-v0", 1, tiny_key) is None
    message = str(caught[0].message)
    assert str(path) in message and "seed 1 refused" in message and reason in message, message
    with pytest.warns(AnswerKeyWarning):
        solved = cached_hindsight(scenario, 1, cache_dir=tmp_path / "cache", mip_gap=CERTIFIED_GAP, key_dir=tiny_key)
    assert "answer_key" not in solved.extra
    assert solved.objective == pytest.approx(solve_hindsight(scenario, 1).objective, rel=CERTIFIED_GAP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the untouched rows still answer, silently
        assert lookup(scenario, "CrossBorderDispatch-v0", 0, tiny_key) is not None


def test_an_unreadable_key_file_is_one_warning_and_no_rows(tmp_path):
    path = tmp_path / "tiny__CrossBorderDispatch-v0.csv"
    path.write_text("seed,objective\n1,2\n")
    with pytest.warns(AnswerKeyWarning, match="unreadable"):
        assert read_key(path) == {}


def test_evaluate_uses_the_shipped_key_without_solving(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--scenario", "table1", "--env", "CrossBorderRouting-v0", "--policies", "greedy", "--seeds", "1000-1002",
            "--out", str(out), "--workers", "1", "--cache-dir", str(cache)]  # fmt: skip
    code, _, stderr = run_evaluate(args)
    assert code == 0, stderr
    episodes = pd.read_csv(out / "episodes.csv")
    hindsight = episodes.loc[episodes["policy"] == HINDSIGHT].set_index("seed")
    key = read_key(key_path("table1", "CrossBorderRouting-v0"))
    for seed in (1000, 1001, 1002):
        assert hindsight.loc[seed, "milp_objective"] == key[seed]["objective"]
        assert hindsight.loc[seed, "return"] == pytest.approx(key[seed]["objective"], rel=1e-9)
        assert hindsight.loc[seed, "milp_seconds"] == 0.0 and hindsight.loc[seed, "milp_status"] == "optimal"
    assert not cache.exists() or not any(cache.iterdir())  # no solve, so nothing cached
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["hindsight_mip_gap"] == CERTIFIED_GAP


def _maker():
    spec = importlib.util.spec_from_file_location("make_answer_key", ROOT / "scripts" / "make_answer_key.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_maker_resumes_and_names_bad_flags(tmp_path, capsys):
    maker = _maker()
    base = ["--scenario", "tiny", "--workers", "1", "--out", str(tmp_path)]
    assert maker.main([*base, "--seeds", "0-2"]) == 0
    first = (tmp_path / "tiny__CrossBorderDispatch-v0.csv").read_bytes()  # seeds 0-2
    assert maker.main([*base, "--seeds", "0-4"]) == 0
    out = capsys.readouterr().out
    assert "3 of 5 seeds already certified; solving 2 distinct realizations of the 2 others" in out
    path = tmp_path / "tiny__CrossBorderDispatch-v0.csv"
    assert sorted(read_key(path)) == [0, 1, 2, 3, 4]
    assert first.splitlines()[1] in path.read_bytes().splitlines()  # seed 0 kept as it was, not solved again
    for flags, words in ((["--env", "Nope-v0"], "--env: 'Nope-v0' is not an env id"),
                         (["--solver", "cplex"], "--solver: 'cplex' is not allowed"),
                         (["--seeds", "5-2"], "--seeds: range '5-2' is empty")):  # fmt: skip
        with pytest.raises(SystemExit):
            maker.main([*base, "--seeds", "0", *flags])
        assert words in capsys.readouterr().err
