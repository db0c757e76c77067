"""Write the preset scenarios to ``envs/scenarios/*.yaml``.

The presets are shipped as data files; this script is how they were made. Their
calibration to the source paper's Table 1 (cost per order and transit days per market,
the typical 30/70 air/sea mix, the fee share) is written down once, in
``envs/generate.py``, which also draws scenarios of other shapes from a seed.

Run: ``python scripts/make_presets.py`` (deterministic; rerunning rewrites equal files).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.generate import TABLE1, WEEKLY, express_lane, hub_lane  # noqa: E402
from envs.scenario import PRESET_DIR, Scenario  # noqa: E402

# market: (Table 1 cost, air days, sea days, air km, sea km, SLA days); calibration in envs/generate.py
SKUS = [  # name, unit profit, lost-sale penalty
    ("apparel", 12.0, 4.0),
    ("electronics", 30.0, 8.0),
    ("home", 15.0, 5.0),
    ("beauty", 10.0, 3.0),
    ("toys", 14.0, 4.0),
]
DEMAND = {  # units/day per SKU, in SKUS order
    "United States": [4.0, 2.0, 3.0, 3.0, 2.0],
    "Europe": [3.0, 2.0, 3.0, 2.0, 2.0],
    "Southeast Asia": [3.0, 1.0, 2.0, 3.0, 2.0],
    "Latin America": [2.0, 1.0, 1.0, 2.0, 1.0],
}
OVERSEAS = {"US-WH": "United States", "EU-WH": "Europe", "SEA-WH": "Southeast Asia"}
TRANSFER = {"US-WH": (0.9, (13, 15)), "EU-WH": (1.0, (14, 17)), "SEA-WH": (0.5, (8, 10))}


def table1(horizon: int = 30) -> dict:
    skus = [{"name": n, "unit_profit": p, "lost_sale_penalty": lp} for n, p, lp in SKUS]
    names = [s["name"] for s in skus]
    warehouses = [
        {
            "name": "CN-hub",
            "kind": "hub",
            "capacity": 5000,
            "initial_stock": dict.fromkeys(names, 150),
            "target_stock": dict.fromkeys(names, 150),
        }
    ] + [
        {
            "name": w,
            "kind": "overseas",
            "capacity": 400,
            "initial_stock": dict.fromkeys(names, 40),
            "target_stock": dict.fromkeys(names, 60),
        }
        for w in OVERSEAS
    ]
    home = {r: ("CN-hub", "air") for r in TABLE1} | {r: (w, "express") for w, r in OVERSEAS.items()}
    regions = [
        {
            "name": m,
            "sla_days": TABLE1[m][5],
            "demand": {n: {"base_rate": rate, "weekly": WEEKLY} for n, rate in zip(names, DEMAND[m], strict=True)},
            "home_warehouse": home[m][0],
            "home_mode": home[m][1],
        }
        for m in TABLE1
    ]
    lanes = [hub_lane(m, mode) for m in TABLE1 for mode in ("air", "sea")]
    lanes += [
        express_lane("US-WH", "United States", 800.0, 0.0015, 2.4, (2, 4)),
        express_lane("EU-WH", "Europe", 900.0, 0.0015, 2.6, (2, 4)),
        express_lane("SEA-WH", "Southeast Asia", 600.0, 0.0012, 1.8, (1, 3)),
        express_lane("US-WH", "Latin America", 4_000.0, 0.0008, 4.2, (4, 6)),
    ]
    transfers = [
        {
            "origin": "CN-hub",
            "destination": w,
            "mode": "sea",
            "quantity_levels": [0, 10, 25, 50],
            "cost_per_unit": cost,
            "fixed_cost": 20.0,
            "profit_per_unit": 0.0,
            "lead_time_days": list(lead),
            "closure_prob": 0.02,
        }
        for w, (cost, lead) in TRANSFER.items()
    ]
    weekly_need = {n: 7 * sum(DEMAND[m][i] for m in TABLE1) for i, n in enumerate(names)}
    supply = [
        {
            "warehouse": "CN-hub",
            "sku": n,
            "quantity": int(0.8 * weekly_need[n]),
            "first_day": 3,
            "period_days": 7,
            "quantity_cv": 0.15,
        }
        for n in names
    ]
    return {
        "name": "table1",
        "description": "Calibrated on Table 1 of the source paper: a China hub, overseas warehouses in the US, "
        "Europe and Southeast Asia; four markets; air and sea from the hub, local express overseas.",
        "horizon_days": horizon,
        "lots_per_batch": 2,
        "deterministic": False,
        "delay_penalty_alpha": 0.1,
        "imbalance_lambda": 2.0,
        "skus": skus,
        "warehouses": warehouses,
        "regions": regions,
        "delivery_lanes": lanes,
        "transfer_lanes": transfers,
        "supplier_shipments": supply,
    }


def table1_det() -> dict:
    d = table1()
    d["name"] = "table1-det"
    d["description"] = "table1 with all noise off: the realization equals its (rounded) expectation."
    d["deterministic"] = True
    return d


def promo() -> dict:
    d = table1()
    d["name"] = "promo"
    d["description"] = (
        "table1 plus a five-day promotion spike (x2.5, days 10-14), frequent lane closures and abnormal delays."
    )
    for region in d["regions"]:
        for m in region["demand"].values():
            m["promotions"] = [{"start_day": 10, "end_day": 14, "multiplier": 2.5}]
    for lane in d["delivery_lanes"]:
        lane["closure_prob"] = 0.10
        lane["abnormal_delay_prob"] = min(1.0, 3 * lane["abnormal_delay_prob"])
    for lane in d["transfer_lanes"]:
        lane["closure_prob"] = 0.10
    return d


SCARCE_SUPPLY = 0.4  # share of the expected weekly demand the hub receives each week (table1: 0.8)


def scarce() -> dict:
    """table1 with supply well below demand: stock must be allocated between markets, sales are lost."""
    d = table1()
    d["name"] = "scarce"
    d["description"] = (
        f"table1 with supply at {SCARCE_SUPPLY:g} of expected demand and a third of the opening stock: allocating "
        "scarce stock between markets (Eq.2, Eq.5), lost sales and transfers decide the return."
    )
    for w in d["warehouses"]:
        w["initial_stock"] = {k: v // 3 for k, v in w["initial_stock"].items()}
    weekly_need = {n: 7 * sum(DEMAND[m][i] for m in TABLE1) for i, (n, _, _) in enumerate(SKUS)}
    for sh in d["supplier_shipments"]:
        sh["quantity"] = int(SCARCE_SUPPLY * weekly_need[sh["sku"]])
    return d


def tiny() -> dict:
    """Small enough to enumerate every action sequence (a few thousand) in the tests."""
    return {
        "name": "tiny",
        "description": "One hub, one overseas warehouse, one region, one SKU, three days: for brute-force tests.",
        "horizon_days": 3,
        "lots_per_batch": 2,
        "deterministic": False,
        "delay_penalty_alpha": 0.5,
        "imbalance_lambda": 3.0,
        "skus": [{"name": "gadget", "unit_profit": 10.0, "lost_sale_penalty": 3.0}],
        "warehouses": [
            {
                "name": "hub",
                "kind": "hub",
                "capacity": 50,
                "initial_stock": {"gadget": 3},
                "target_stock": {"gadget": 2},
            },
            {
                "name": "wh",
                "kind": "overseas",
                "capacity": 5,
                "initial_stock": {"gadget": 2},
                "target_stock": {"gadget": 3},
            },
        ],
        "regions": [
            {
                "name": "market",
                "sla_days": 3,
                "demand": {"gadget": {"base_rate": 2.5}},
                "home_warehouse": "wh",
                "home_mode": "express",
            }
        ],
        "delivery_lanes": [
            {
                "warehouse": "hub",
                "region": "market",
                "mode": "air",
                "distance_km": 1000.0,
                "cost_per_km": 0.003,
                "cost_per_transit_day": 0.2,
                "fee_per_order": 1.0,
                "transit_days": [2, 5],
                "abnormal_delay_prob": 0.2,
                "abnormal_delay_days": [1, 2],
                "closure_prob": 0.2,
            },
            {
                "warehouse": "wh",
                "region": "market",
                "mode": "express",
                "distance_km": 100.0,
                "cost_per_km": 0.01,
                "cost_per_transit_day": 0.2,
                "fee_per_order": 0.5,
                "transit_days": [1, 3],
                "abnormal_delay_prob": 0.1,
                "abnormal_delay_days": [1, 3],
                "closure_prob": 0.1,
            },
        ],
        "transfer_lanes": [
            {
                "origin": "hub",
                "destination": "wh",
                "mode": "sea",
                "quantity_levels": [0, 2],
                "cost_per_unit": 0.5,
                "fixed_cost": 0.5,
                "profit_per_unit": 0.0,
                "lead_time_days": [1, 1],
                "closure_prob": 0.1,
            }
        ],
        "supplier_shipments": [
            {"warehouse": "hub", "sku": "gadget", "quantity": 3, "first_day": 1, "period_days": 7, "quantity_cv": 0.3}
        ],
    }


def large(seed: int = 7) -> dict:
    """12 warehouses (2 hubs, 10 overseas), 40 regions, 20 SKUs, 60 days: for scaling tests."""
    rng = np.random.default_rng(seed)
    K, R, T = 20, 40, 60
    names = [f"sku{k:02d}" for k in range(K)]
    skus = [
        {"name": n, "unit_profit": float(rng.integers(8, 35)), "lost_sale_penalty": float(rng.integers(2, 9))}
        for n in names
    ]
    hubs = ["CN-hub", "VN-hub"]
    overseas = [f"WH{i:02d}" for i in range(10)]
    warehouses = [
        {
            "name": h,
            "kind": "hub",
            "capacity": 40_000,
            "initial_stock": dict.fromkeys(names, 400),
            "target_stock": dict.fromkeys(names, 400),
        }
        for h in hubs
    ] + [
        {
            "name": w,
            "kind": "overseas",
            "capacity": 1_200,
            "initial_stock": dict.fromkeys(names, 30),
            "target_stock": dict.fromkeys(names, 40),
        }
        for w in overseas
    ]
    markets = list(TABLE1)
    regions, lanes = [], []
    for r in range(R):
        market = markets[r % len(markets)]
        name = f"R{r:02d}-{market.replace(' ', '')}"
        home_wh = overseas[r % len(overseas)]
        regions.append(
            {
                "name": name,
                "sla_days": TABLE1[market][5],
                "demand": {n: {"base_rate": round(float(rng.uniform(0.2, 1.5)), 2), "weekly": WEEKLY} for n in names},
                "home_warehouse": home_wh,
                "home_mode": "express",
            }
        )
        for h in hubs:
            for mode in ("air", "sea"):
                lanes.append(hub_lane(market, mode, h, name))
        lanes.append(express_lane(home_wh, name, 700.0, 0.0015, 2.5, (2, 4)))
        lanes.append(express_lane(overseas[(r + 3) % len(overseas)], name, 2_500.0, 0.001, 3.5, (3, 6)))
    transfers = [
        {
            "origin": h,
            "destination": w,
            "mode": "sea",
            "quantity_levels": [0, 10, 25, 50],
            "cost_per_unit": 0.9,
            "fixed_cost": 20.0,
            "profit_per_unit": 0.0,
            "lead_time_days": [8, 16],
            "closure_prob": 0.02,
        }
        for h in hubs
        for w in overseas
    ]
    supply = [
        {"warehouse": h, "sku": n, "quantity": 120, "first_day": 3, "period_days": 7, "quantity_cv": 0.15}
        for h in hubs
        for n in names
    ]
    return {
        "name": "large",
        "description": "Scaling preset: 12 warehouses, 40 regions, 20 SKUs, 60 days (Table 1 markets repeated).",
        "horizon_days": T,
        "lots_per_batch": 1,
        "deterministic": False,
        "delay_penalty_alpha": 0.1,
        "imbalance_lambda": 2.0,
        "skus": skus,
        "warehouses": warehouses,
        "regions": regions,
        "delivery_lanes": lanes,
        "transfer_lanes": transfers,
        "supplier_shipments": supply,
    }


PRESETS = {
    "tiny": tiny,
    "table1": table1,
    "table1-det": table1_det,
    "promo": promo,
    "scarce": scarce,
    "large": large,
}


def main() -> None:
    PRESET_DIR.mkdir(exist_ok=True)
    for name, build in PRESETS.items():
        path = Scenario.from_dict(build()).to_file(PRESET_DIR / f"{name}.yaml")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
