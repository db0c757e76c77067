"""Scenarios: validation messages, lossless round trips, presets, and the realization sampler."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import envs
from envs.forecast import demand_cap, expected_demand, expected_supply, midpoint
from envs.scenario import PRESET_DIR, Scenario, ScenarioError, load_scenario, preset_names

ROOT = Path(__file__).resolve().parents[1]


def _make_presets():
    spec = importlib.util.spec_from_file_location("make_presets", ROOT / "scripts" / "make_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_dict() -> dict:
    return load_scenario("tiny").to_dict()


def _set(path: tuple, value):
    """A mutator that sets ``data[path[0]][path[1]]... = value``."""

    def mutate(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return mutate


# (case id, mutator of tiny's dict, fragments the message must hold: the field, the value, what is allowed)
INVALID = [
    (
        "negative capacity",
        _set(("warehouses", 0, "capacity"), -1),
        ["warehouses.0.capacity", "greater than or equal to 0", "got -1"],
    ),
    (
        "lane names an unknown warehouse",
        _set(("delivery_lanes", 0, "warehouse"), "Mars"),
        ["delivery_lanes[0].warehouse='Mars' is unknown", "allowed: ['hub', 'wh']"],
    ),
    (
        "transfer lane names an unknown warehouse",
        _set(("transfer_lanes", 0, "destination"), "Mars"),
        ["transfer_lanes[0].destination='Mars' is unknown", "allowed: ['hub', 'wh']"],
    ),
    (
        "lane names an unknown region",
        _set(("delivery_lanes", 1, "region"), "Moon"),
        ["delivery_lanes[1].region='Moon' is unknown", "allowed: ['market']"],
    ),
    (
        "empty quantity levels",
        _set(("transfer_lanes", 0, "quantity_levels"), []),
        ["transfer_lanes.0", "quantity_levels is empty", "starting with 0"],
    ),
    (
        "quantity levels without 0",
        _set(("transfer_lanes", 0, "quantity_levels"), [5, 10]),
        ["transfer_lanes.0", "quantity_levels=[5, 10]", "strictly increasing and start with 0"],
    ),
    ("t0 = 0", _set(("regions", 0, "sla_days"), 0), ["regions.0.sla_days", "greater than or equal to 1", "got 0"]),
    ("t0 < 0", _set(("regions", 0, "sla_days"), -2), ["regions.0.sla_days", "greater than or equal to 1", "got -2"]),
    (
        "non-integer stock",
        _set(("warehouses", 0, "initial_stock", "gadget"), 1.5),
        ["warehouses.0.initial_stock.gadget", "valid integer", "got 1.5"],
    ),
    (
        "negative stock",
        _set(("warehouses", 1, "initial_stock", "gadget"), -3),
        ["warehouses.1.initial_stock.gadget", "greater than or equal to 0", "got -3"],
    ),
    (
        "stock above capacity",
        _set(("warehouses", 1, "initial_stock", "gadget"), 6),
        ["warehouses[1] (wh).initial_stock totals 6 units, above capacity=5"],
    ),
    (
        "stock of an unknown SKU",
        _set(("warehouses", 0, "initial_stock"), {"gizmo": 1}),
        ["warehouses[0] (hub) SKU key='gizmo' is unknown", "allowed: ['gadget']"],
    ),
    (
        "demand of an unknown SKU",
        _set(("regions", 0, "demand"), {"gizmo": {"base_rate": 1.0}}),
        ["regions[0] (market).demand SKU key='gizmo' is unknown", "allowed: ['gadget']"],
    ),
    (
        "unknown key",
        _set(("warehouses", 0, "colour"), "red"),
        ["warehouses.0.colour", "unknown key 'colour'", "allowed keys: ['name', 'kind', 'capacity'"],
    ),
    ("unknown top-level key", _set(("horizon",), 3), ["unknown key 'horizon'", "'horizon_days'"]),
    (
        "warehouse kind",
        _set(("warehouses", 1, "kind"), "depot"),
        ["warehouses.1.kind", "'hub' or 'overseas'", "got 'depot'"],
    ),
    (
        "reversed transit range",
        _set(("delivery_lanes", 0, "transit_days"), [5, 2]),
        ["delivery_lanes.0", "transit_days=[5, 2] must be [min, max] with min <= max"],
    ),
    (
        "probability above 1",
        _set(("delivery_lanes", 0, "closure_prob"), 1.5),
        ["delivery_lanes.0.closure_prob", "less than or equal to 1", "got 1.5"],
    ),
    ("zero horizon", _set(("horizon_days",), 0), ["horizon_days", "greater than or equal to 1", "got 0"]),
    (
        "home lane is no lane",
        _set(("regions", 0, "home_mode"), "rail"),
        [
            "regions[0] (market).home_warehouse/home_mode=wh/rail is not a delivery lane",
            "allowed: ['hub/air', 'wh/express']",
        ],
    ),
    (
        "supplier at an overseas warehouse",
        _set(("supplier_shipments", 0, "warehouse"), "wh"),
        ["supplier_shipments[0].warehouse='wh' is unknown", "allowed: ['hub']"],
    ),
    (
        "duplicate warehouse",
        lambda d: d["warehouses"].append(dict(d["warehouses"][1])),
        ["warehouses: duplicate names ['wh']"],
    ),
    (
        "weekly of 6 days",
        _set(("regions", 0, "demand", "gadget", "weekly"), [1.0] * 6),
        ["weekly must hold exactly 7 multipliers, got 6"],
    ),
    (
        "transfer to itself",
        _set(("transfer_lanes", 0, "destination"), "hub"),
        ["origin and destination are both 'hub'"],
    ),
]


@pytest.mark.parametrize("mutate, fragments", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_scenario_names_field_value_and_allowed(mutate, fragments):
    data = tiny_dict()
    mutate(data)
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(data)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_scenario_error_is_a_value_error_and_every_error_is_reported():
    data = tiny_dict()
    data["warehouses"][0]["capacity"] = -1
    data["regions"][0]["sla_days"] = 0
    with pytest.raises(ValueError, match=r"2 error\(s\)") as err:
        Scenario.from_dict(data)
    assert "capacity" in str(err.value) and "sla_days" in str(err.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ScenarioError) as err:
        load_scenario("tabel1")
    assert "scenario='tabel1'" in str(err.value)
    assert str(preset_names()) in str(err.value)


def test_unknown_yaml_key_in_a_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(Path(PRESET_DIR / "tiny.yaml").read_text().replace("horizon_days:", "horizon_dayz:"))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "unknown key 'horizon_dayz'" in str(err.value) and "'horizon_days'" in str(err.value)


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("missing.yaml", None, "does not exist"),
        ("bad.yaml", "name: [unclosed", "is not valid YAML"),
        ("bad.json", "{", "is not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", "must hold a mapping at top level"),
    ],
)
def test_bad_files_raise_scenario_error(tmp_path, name, text, fragment):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ScenarioError, match=fragment):
        load_scenario(path)


@pytest.mark.parametrize("preset", ["tiny", "table1", "table1-det", "promo", "scarce", "large"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_is_lossless(tmp_path, preset, suffix):
    first = Scenario.from_file(PRESET_DIR / f"{preset}.yaml")
    path = first.to_file(tmp_path / f"{preset}{suffix}")
    second = Scenario.from_file(path)
    assert second == first
    assert second.content_hash() == first.content_hash()
    again = second.to_file(tmp_path / f"again{suffix}")
    assert again.read_text() == path.read_text()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file behind
    if suffix == ".json":
        json.loads(path.read_text())  # plain JSON, readable by any tool


def test_content_hash_changes_with_content():
    base = load_scenario("tiny")
    data = base.to_dict()
    data["delay_penalty_alpha"] += 0.25
    assert Scenario.from_dict(data).content_hash() != base.content_hash()


def test_load_scenario_accepts_name_path_and_object():
    tiny = load_scenario("tiny")
    assert load_scenario(PRESET_DIR / "tiny.yaml") == tiny
    assert load_scenario(str(PRESET_DIR / "tiny.yaml")) == tiny
    assert load_scenario(tiny) is tiny


@pytest.mark.parametrize("preset", ["tiny", "table1", "table1-det", "promo", "scarce", "large"])
def test_shipped_presets_are_what_make_presets_writes(preset):
    builder = _make_presets().PRESETS[preset]
    assert Scenario.from_dict(builder()) == load_scenario(preset)


def test_presets_have_the_promised_shape():
    assert set(preset_names()) >= {"tiny", "table1", "table1-det", "promo", "scarce", "large"}
    t1 = load_scenario("table1")
    kinds = {w.name: w.kind for w in t1.warehouses}
    assert sorted(kinds.values()) == ["hub", "overseas", "overseas", "overseas"]
    assert {r.name for r in t1.regions} == {"United States", "Europe", "Southeast Asia", "Latin America"}
    assert len(t1.skus) >= 5 and 28 <= t1.horizon_days <= 31
    hub_modes = {(ln.region, ln.mode) for ln in t1.delivery_lanes if kinds[ln.warehouse] == "hub"}
    assert hub_modes == {(r.name, m) for r in t1.regions for m in ("air", "sea")}
    assert all(ln.mode == "express" for ln in t1.delivery_lanes if kinds[ln.warehouse] == "overseas")
    large = load_scenario("large")
    assert len(large.warehouses) >= 12 and len(large.regions) >= 40 and len(large.skus) >= 20
    assert large.horizon_days >= 60
    promo = load_scenario("promo")
    assert any(
        m.promotions and m.promotions[0].end_day > m.promotions[0].start_day
        for r in promo.regions
        for m in r.demand.values()
    )
    assert min(ln.closure_prob for ln in promo.delivery_lanes) > max(ln.closure_prob for ln in t1.delivery_lanes)
    assert min(ln.abnormal_delay_prob for ln in promo.delivery_lanes) > 0
    # scarce: the table1 network, but the opening stock plus supply cover well under the horizon's demand
    scarce = load_scenario("scarce")
    assert [w.name for w in scarce.warehouses] == [w.name for w in t1.warehouses]
    assert scarce.delivery_lanes == t1.delivery_lanes and scarce.transfer_lanes == t1.transfer_lanes
    demand = envs.expected_demand(scarce).sum()
    deliveries = sum(-(-scarce.horizon_days // 7) * sh.quantity for sh in scarce.supplier_shipments)
    opening = sum(sum(w.initial_stock.values()) for w in scarce.warehouses)
    assert opening + deliveries < 0.8 * demand
    det = load_scenario("table1-det")
    assert (
        det.deterministic
        and det.model_copy(update={"name": "table1", "description": t1.description, "deterministic": False}) == t1
    )


@pytest.mark.parametrize("env_id", list(envs.ENV_IDS))
def test_tiny_is_small_enough_to_enumerate(env_id):
    import gymnasium as gym

    env = gym.make(env_id, scenario="tiny")
    per_day = int(np.prod(env.action_space.nvec))
    assert per_day**env.unwrapped.scenario.horizon_days <= 10_000


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("preset", ["tiny", "table1", "promo"])
def test_sample_is_deterministic_per_seed_and_seeds_differ(preset):
    s = load_scenario(preset)
    a, b = s.sample(3), s.sample(3)
    assert a.equals(b)
    # the draw does not depend on what was drawn before (no shared generator)
    s.sample(99)
    assert s.sample(3).equals(a)
    c = s.sample(4)
    assert not c.equals(a)
    assert not np.array_equal(c.demand, a.demand)
    assert not np.array_equal(c.transit_days, a.transit_days)


def test_samples_respect_the_scenario_models():
    s = load_scenario("promo")
    net = s.network
    reals = [s.sample(seed) for seed in range(40)]
    for r in reals:
        r.check(s)  # shapes, dtypes, caps, lead ranges
        lo = np.array([ln.transit_days[0] for ln in s.delivery_lanes])
        hi = np.array([ln.transit_days[1] + ln.abnormal_delay_days[1] for ln in s.delivery_lanes])
        assert np.all((r.transit_days >= lo) & (r.transit_days <= hi))
        assert np.all(r.supply.sum(axis=0)[~net.is_hub] == 0)  # suppliers serve hubs only
        lots = r.lots(s.lots_per_batch)
        assert np.array_equal(lots.sum(axis=-1), r.demand)
        assert np.all(lots[..., :-1] >= lots[..., 1:])  # larger lots first, as equal as possible
        assert np.all(lots.max(axis=-1) - lots.min(axis=-1) <= 1)
    demand = np.stack([r.demand for r in reals]).mean(axis=0).sum(axis=(1, 2))
    mean = expected_demand(s).sum(axis=(1, 2))
    assert np.allclose(demand, mean, rtol=0.1)  # 40 draws of ~100 units per day: ~1.6% standard error
    assert np.mean([r.delivery_open.mean() for r in reals]) == pytest.approx(0.9, abs=0.01)
    assert all(r.abnormal_delay.any() and (~r.transfer_open).any() for r in reals)


def test_deterministic_realization_equals_its_expectation():
    s = load_scenario("table1-det")
    r = s.sample(0)
    assert np.array_equal(r.demand, np.floor(expected_demand(s) + 0.5).astype(int))
    assert np.array_equal(r.supply, expected_supply(s))
    mid = np.array([midpoint(ln.transit_days) for ln in s.delivery_lanes])
    assert np.all(r.transit_days == mid[None, :])
    assert np.all(r.transfer_lead == np.array([midpoint(t.lead_time_days) for t in s.transfer_lanes])[None, :])
    assert r.delivery_open.all() and r.transfer_open.all() and not r.abnormal_delay.any()
    for seed in (1, 12345):
        other = s.sample(seed)
        other.seed = r.seed
        assert other.equals(r)


def test_realization_check_names_the_field():
    s = load_scenario("table1")
    good = s.sample(0)
    cases = [
        ("demand", good.demand[:-1], "realization.demand must be a integer array of shape (30, 4, 5)"),
        ("delivery_open", good.delivery_open.astype(int), "realization.delivery_open must be a bool array"),
        ("transfer_lead", np.zeros_like(good.transfer_lead), "realization.transfer_lead must lie in 1..17"),
        ("supply", -good.supply - 1, "realization.supply has negative entries"),
        ("demand", demand_cap(expected_demand(s)) + 1, "realization.demand exceeds its cap"),
        ("supply", good.supply * 0 + 10_000, "realization.supply exceeds twice the scheduled"),
    ]
    for name, value, message in cases:
        bad = good.copy()
        setattr(bad, name, value)
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            bad.check(s)
    good.check(s)
