"""Scenarios drawn from a seed and a size, calibrated on the source paper's Table 1.

:func:`generate_scenario` is how a researcher gets networks of other shapes than the presets (more hubs,
more regions, scarcer stock) without writing YAML. The same calibration builds the presets
(``scripts/make_presets.py`` imports the constants and lane builders below), so a generated scenario
and ``table1`` price a lane to a market the same way.

Table 1 of the source paper, per market:

* average logistics cost per export order (USD): United States 6.4, Europe 6.7, Southeast Asia 4.8,
  Latin America 7.2;
* transit days, air / sea: US 6-8 / 13-15, Europe 7-9 / 14-17, Southeast Asia 3-5 / 8-10,
  Latin America 8-10 / 16-21;
* customs clearance plus last mile is over half of the cost of an order.

Calibration rule (checked by ``tests/test_calibration.py`` on the presets): under the typical mode mix
``TYPICAL_MIX`` (30% air, 70% sea, hub-shipped orders) the expected Eq.1 cost per order of each market
equals its Table 1 figure; the per-order fee (customs + last mile) is ``FEE_SHARE`` of it and the air line
haul costs ``AIR_OVER_SEA`` times the sea line haul.
"""

from __future__ import annotations

import re

import numpy as np

from envs.scenario import PLAIN_NAME, Scenario

TYPICAL_MIX = {"air": 0.3, "sea": 0.7}
FEE_SHARE = 0.55  # customs clearance + last mile share of the cost per order
AIR_OVER_SEA = 3.0  # air line haul / sea line haul per unit
COST_PER_TRANSIT_DAY = 0.05  # v of Eq.1: USD per unit per day in transit
ABNORMAL = {"air": (0.05, (2, 4)), "sea": (0.10, (3, 6))}  # probability, extra days
CLOSURE = {"air": 0.02, "sea": 0.02}
WEEKLY = [1.0, 0.95, 0.95, 1.0, 1.05, 1.1, 0.95]

# market: (Table 1 cost, air days, sea days, air km, sea km, SLA days)
TABLE1 = {
    "United States": (6.4, (6, 8), (13, 15), 11_000, 11_500, 8),
    "Europe": (6.7, (7, 9), (14, 17), 8_500, 19_000, 9),
    "Southeast Asia": (4.8, (3, 5), (8, 10), 3_000, 3_500, 5),
    "Latin America": (7.2, (8, 10), (16, 21), 17_000, 18_500, 10),
}
# hub -> overseas warehouse in a market: sea transfer cost per unit (USD); the lead is the market's sea transit
TRANSFER_COST = {"United States": 0.9, "Europe": 1.0, "Southeast Asia": 0.5, "Latin America": 1.1}


def mean_days(days: tuple[int, int], mode: str, with_abnormal: bool = True) -> float:
    """Expected transit days of a lane: the uniform range's mean plus the expected abnormal delay."""
    p, extra = ABNORMAL[mode]
    return (days[0] + days[1]) / 2 + (p * (extra[0] + extra[1]) / 2 if with_abnormal else 0.0)


def hub_lane(market: str, mode: str, warehouse: str = "CN-hub", region: str | None = None) -> dict:
    """A hub delivery lane (air or sea) to ``market`` whose expected cost under TYPICAL_MIX is its Table 1 cost."""
    cost, air, sea, air_km, sea_km, _ = TABLE1[market]
    fee = FEE_SHARE * cost
    haul = (1 - FEE_SHARE) * cost
    sea_haul = haul / (TYPICAL_MIX["air"] * AIR_OVER_SEA + TYPICAL_MIX["sea"])
    line_haul = sea_haul * (AIR_OVER_SEA if mode == "air" else 1.0)
    days, km = (air, air_km) if mode == "air" else (sea, sea_km)
    per_km = (line_haul - mean_days(days, mode) * COST_PER_TRANSIT_DAY) / km
    p, extra = ABNORMAL[mode]
    return {
        "warehouse": warehouse,
        "region": market if region is None else region,
        "mode": mode,
        "distance_km": float(km),
        "cost_per_km": round(per_km, 9),
        "cost_per_transit_day": COST_PER_TRANSIT_DAY,
        "fee_per_order": round(fee, 6),
        "transit_days": list(days),
        "abnormal_delay_prob": p,
        "abnormal_delay_days": list(extra),
        "closure_prob": CLOSURE[mode],
    }


def express_lane(warehouse: str, region: str, km: float, per_km: float, fee: float, days: tuple[int, int]) -> dict:
    """A local express lane from an overseas warehouse."""
    return {
        "warehouse": warehouse,
        "region": region,
        "mode": "express",
        "distance_km": km,
        "cost_per_km": per_km,
        "cost_per_transit_day": COST_PER_TRANSIT_DAY,
        "fee_per_order": fee,
        "transit_days": list(days),
        "abnormal_delay_prob": 0.02,
        "abnormal_delay_days": [1, 2],
        "closure_prob": 0.01,
    }


# argument: (smallest, largest) allowed; kept well inside the scenario's own size limits
SIZE_LIMITS = {"hubs": (1, 4), "overseas": (1, 20), "regions": (1, 60), "skus": (1, 30), "days": (1, 120)}
LOTS_PER_BATCH = (1, 4)
SUPPLY_RATIO = (0.0, 5.0)


def generate_scenario(
    seed: int,
    *,
    hubs: int = 1,
    overseas: int = 3,
    regions: int = 4,
    skus: int = 5,
    days: int = 30,
    supply_ratio: float = 0.8,
    lots_per_batch: int = 2,
    deterministic: bool = False,
    name: str | None = None,
) -> Scenario:
    """Draw a valid scenario: ``hubs`` hubs, ``overseas`` overseas warehouses, ``regions`` regions, ``skus``
    SKUs, a ``days``-day horizon; the same arguments give the same scenario (the draws use only ``seed``).

    Each region is one of Table 1's four markets (drawn), with that market's transit ranges, SLA and cost
    per order (air and sea from every hub, calibrated as the presets). Each overseas warehouse sits in a
    drawn market: local express to that market's regions (2-4 days) and one longer express lane to another
    region (4-6 days); every hub can ship to every overseas warehouse by sea (the market's sea transit days),
    and with two hubs or more the first hub can also restock the others (2-4 days). Demand per region and SKU
    is 0.5-4 units/day with the presets' weekly pattern; the hubs receive ``supply_ratio`` x the expected
    weekly demand every 7 days (table1: 0.8; below about 0.6 stock is scarce and allocation matters).
    Overseas targets are about 15 days of local demand, started at two thirds; capacity is a third above
    the targets. Out-of-range arguments raise ``ValueError`` naming the argument and its allowed range.
    """
    sizes = {"hubs": hubs, "overseas": overseas, "regions": regions, "skus": skus, "days": days}
    _check_int("seed", seed, 0, 2**32 - 1)
    for arg, value in sizes.items():
        _check_int(arg, value, *SIZE_LIMITS[arg])
    _check_int("lots_per_batch", lots_per_batch, *LOTS_PER_BATCH)
    if isinstance(supply_ratio, bool) or not isinstance(supply_ratio, int | float | np.integer | np.floating):
        raise ValueError(f"supply_ratio={supply_ratio!r} must be a number in [0, {SUPPLY_RATIO[1]}]")
    if not SUPPLY_RATIO[0] <= float(supply_ratio) <= SUPPLY_RATIO[1]:
        raise ValueError(f"supply_ratio={supply_ratio!r} must be a number in [0, {SUPPLY_RATIO[1]}]")
    if not isinstance(deterministic, bool):
        raise ValueError(f"deterministic={deterministic!r} must be True or False")
    name = f"gen-{seed}-h{hubs}w{overseas}r{regions}k{skus}d{days}" if name is None else name
    if not isinstance(name, str) or not re.fullmatch(PLAIN_NAME, name):
        raise ValueError(f"name={name!r} must be letters, digits and _ . + - (it is used in file names)")

    rng = np.random.default_rng(seed)
    markets = list(TABLE1)
    sku_names = [f"sku{k:02d}" for k in range(skus)]
    profit = rng.integers(8, 36, size=skus).astype(float)
    sku_list = [
        {"name": n, "unit_profit": float(p), "lost_sale_penalty": float(round(p * rng.uniform(0.25, 0.35)))}
        for n, p in zip(sku_names, profit, strict=True)
    ]
    region_market = [markets[i] for i in rng.integers(0, len(markets), size=regions)]
    region_names = [f"R{r:02d}-{m.replace(' ', '')}" for r, m in enumerate(region_market)]
    rate = np.round(rng.uniform(0.5, 4.0, size=(regions, skus)), 2)
    hub_names = [f"HUB{h}" for h in range(hubs)]
    wh_names = [f"WH{o:02d}" for o in range(overseas)]
    wh_market = [markets[i] for i in rng.integers(0, len(markets), size=overseas)]

    lanes = [hub_lane(region_market[r], mode, h, region_names[r]) for r in range(regions) for h in hub_names
             for mode in ("air", "sea")]  # fmt: skip
    local = {o: [r for r in range(regions) if region_market[r] == wh_market[o]] for o in range(overseas)}
    served = np.zeros((overseas, regions), dtype=bool)
    for o in range(overseas):
        for r in local[o]:
            lanes.append(express_lane(wh_names[o], region_names[r], 800.0, 0.0015, 2.4, (2, 4)))
            served[o, r] = True
        others = [r for r in range(regions) if not served[o, r]]
        if others:  # one longer lane across markets, like US-WH -> Latin America in table1
            r = int(rng.choice(others))
            lanes.append(express_lane(wh_names[o], region_names[r], 4_000.0, 0.0008, 4.2, (4, 6)))
            served[o, r] = True

    # a region with a local overseas warehouse is served from it by the fixed rule, otherwise by hub air
    region_list = []
    for r in range(regions):
        local_wh = [o for o in range(overseas) if r in local[o]]
        home = (wh_names[local_wh[0]], "express") if local_wh else (hub_names[0], "air")
        region_list.append({
            "name": region_names[r],
            "sla_days": TABLE1[region_market[r]][5],
            "demand": {n: {"base_rate": float(rate[r, k]), "weekly": WEEKLY} for k, n in enumerate(sku_names)},
            "home_warehouse": home[0],
            "home_mode": home[1],
        })  # fmt: skip

    # overseas targets: ~15 days of the demand of its local regions (shared among the market's warehouses)
    per_market = {m: sum(1 for o in range(overseas) if wh_market[o] == m) for m in markets}
    warehouses = []
    daily = rate.sum(axis=0)  # [K] expected units/day, all regions (weekly factors average ~1)
    for h in hub_names:
        stock = {n: int(round(12 * daily[k] / hubs)) for k, n in enumerate(sku_names)}
        cap = int(2 * sum(stock.values()) + 14 * max(supply_ratio, 1.0) * daily.sum() / hubs) + 1
        warehouses.append({"name": h, "kind": "hub", "capacity": cap, "initial_stock": stock, "target_stock": stock})
    for o, w in enumerate(wh_names):
        local_rate = rate[local[o]].sum(axis=0) / per_market[wh_market[o]] if local[o] else 0.3 * rate.mean(axis=0)
        target = {n: max(5, int(round(15 * local_rate[k]))) for k, n in enumerate(sku_names)}
        warehouses.append({
            "name": w,
            "kind": "overseas",
            "capacity": int(np.ceil(4 / 3 * sum(target.values()))),
            "initial_stock": {n: int(round(2 / 3 * v)) for n, v in target.items()},
            "target_stock": target,
        })  # fmt: skip

    transfers = [
        {
            "origin": h,
            "destination": w,
            "mode": "sea",
            "quantity_levels": [0, 10, 25, 50],
            "cost_per_unit": TRANSFER_COST[wh_market[o]],
            "fixed_cost": 20.0,
            "profit_per_unit": 0.0,
            "lead_time_days": list(TABLE1[wh_market[o]][2]),
            "closure_prob": 0.02,
        }
        for h in hub_names
        for o, w in enumerate(wh_names)
    ]
    transfers += [
        {
            "origin": hub_names[0],
            "destination": h,
            "mode": "truck",
            "quantity_levels": [0, 25, 50],
            "cost_per_unit": 0.3,
            "fixed_cost": 10.0,
            "profit_per_unit": 0.0,
            "lead_time_days": [2, 4],
            "closure_prob": 0.02,
        }
        for h in hub_names[1:]
    ]
    supply = [
        {
            "warehouse": h,
            "sku": n,
            "quantity": int(round(supply_ratio * 7 * daily[k] / hubs)),
            "first_day": 3,
            "period_days": 7,
            "quantity_cv": 0.15,
        }
        for h in hub_names
        for k, n in enumerate(sku_names)
    ]
    shape = f"{hubs} hub(s), {overseas} overseas warehouse(s), {regions} region(s), {skus} SKU(s), {days} days"
    return Scenario.from_dict({
        "name": name,
        "description": f"Generated (envs.generate_scenario, seed {seed}): {shape}; supply {supply_ratio:g} x demand.",
        "horizon_days": days,
        "lots_per_batch": lots_per_batch,
        "deterministic": deterministic,
        "delay_penalty_alpha": 0.1,
        "imbalance_lambda": 2.0,
        "skus": sku_list,
        "warehouses": warehouses,
        "regions": region_list,
        "delivery_lanes": lanes,
        "transfer_lanes": transfers,
        "supplier_shipments": supply,
    })  # fmt: skip


def _check_int(arg: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        raise ValueError(f"{arg}={value!r} must be an integer in [{low}, {high}]")
