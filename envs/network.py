"""Network: a scenario compiled to index arrays, the one object the environment and the MILPs read.

Every coefficient lives here (costs, penalties, ``delay_alpha`` of Eq.4, ``imbalance_lambda`` of
Eq.5), so the env, the hindsight MILP and the rolling MILP cannot be handed different values.

Index sets (sizes in brackets): warehouses ``w`` [W], regions ``r`` [R], SKUs ``k`` [K],
delivery lanes ``d`` [D], transfer lanes ``l`` [L], lots per (region, SKU) ``j`` [J].

Slot tables (which slots an env id's action holds: :class:`envs.layout.ActionLayout`):

* lot slots, ordered ``(r, k, j)`` with ``j`` fastest; slot value 0 = reject, ``1 + i`` =
  the region's ``i``-th delivery lane (``region_lanes[r][i]``, lanes in scenario order);
* transfer slots, ordered ``(l, k)`` with ``k`` fastest; slot value = index into the lane's
  ``quantity_levels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.forecast import demand_cap, expected_demand, expected_lane_costs, expected_lead_days, expected_transit_days

if TYPE_CHECKING:  # annotations only: Scenario.network builds this
    from envs.scenario import Scenario


@dataclass(frozen=True, eq=False)
class Network:
    W: int
    R: int
    K: int
    D: int
    L: int
    J: int  # lots per (region, SKU) per day
    T: int  # horizon, days
    # --- warehouses
    capacity: np.ndarray  # [W] int, units (all SKUs)
    initial_stock: np.ndarray  # [W, K] int, units
    target_stock: np.ndarray  # [W, K] int, units; 0 = not scored
    is_hub: np.ndarray  # [W] bool
    # --- SKUs and regions
    unit_profit: np.ndarray  # [K] USD/unit
    lost_penalty: np.ndarray  # [K] USD/unit
    sla_days: np.ndarray  # [R] int, t0 of Eq.4
    delay_alpha: float  # alpha of Eq.4, USD per unit per day^2 late
    imbalance_lambda: float  # lambda of Eq.5, USD per warehouse-day at unit relative gap
    # --- delivery lanes
    dl_warehouse: np.ndarray  # [D] int
    dl_region: np.ndarray  # [D] int
    dl_unit_base_cost: np.ndarray  # [D] USD/unit: distance*cost_per_km + fee_per_order
    dl_cost_per_day: np.ndarray  # [D] USD/unit/day in transit (v of Eq.1)
    dl_expected_transit: np.ndarray  # [D] float days, including expected abnormal delay
    dl_expected_route_cost: np.ndarray  # [D] USD/unit: expected Eq.1 of one unit shipped (what a policy can know)
    dl_expected_delay_penalty: np.ndarray  # [D] USD/unit: expected Eq.4 of one unit shipped
    dl_expected_unit_cost: np.ndarray  # [D] USD/unit: the sum of the two
    region_lanes: tuple[np.ndarray, ...]  # R arrays of lane ids serving region r
    home_lane: np.ndarray  # [R] lane id of the fixed routing rule
    # --- transfer lanes
    tl_origin: np.ndarray  # [L] int
    tl_destination: np.ndarray  # [L] int
    tl_levels: tuple[np.ndarray, ...]  # L arrays of allowed quantities
    tl_cost_per_unit: np.ndarray  # [L] USD/unit
    tl_fixed_cost: np.ndarray  # [L] USD/shipment
    tl_profit_per_unit: np.ndarray  # [L] USD/unit (r of Eq.2)
    tl_expected_lead: np.ndarray  # [L] float days (the realized value under a deterministic scenario)
    tl_max_lead: int  # longest possible lead time, days
    # --- action layout
    lot_region: np.ndarray  # [R*K*J] region of each lot slot
    lot_sku: np.ndarray  # [R*K*J] SKU of each lot slot
    lot_nvec: np.ndarray  # [R*K*J] 1 + number of lanes of the slot's region
    lot_lane_table: np.ndarray  # [R*K*J, 1 + max lanes] lane id per choice, -1 = reject / invalid
    lot_home_choice: np.ndarray  # [R*K*J] choice naming the slot's home lane (the fixed rule of CrossBorderTransfer-v0)
    transfer_nvec: np.ndarray  # [L*K] number of levels per transfer slot
    transfer_qty_table: np.ndarray  # [L*K, max levels] units per choice (0-padded)
    # --- precomputed gathers for the per-day masks (speed only; derived from the fields above)
    lot_lane_c: np.ndarray  # [R*K*J, 1 + max lanes] lane id per choice, 0 where -1 (use with lot_valid)
    lot_valid: np.ndarray  # [R*K*J, 1 + max lanes] bool, the choice names a lane (column 0, reject, is False)
    lot_stock_index: np.ndarray  # [R*K*J, 1 + max lanes] flat index w*K + k into on_hand of the choice's stock
    transfer_slot_lane: np.ndarray  # [L*K] transfer lane of each transfer slot
    transfer_slot_sku: np.ndarray  # [L*K] SKU of each transfer slot
    transfer_level_valid: np.ndarray  # [L*K, max levels] bool, the column is one of the slot's levels
    lot_unit_profit: np.ndarray  # [R*K*J] unit_profit of each lot slot's SKU
    lot_lost_penalty: np.ndarray  # [R*K*J] lost_penalty of each lot slot's SKU
    lot_sla_days: np.ndarray  # [R*K*J] sla_days of each lot slot's region
    scored_index: np.ndarray  # [P] flat indices w*K + k of the pairs Eq.5 scores (target_stock > 0)
    scored_target: np.ndarray  # [P] float, their target_stock
    # --- random models as arrays, read by the sampler (envs.realization.sample_realization)
    mean_demand: np.ndarray  # [T, R, K] float units/day (envs.realization.expected_demand)
    dl_transit_range: np.ndarray  # [D, 2] int days, [min, max] transit without abnormal delay
    dl_abnormal_prob: np.ndarray  # [D] probability of an abnormal delay on a day
    dl_abnormal_range: np.ndarray  # [D, 2] int extra days of an abnormal delay, [min, max]
    dl_closure_prob: np.ndarray  # [D] probability the lane is closed on a day
    tl_lead_range: np.ndarray  # [L, 2] int days, [min, max] transfer lead time
    tl_closure_prob: np.ndarray  # [L]
    supply_day: np.ndarray  # [S] int, day of each scheduled supplier arrival (shipments in scenario order)
    supply_warehouse: np.ndarray  # [S] int
    supply_sku: np.ndarray  # [S] int
    supply_quantity: np.ndarray  # [S] int, scheduled units
    supply_cv: np.ndarray  # [S] float, coefficient of variation of the realized units
    supply_index: np.ndarray  # [S] int, flat index (day * W + warehouse) * K + SKU of each arrival
    demand_cap: np.ndarray  # [T, R, K] int, the largest demand a realization holds (envs.forecast.demand_cap)

    @property
    def n_lots(self) -> int:
        return self.R * self.K * self.J

    @staticmethod
    def build(s: Scenario) -> Network:
        sku = {k.name: i for i, k in enumerate(s.skus)}
        wh = {w.name: i for i, w in enumerate(s.warehouses)}
        reg = {r.name: i for i, r in enumerate(s.regions)}
        W, R, K, D, L, J = len(wh), len(reg), len(sku), len(s.delivery_lanes), len(s.transfer_lanes), s.lots_per_batch

        def per_sku(mapping: dict[str, int]) -> np.ndarray:
            out = np.zeros(K, dtype=np.int64)
            for name, v in mapping.items():
                out[sku[name]] = v
            return out

        dls = s.delivery_lanes
        region_lanes = tuple(
            np.array([d for d, ln in enumerate(dls) if ln.region == r.name], dtype=np.int64) for r in s.regions
        )
        home_lane = np.array(
            [
                next(
                    d
                    for d, ln in enumerate(dls)
                    if (ln.region, ln.warehouse, ln.mode) == (r.name, r.home_warehouse, r.home_mode)
                )
                for r in s.regions
            ],
            dtype=np.int64,
        )
        lot_region = np.repeat(np.arange(R), K * J)
        lot_sku = np.tile(np.repeat(np.arange(K), J), R)
        max_lanes = max(len(x) for x in region_lanes)
        lot_lane_table = np.full((R * K * J, 1 + max_lanes), -1, dtype=np.int64)
        for slot, r in enumerate(lot_region):
            lot_lane_table[slot, 1 : 1 + len(region_lanes[r])] = region_lanes[r]
        levels = tuple(np.array(t.quantity_levels, dtype=np.int64) for t in s.transfer_lanes)
        max_levels = max((len(x) for x in levels), default=1)
        qty_table = np.zeros((L * K, max_levels), dtype=np.int64)
        for l, lv in enumerate(levels):
            qty_table[l * K : (l + 1) * K, : len(lv)] = lv
        dl_warehouse = np.array([wh[ln.warehouse] for ln in dls], dtype=np.int64)
        lot_lane_c = np.where(lot_lane_table >= 0, lot_lane_table, 0)
        transfer_nvec = np.repeat([len(lv) for lv in levels], K).astype(np.int64)
        home_position = np.array([int(np.flatnonzero(region_lanes[r] == home_lane[r])[0]) for r in range(R)])
        sla = np.array([r.sla_days for r in s.regions], dtype=np.int64)
        unit_profit = np.array([k.unit_profit for k in s.skus], dtype=np.float64)
        lost_penalty = np.array([k.lost_sale_penalty for k in s.skus], dtype=np.float64)
        target_stock = np.stack([per_sku(w.target_stock) for w in s.warehouses])
        alpha = float(s.delay_penalty_alpha)
        costs = np.array(
            [expected_lane_costs(ln, int(sla[reg[ln.region]]), alpha, s.deterministic) for ln in dls]
        ).reshape(D, 2)
        sups = s.supplier_shipments
        n_arrivals = [len(range(sh.first_day, s.horizon_days, sh.period_days)) for sh in sups]
        supply_day = np.array(
            [d for sh in sups for d in range(sh.first_day, s.horizon_days, sh.period_days)], dtype=np.int64
        )
        supply_wh = np.repeat([wh[sh.warehouse] for sh in sups], n_arrivals).astype(np.int64)
        supply_sku = np.repeat([sku[sh.sku] for sh in sups], n_arrivals).astype(np.int64)
        supply_index = (supply_day * W + supply_wh) * K + supply_sku
        return Network(
            W=W,
            R=R,
            K=K,
            D=D,
            L=L,
            J=J,
            T=s.horizon_days,
            capacity=np.array([w.capacity for w in s.warehouses], dtype=np.int64),
            initial_stock=np.stack([per_sku(w.initial_stock) for w in s.warehouses]),
            target_stock=target_stock,
            is_hub=np.array([w.kind == "hub" for w in s.warehouses]),
            unit_profit=unit_profit,
            lost_penalty=lost_penalty,
            sla_days=sla,
            delay_alpha=alpha,
            imbalance_lambda=float(s.imbalance_lambda),
            dl_warehouse=dl_warehouse,
            dl_region=np.array([reg[ln.region] for ln in dls], dtype=np.int64),
            dl_unit_base_cost=np.array([ln.distance_km * ln.cost_per_km + ln.fee_per_order for ln in dls]),
            dl_cost_per_day=np.array([ln.cost_per_transit_day for ln in dls]),
            dl_expected_transit=np.array(
                [
                    expected_transit_days(
                        ln.transit_days, ln.abnormal_delay_prob, ln.abnormal_delay_days, s.deterministic
                    )
                    for ln in dls
                ]
            ),
            dl_expected_route_cost=costs[:, 0].copy(),
            dl_expected_delay_penalty=costs[:, 1].copy(),
            dl_expected_unit_cost=costs[:, 0] + costs[:, 1],
            region_lanes=region_lanes,
            home_lane=home_lane,
            tl_origin=np.array([wh[t.origin] for t in s.transfer_lanes], dtype=np.int64),
            tl_destination=np.array([wh[t.destination] for t in s.transfer_lanes], dtype=np.int64),
            tl_levels=levels,
            tl_cost_per_unit=np.array([t.cost_per_unit for t in s.transfer_lanes], dtype=np.float64),
            tl_fixed_cost=np.array([t.fixed_cost for t in s.transfer_lanes], dtype=np.float64),
            tl_profit_per_unit=np.array([t.profit_per_unit for t in s.transfer_lanes], dtype=np.float64),
            tl_expected_lead=np.array(
                [expected_lead_days(t.lead_time_days, s.deterministic) for t in s.transfer_lanes], dtype=np.float64
            ),
            tl_max_lead=max((t.lead_time_days[1] for t in s.transfer_lanes), default=1),
            lot_region=lot_region,
            lot_sku=lot_sku,
            lot_nvec=1 + np.array([len(region_lanes[r]) for r in lot_region], dtype=np.int64),
            lot_lane_table=lot_lane_table,
            lot_home_choice=_read_only(1 + home_position[lot_region]),
            transfer_nvec=transfer_nvec,
            transfer_qty_table=qty_table,
            lot_lane_c=lot_lane_c,
            lot_valid=lot_lane_table >= 0,
            lot_stock_index=dl_warehouse[lot_lane_c] * K + lot_sku[:, None],
            transfer_slot_lane=np.repeat(np.arange(L), K),
            transfer_slot_sku=np.tile(np.arange(K), L),
            transfer_level_valid=np.arange(max_levels)[None, :] < transfer_nvec[:, None],
            lot_unit_profit=unit_profit[lot_sku],
            lot_lost_penalty=lost_penalty[lot_sku],
            lot_sla_days=sla[lot_region],
            scored_index=np.flatnonzero(target_stock.reshape(-1) > 0),
            scored_target=target_stock.reshape(-1)[target_stock.reshape(-1) > 0].astype(np.float64),
            mean_demand=_read_only(expected_demand(s)),
            dl_transit_range=np.array([ln.transit_days for ln in dls], dtype=np.int64).reshape(D, 2),
            dl_abnormal_prob=np.array([ln.abnormal_delay_prob for ln in dls], dtype=np.float64),
            dl_abnormal_range=np.array([ln.abnormal_delay_days for ln in dls], dtype=np.int64).reshape(D, 2),
            dl_closure_prob=np.array([ln.closure_prob for ln in dls], dtype=np.float64),
            tl_lead_range=np.array([t.lead_time_days for t in s.transfer_lanes], dtype=np.int64).reshape(L, 2),
            tl_closure_prob=np.array([t.closure_prob for t in s.transfer_lanes], dtype=np.float64),
            supply_day=supply_day,
            supply_warehouse=supply_wh,
            supply_sku=supply_sku,
            supply_quantity=np.repeat([sh.quantity for sh in sups], n_arrivals).astype(np.int64),
            supply_cv=np.repeat([sh.quantity_cv for sh in sups], n_arrivals).astype(np.float64),
            supply_index=supply_index,
            demand_cap=_read_only(demand_cap(expected_demand(s))),
        )


def _read_only(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x
